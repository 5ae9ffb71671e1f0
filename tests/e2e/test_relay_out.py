"""Outbound mail between two real mtad/mdad stacks on loopback, with a test DNS server."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading

from tests.conftest import PASSWORD, wait_for
from tests.dnsserver import SERVFAIL

ALICE = "alice@example.test"
ROB, ANN = "rob@remote.test", "ann@remote.test"


def send(stack, rcpts: list[str], subject: str, sender: str = ALICE) -> None:
    msg = f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n\r\nhi\r\n"
    with stack.submission() as s:
        assert s.sendmail(sender, rcpts, msg.encode()) == {}


def queue_empty(stack) -> None:
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")


def test_mail_for_a_remote_domain_goes_to_its_mx_over_starttls(net):
    sender = net.start_sender()
    remote = net.start_remote()
    send(sender, [ROB, ALICE, ANN], "over there")
    (rob,) = remote.wait_messages(ROB, 1)
    (ann,) = remote.wait_messages(ANN, 1)
    (own,) = sender.wait_messages(ALICE, 1)
    queue_empty(sender)
    for m in (rob, ann, own):
        assert b"Subject: over there" in m
    # The remote server took it over TLS from us, as mx.remote.test's MX record says.
    received = rob.split(b"\n\n", 1)[0]
    assert re.search(rb"by mx\.remote\.test \(mailpair\) with ESMTPS id", received), received
    assert b"from mail.example.test" in received
    assert net.dns.asked("remote.test", "MX") >= 1
    # ::1 (IPv6 first) refused the connection; 127.0.0.2 took the mail.
    log = sender.log("mtad")
    assert re.search(r"connection failed .*address=::1", log), log[-3000:]
    # One connection, one transaction for both remote recipients.
    accepted = [line for line in remote.log("mtad").splitlines() if "accepted" in line]
    assert len(accepted) == 1 and ROB in accepted[0] and ANN in accepted[0]


def test_remote_down_then_up_is_retried_until_delivered(net):
    sender = net.start_sender(mta_retry_schedule=[0.5])
    send(sender, [ROB], "patience")
    wait_for(lambda: re.search(r"delivery .*rcpt=rob@remote.test.*state=pending",
                               sender.log("mtad")), 60, "a deferred attempt")
    wait_for(lambda: sender.log("mtad").count("deferred") >= 2, 60, "a second attempt")
    assert sender.queue_files()
    net.start_remote()
    (rob,) = net.remote.wait_messages(ROB, 1)
    queue_empty(sender)
    assert b"Subject: patience" in rob
    assert sender.messages(ALICE) == []  # no bounce, no warning


def test_dns_servfail_is_temporary(net):
    net.dns.zone["remote.test"] = {"MX": SERVFAIL}
    sender = net.start_sender(mta_retry_schedule=[0.5])
    net.start_remote()
    send(sender, [ROB], "dns trouble")
    wait_for(lambda: re.search(r"state=pending.*4\.4\.3.*SERVFAIL|4\.4\.3.*SERVFAIL.*"
                               r"state=pending", sender.log("mtad")), 60, "a SERVFAIL deferral")
    net.dns.zone["remote.test"] = {"MX": ["10 mx.remote.test."]}
    net.remote.wait_messages(ROB, 1)
    queue_empty(sender)
    assert sender.messages(ALICE) == []


def blackhole(host: str, port: int) -> tuple[socket.socket, list[socket.socket]]:
    """Accepts connections and never says a word (a dead or tarpitting MX)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, port))
    sock.listen(16)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)
    threading.Thread(target=serve, daemon=True).start()
    return sock, held


def test_a_dead_destination_does_not_delay_other_domains(net):
    net.dns.zone["dead.test"] = {"MX": ["10 mx.dead.test."]}
    net.dns.zone["mx.dead.test"] = {"A": ["127.0.0.3"]}
    hole, held = blackhole("127.0.0.3", net.port)
    try:
        sender = net.start_sender(command_timeout=60, max_connections_per_domain=2)
        net.start_remote()
        for n in range(5):  # more than dead.test's share of connections
            send(sender, [f"u{n}@dead.test"], f"stuck {n}")
        wait_for(lambda: len(held) >= 2, 60, "connections to the dead MX")
        send(sender, [ROB], "not held up")
        (rob,) = net.remote.wait_messages(ROB, 1, timeout=15)
        assert b"Subject: not held up" in rob
        # dead.test got only its share, and its messages are still being tried.
        assert len(held) == 2
        assert len(sender.queue_files()) == 5
        assert "state=failed" not in sender.log("mtad")
    finally:
        hole.close()
        for c in held:
            c.close()


def test_smarthost_with_auth_over_starttls(net):
    # The provider lets its customer rob send as the customer's own domain.
    net.configure_remote(send_as={ROB: ["@example.test"]})
    remote = net.start_remote()
    # As in /etc/mailpair: readable by the relay process (mailpair-relay), not by everyone.
    secret = net.sender.root / "etc" / "smarthost-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o640)
    if os.geteuid() == 0:
        shutil.chown(secret, "root", "mailpair-relay")
    host, port = remote.address("submission")
    sender = net.start_sender(smarthost=f"{host}:{port}", smarthost_user=ROB,
                              smarthost_password_file=str(secret))
    send(sender, [ANN], "via the smarthost")
    (ann,) = remote.wait_messages(ANN, 1)
    queue_empty(sender)
    received = ann.split(b"\n\n", 1)[0]
    assert b"with ESMTPSA id" in received, received  # TLS and a login
    assert net.dns.asked("remote.test") == 0  # no MX lookup: the smarthost takes all


def test_verified_tls_policy(net):
    remote = net.start_remote()
    cert = remote.root / "etc" / "cert.pem"
    sender = net.start_sender(tls_policy={"remote.test": "verify"}, tls_ca_file=str(cert))
    send(sender, [ROB], "verified")
    (rob,) = remote.wait_messages(ROB, 1)
    assert b"with ESMTPS id" in rob
    queue_empty(sender)


def test_verified_tls_policy_without_a_trusted_certificate_defers(net):
    net.start_remote()
    sender = net.start_sender(tls_policy={"remote.test": "verify"},
                              mta_retry_schedule=[3600])
    send(sender, [ROB], "unverifiable")
    wait_for(lambda: re.search(r"state=pending.*4\.7\.5|4\.7\.5.*state=pending",
                               sender.log("mtad")), 60, "a TLS deferral")
    assert net.remote.messages(ROB) == []
    assert len(sender.queue_files()) == 1
