"""SIGHUP reloads without dropping a session; SIGTERM lets sessions finish and loses nothing."""

from __future__ import annotations

import hashlib
import signal
import smtplib
import socket
import ssl

from common import tls
from tests.conftest import client_tls, wait_for


def children(stack, daemon):
    return dict(stack.state(daemon)["children"])


def hup_and_wait(stack, daemon):
    before = children(stack, daemon)
    stack.procs[daemon].send_signal(signal.SIGHUP)
    return wait_for(lambda: (now := children(stack, daemon)) and all(
        now[k] != before[k] for k in before) and now, 60, f"{daemon}'s children to be replaced")


def cert_digest(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            client_tls().wrap_socket(raw) as s:
        return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def test_hup_mid_transaction_drops_no_session(stack):
    s = stack.smtp()
    s.ehlo()
    s.mail("s@remote.test")
    assert s.rcpt("alice@example.test")[0] == 250
    new = hup_and_wait(stack, "mtad")
    # The old smtp process still serves this session to its end.
    code, msg = s.data(b"Subject: across a reload\r\n\r\nstill here\r\n")
    assert code == 250, msg
    s.close()
    # New sessions go to the new process, whose log shows it.
    with stack.smtp() as s2:
        s2.sendmail("s@remote.test", ["alice@example.test"], b"Subject: after\r\n\r\nx\r\n")
    msgs = stack.wait_messages("alice@example.test", 2)
    assert any(b"across a reload" in m for m in msgs)
    assert f"pid={new['smtp']}" in stack.log("mtad")


def test_hup_applies_a_changed_configuration(stack):
    with stack.smtp() as s:
        assert b"SIZE 1048576" in s.ehlo()[1]
    stack.write_config(max_message_size=2000000)
    hup_and_wait(stack, "mtad")

    def new_size():
        # Until the old process has closed its listener, it may take a connection.
        with stack.smtp() as s:
            return b"SIZE 2000000" in s.ehlo()[1]
    wait_for(new_size, 60, "the new size on a new connection")


def test_hup_reloads_the_certificate(stack):
    before = cert_digest(stack.port("submissions"))
    cert, key = stack.root / "etc" / "cert.pem", stack.root / "etc" / "key.pem"
    cert.unlink()
    key.unlink()
    tls.ensure_self_signed(cert, key, "mail.example.test")
    hup_and_wait(stack, "mtad")
    # Until the old process has closed its listener, it may take a connection,
    # and close it in the handshake as it retires: that is "not yet".
    def changed() -> bool:
        try:
            return cert_digest(stack.port("submissions")) != before
        except (ssl.SSLError, ConnectionError):
            return False

    wait_for(changed, 60, "the new certificate")
    # And STARTTLS on 587 uses it too (once the old process has let go of 587).
    def starttls_digest() -> str | None:
        try:
            with smtplib.SMTP("127.0.0.1", stack.port("submission"), timeout=30) as s:
                s.starttls(context=client_tls())
                return hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest()
        except (ssl.SSLError, ConnectionError, smtplib.SMTPException):
            return None

    wait_for(lambda: starttls_digest() not in (None, before), 60, "the new certificate on 587")


def test_a_bad_configuration_on_hup_is_refused_and_service_goes_on(stack):
    before = children(stack, "mtad")
    stack.config.write_text(stack.config.read_text() + "\nbogus_key = 1\n")
    stack.procs["mtad"].send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in stack.log("mtad"), 60, "the refusal in the log")
    assert "bogus_key" in stack.log("mtad")
    assert children(stack, "mtad") == before
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["bob@example.test"], b"Subject: still\r\n\r\nx\r\n")
    stack.wait_messages("bob@example.test", 1)


def test_hup_of_mdad_keeps_delivering(stack):
    hup_and_wait(stack, "mdad")
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["carol@example.test"], b"Subject: m\r\n\r\nx\r\n")
    stack.wait_messages("carol@example.test", 1)


def test_sigterm_lets_a_transaction_finish_and_loses_nothing(stack):
    busy = stack.smtp()
    busy.ehlo()
    busy.mail("s@remote.test")
    assert busy.rcpt("bob@example.test")[0] == 250
    idle = socket.create_connection(("127.0.0.1", stack.port("smtp")), timeout=30)
    idle_f = idle.makefile("rb")
    assert idle_f.readline().startswith(b"220")
    proc = stack.procs["mtad"]
    proc.send_signal(signal.SIGTERM)
    # The idle session is told why it is closed.
    assert idle_f.readline().startswith(b"421 4.3.2")
    assert idle_f.readline() == b""
    # The transaction in flight completes: its 250 means the message is ours.
    code, msg = busy.data(b"Subject: during shutdown\r\n\r\nsafe\r\n")
    assert code == 250, msg
    busy.close()
    port = stack.port("smtp")
    assert proc.wait(60) == 0
    stack.procs.pop("mtad")
    try:  # gone: nothing answers on its port any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        raise AssertionError("mtad still accepts connections after SIGTERM")
    except ConnectionRefusedError:
        pass
    stack.start("mtad")
    (m,) = stack.wait_messages("bob@example.test", 1)
    assert b"during shutdown" in m


def test_sigterm_of_mdad_finishes_the_lmtp_transaction(stack):
    # The MTA is mid-hand-over while the MDA stops: nothing is lost either way.
    with stack.smtp() as s:
        for n in range(20):
            s.sendmail("s@remote.test", ["alice@example.test"],
                       f"X-Seq: {n}\r\n\r\nbody\r\n".encode())
    assert stack.stop("mdad") == 0
    stack.start("mdad")
    msgs = stack.wait_messages("alice@example.test", 20)
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")
    assert len(stack.messages("alice@example.test")) == 20, len(msgs)


def test_mail_keeps_flowing_through_two_reloads(stack):
    """Every session opened before, during and after the reloads is served to its end."""
    import threading

    errors: list[str] = []
    sent: list[int] = []
    done = threading.Event()

    def sender():
        n = 0
        while not done.is_set() and n < 300:
            try:
                with stack.smtp() as s:
                    s.sendmail("s@remote.test", ["bob@example.test"],
                               f"X-Seq: {n}\r\n\r\nflow\r\n".encode())
                sent.append(n)
            except Exception as e:  # any refusal or cut is the failure this test looks for
                errors.append(f"{n}: {e!r}")
            n += 1

    t = threading.Thread(target=sender)
    t.start()
    try:
        wait_for(lambda: len(sent) >= 5, 60, "mail to flow")
        hup_and_wait(stack, "mtad")
        hup_and_wait(stack, "mdad")
        hup_and_wait(stack, "mtad")
        count = len(sent)
        wait_for(lambda: len(sent) >= count + 5, 60, "mail to flow after the reloads")
    finally:
        done.set()
        t.join(60)
    assert errors == []
    stack.wait_messages("bob@example.test", len(sent), timeout=60)
