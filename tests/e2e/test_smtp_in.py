"""SMTP in on 25, 587 and 465: who may send what, and what lands in the Maildir."""

from __future__ import annotations

import re
import smtplib
import socket

import pytest

from tests.conftest import PASSWORD, client_tls, wait_for


def queue_id(reply: bytes) -> str:
    m = re.search(rb"queued as ([0-9A-F]{17})", reply)
    assert m, reply
    return m.group(1).decode()


def send(s: smtplib.SMTP, sender: str, rcpts: list[str], body: bytes) -> str:
    s.ehlo_or_helo_if_needed()
    s.mail(sender)
    for r in rcpts:
        code, msg = s.rcpt(r)
        assert code == 250, (r, code, msg)
    code, msg = s.data(body)
    assert code == 250, msg
    return queue_id(msg)


def test_port25_delivers_to_a_local_user_with_headers(stack):
    with stack.smtp() as s:
        qid = send(s, "sender@remote.test", ["alice@example.test"],
                   b"Subject: first\r\n\r\nhello\r\n.leading dot\r\n")
    (msg,) = stack.wait_messages("alice@example.test", 1)
    head, _, body = msg.partition(b"\n\n")
    lines = head.split(b"\n")
    assert lines[0] == b"Return-Path: <sender@remote.test>"
    assert lines[1] == b"Delivered-To: alice@example.test"
    assert lines[2].startswith(b"Received: from ")
    assert f"id {qid}".encode() in head
    assert b"with ESMTP id" in head
    assert body == b"hello\n.leading dot\n"
    assert b"\r" not in msg
    # Every log line about this message names it. mdad logs the delivery
    # after its 250: the file can be there before the line is.
    assert f"queue_id={qid}" in stack.log("mtad")
    wait_for(lambda: f"queue_id={qid}" in stack.log("mdad"), 60, "mdad's delivery log line")
    stack_queue_empty(stack)


def stack_queue_empty(stack):
    from tests.conftest import wait_for
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")


def test_submission_587_starttls_auth_delivers(stack):
    with stack.submission("alice@example.test") as s:
        send(s, "alice@example.test", ["bob@example.test"], b"Subject: sub\r\n\r\nhi bob\r\n")
    (msg,) = stack.wait_messages("bob@example.test", 1)
    assert b"with ESMTPSA id" in msg
    assert msg.startswith(b"Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n")


def test_submissions_465_implicit_tls(stack):
    with smtplib.SMTP_SSL("127.0.0.1", stack.port("submissions"), context=client_tls(),
                          timeout=30) as s:
        ehlo = s.ehlo()[1]
        assert b"AUTH" in ehlo and b"STARTTLS" not in ehlo
        s.login("carol@example.test", PASSWORD)
        send(s, "carol@example.test", ["alice@example.test"], b"Subject: 465\r\n\r\nx\r\n")
    (msg,) = stack.wait_messages("alice@example.test", 1)
    assert b"with ESMTPSA id" in msg


def test_alias_fans_out_and_a_mailbox_gets_one_copy(stack):
    with stack.smtp() as s:
        send(s, "x@remote.test", ["team@example.test", "alice@example.test"],
             b"Subject: team\r\n\r\nall\r\n")
    assert len(stack.wait_messages("bob@example.test", 1)) == 1
    assert len(stack.wait_messages("alice@example.test", 1)) == 1
    stack_queue_empty(stack)
    assert len(stack.messages("alice@example.test")) == 1


def test_ehlo_offers_the_extensions_and_no_auth_on_25(stack):
    with stack.smtp() as s:
        code, text = s.ehlo("client.remote.test")
        assert code == 250
        for ext in (b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"SIZE 1048576",
                    b"ENHANCEDSTATUSCODES", b"STARTTLS"):
            assert ext in text
        assert b"AUTH" not in text
        s.starttls(context=client_tls())
        assert b"AUTH" not in s.ehlo("client.remote.test")[1]


def test_relay_is_denied_on_25_without_auth(stack):
    with stack.smtp() as s:
        s.ehlo()
        s.mail("spammer@remote.test")
        code, msg = s.rcpt("victim@elsewhere.test")
        assert (code, msg[:5]) == (554, b"5.7.1")
        s.starttls(context=client_tls())
        s.ehlo()
        s.mail("spammer@remote.test")
        assert s.rcpt("victim@elsewhere.test")[0] == 554
    assert stack.queue_files() == []


def test_unknown_local_user_is_refused(stack):
    with stack.smtp() as s:
        s.ehlo()
        s.mail("x@remote.test")
        code, msg = s.rcpt("nobody@example.test")
        assert code == 550 and msg.startswith(b"5.1.1")
        code, msg = s.rcpt("alice@example.test")
        assert code == 250


