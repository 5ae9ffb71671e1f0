"""Loops: a hop limit on every listener, LMTP's own Delivered-To, two servers forwarding.

A message that arrives with more than limits.hop_count Received and
Delivered-To fields is refused after its data (554 5.4.6); the MDA refuses a
message for a recipient whose Delivered-To it already carries; an alias
that forwards to a server that forwards back ends in a bounce.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import socket

import pytest

from tests.conftest import PASSWORD, client_tls, wait_for
from tests.e2e.remote import REMOTE_IP

HOPS = b"5.4.6 Too many hops"


def received(n: int) -> bytes:
    return b"".join(f"Received: from h{i}.remote.test by h{i + 1}.remote.test; "
                    f"Mon, 1 Jan 2024 00:00:{i % 60:02d} +0000\r\n".encode() for i in range(n))


def client(stack, listener: str) -> smtplib.SMTP:
    if listener == "smtp":
        return stack.smtp()
    if listener == "submission":
        return stack.submission()
    s = smtplib.SMTP_SSL(*stack.address("submissions"), context=client_tls(), timeout=30)
    s.login("alice@example.test", PASSWORD)
    return s


def send(s: smtplib.SMTP, message: bytes, sender: str = "alice@example.test",
         rcpts: tuple[str, ...] = ("bob@example.test",)) -> tuple[int, bytes]:
    s.ehlo_or_helo_if_needed()
    assert s.mail(sender)[0] == 250
    for r in rcpts:
        assert s.rcpt(r)[0] == 250
    return s.data(message)


@pytest.mark.parametrize("listener", ["smtp", "submission", "submissions"])
def test_more_than_50_hops_is_refused_on_every_listener(stack, listener):
    with client(stack, listener) as s:
        assert send(s, received(51) + b"Subject: far\r\n\r\nbody\r\n") == (554, HOPS)
        # Delivered-To counts as a hop too.
        mixed = received(25) + b"Delivered-To: x@elsewhere.test\r\n" * 26
        assert send(s, mixed + b"Subject: far\r\n\r\nbody\r\n") == (554, HOPS)
        # In the body they are text, not hops.
        code, msg = send(s, received(50) + b"Subject: near\r\n\r\n" + received(60))
        assert code == 250, msg
    (msg,) = stack.wait_messages("bob@example.test", 1)
    assert b"Subject: near" in msg
    assert not list((stack.root / "spool" / "incoming").iterdir())
    assert re.search(r"message not taken .*hops=51 .*reason='554 5.4.6 Too many hops'",
                     stack.log("mtad"))


def lmtp_replies(stack, message: bytes, rcpts: list[str]) -> list[bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(30)
        c.connect(str(stack.lmtp_socket))
        f = c.makefile("rb")

        def reply() -> bytes:
            while (line := f.readline())[3:4] == b"-":
                pass
            return line.rstrip(b"\r\n")

        assert reply().startswith(b"220")
        c.sendall(b"LHLO mail.example.test\r\n")
        assert reply().startswith(b"250")
        c.sendall(b"MAIL FROM:<s@remote.test>\r\n"
                  + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts) + b"DATA\r\n")
        assert [reply()[:3] for _ in range(len(rcpts) + 2)] == [b"250"] * (len(rcpts) + 1) \
            + [b"354"]
        c.sendall(message + b".\r\n")
        out = [reply() for _ in rcpts]
        c.sendall(b"QUIT\r\n")
        return out


def test_lmtp_refuses_a_recipient_whose_delivered_to_is_there_already(stack):
    message = (b"Delivered-To: Alice@Example.TEST\r\nDelivered-To: bob+news@example.test\r\n"
               b"Subject: again\r\n\r\nbody\r\n")
    replies = lmtp_replies(stack, message, ["alice@example.test", "bob@example.test",
                                            "bob+news@example.test"])
    assert replies == [b"554 5.4.6 <alice@example.test> mail forwarding loop",
                       b"250 2.0.0 <bob@example.test> delivered",
                       b"554 5.4.6 <bob+news@example.test> mail forwarding loop"]
    (msg,) = stack.wait_messages("bob@example.test", 1)
    assert msg.startswith(b"Return-Path: <s@remote.test>\nDelivered-To: bob@example.test\n")
    assert stack.messages("alice@example.test") == []


def parse_dsn(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", raw[:500]
    _, status, headers = msg.get_payload()
    return [dict(b.items()) for b in status.get_payload()][1:], headers.get_payload()


def test_a_looping_message_is_bounced_by_the_mta_and_the_others_get_it(stack):
    with stack.smtp() as s:
        code, msg = send(s, b"Delivered-To: alice@example.test\r\nSubject: loop\r\n\r\nhi\r\n",
                         sender="carol@example.test",
                         rcpts=("alice@example.test", "bob@example.test"))
        assert code == 250, msg
    stack.wait_messages("bob@example.test", 1)
    (bounce,) = stack.wait_messages("carol@example.test", 1, timeout=30)
    (rcpt,), _ = parse_dsn(bounce)
    assert rcpt["Final-Recipient"] == "rfc822; alice@example.test"
    assert rcpt["Status"] == "5.4.6"
    assert "554 5.4.6 <alice@example.test> mail forwarding loop" in re.sub(
        r"\s+", " ", rcpt["Diagnostic-Code"])
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")
    assert stack.messages("alice@example.test") == []


def free_on_both(port: int) -> bool:
    for host in ("127.0.0.1", REMOTE_IP):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def test_two_servers_forwarding_to_each_other_stop_at_the_hop_limit(net):
    """example.test's loop@ forwards to remote.test's loop@, which forwards back.

    Both listen on one port (at two addresses), so each relays to the other
    through DNS; each pass adds a Received, and the 51st is refused."""
    if not free_on_both(net.port):
        pytest.skip("the remote's port is taken on 127.0.0.1")
    net.dns.zone.update({"example.test": {"MX": ["10 mx.example.test."]},
                         "mx.example.test": {"A": ["127.0.0.1"]}})
    sender, remote = net.sender, net.remote
    sender.add_alias("loop@example.test: loop@remote.test")
    remote.add_alias("loop@remote.test: loop@example.test")
    remote.write_config(hostname="mx.remote.test", domain="remote.test",
                        smtp=[f"{REMOTE_IP}:{net.port}"], submission=[f"{REMOTE_IP}:0"],
                        submissions=[f"{REMOTE_IP}:0"], relay=dict(net.relay))
    net.start_sender(mta_smtp=[f"127.0.0.1:{net.port}"])
    net.start_remote()
    with sender.submission() as s:
        assert s.sendmail("alice@example.test", ["loop@example.test"],
                          b"From: alice@example.test\r\nSubject: round and round\r\n"
                          b"Message-ID: <loop@example.test>\r\n\r\nhi\r\n") == {}
    (bounce,) = sender.wait_messages("alice@example.test", 1, timeout=100)
    (rcpt,), returned = parse_dsn(bounce)
    assert rcpt["Status"] == "5.4.6"
    assert "Too many hops" in re.sub(r"\s+", " ", rcpt["Diagnostic-Code"])
    # It went round as far as the limit and no further.
    hops = len(re.findall(r"(?m)^Received:", returned))
    assert 50 <= hops <= 52, hops
    for st in (sender, remote):
        wait_for(lambda st=st: not st.queue_files(), 60, "both queues to empty")
    assert len(sender.messages("alice@example.test")) == 1