def test_submission_refuses_auth_before_starttls(stack):
    with smtplib.SMTP("127.0.0.1", stack.port("submission"), timeout=30) as s:
        code, text = s.ehlo()
        assert b"AUTH" not in text and b"STARTTLS" in text
        code, msg = s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIDE=")
        assert code == 530
        assert s.docmd("MAIL", "FROM:<alice@example.test>")[0] == 530


def test_submission_requires_auth_after_starttls(stack):
    with stack.submission(login=None) as s:
        s.ehlo()
        code, msg = s.docmd("MAIL", "FROM:<alice@example.test>")
        assert code == 530 and msg.startswith(b"5.7.0")


def test_wrong_password_is_refused(stack):
    # smtplib's login() tries PLAIN, then LOGIN: two failed AUTHs each time, and
    # the third on one connection closes it (tests/e2e/test_hostile_auth.py).
    with stack.submission(login=None) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice@example.test", "wrong")
        assert e.value.smtp_code == 535
        s.login("alice@example.test", PASSWORD)  # the session goes on
    with stack.submission(login=None) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("nobody@example.test", PASSWORD)
        assert e.value.smtp_code == 535


def test_auth_login_mechanism(stack):
    with stack.submission(login=None) as s:
        s.ehlo()
        s.user, s.password = "bob@example.test", PASSWORD
        code, _ = s.auth("LOGIN", s.auth_login)
        assert code == 235


def test_authenticated_user_may_send_to_another_domain(stack):
    with stack.submission() as s:
        qid = send(s, "alice@example.test", ["friend@elsewhere.test", "bob@example.test"],
                   b"Subject: out\r\n\r\nx\r\n")
    stack.wait_messages("bob@example.test", 1)
    # The foreign recipient waits in the queue for outbound delivery.
    assert stack.queue_files() == [f"{qid}.env"]


def test_oversize_is_refused_with_552(stack):
    with stack.smtp() as s:
        s.ehlo()
        code, msg = s.docmd("MAIL", "FROM:<x@remote.test> SIZE=2000000")
        assert code == 552 and msg.startswith(b"5.3.4")
        s.rset()
        s.mail("x@remote.test")
        s.rcpt("alice@example.test")
        code, msg = s.data(b"Subject: big\r\n\r\n" + (b"x" * 900 + b"\r\n") * 1200)
        assert code == 552 and msg.startswith(b"5.3.4"), msg
        # The session goes on and a normal message still passes.
        send(s, "x@remote.test", ["alice@example.test"], b"Subject: small\r\n\r\nok\r\n")
    stack.wait_messages("alice@example.test", 1)


def test_vrfy_and_expn_reveal_nothing(stack):
    with stack.smtp() as s:
        s.ehlo()
        assert s.verify("alice@example.test")[0] == 252
        assert s.verify("nobody@example.test")[0] == 252
        assert s.expn("team@example.test")[0] == 502


def test_basic_commands_answer_as_rfc5321_says(stack):
    with stack.smtp() as s:
        assert s.helo("client.remote.test")[0] == 250
        assert s.noop()[0] == 250
        assert s.rset()[0] == 250
        assert s.docmd("HELP")[0] == 214 or s.docmd("HELP")[0] == 250
        assert s.docmd("DATA")[0] == 503  # no recipients yet
        assert s.docmd("RCPT", "TO:<alice@example.test>")[0] == 503  # no MAIL yet
        assert s.docmd("BOGUS")[0] == 500
        code, msg = s.docmd("MAIL", "FROM:<>")  # the null sender of bounces
        assert code == 250
        assert s.docmd("MAIL", "FROM:<x@remote.test>")[0] == 503  # nested
        assert s.docmd("QUIT")[0] == 221


def test_pipelined_commands_are_answered_in_order(stack):
    with socket.create_connection(("127.0.0.1", stack.port("smtp")), timeout=30) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"EHLO pipe.remote.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(b"MAIL FROM:<p@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
                  b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        codes = [f.readline()[:3] for _ in range(5)]
        assert codes == [b"250", b"250", b"550", b"250", b"354"]
        c.sendall(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert f.readline().startswith(b"250 2.0.0")
        assert f.readline().startswith(b"221")
    stack.wait_messages("alice@example.test", 1)
    stack.wait_messages("bob@example.test", 1)


def test_utf8_addresses_and_8bit_body_arrive_intact(stack):
    body = "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nnaïve café ☕\r\n".encode()
    with stack.smtp() as s:
        s.ehlo()
        s.mail("jürgen@remote.test", ["SMTPUTF8", "BODY=8BITMIME"])
        assert s.rcpt("alice@example.test")[0] == 250
        assert s.data(body)[0] == 250
    (msg,) = stack.wait_messages("alice@example.test", 1)
    assert msg.startswith("Return-Path: <jürgen@remote.test>\n".encode())
    assert "naïve café ☕".encode() in msg
