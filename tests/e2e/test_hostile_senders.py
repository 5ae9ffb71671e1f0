"""Forged senders: on submission a login sends only as its own addresses.

Before, any logged-in user could use any MAIL FROM (alice sent as bob).
Now 587 and 465 take the login, the login with a +detail, an alias that
reaches it and what mta.send_as allows; anything else gets Postfix's
553 5.7.1. Port 25 still takes mail that claims a local sender (forwarders
do that), but only for local recipients: it never relays.
"""

from __future__ import annotations

import smtplib

import pytest

from tests.conftest import PASSWORD, client_tls

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
SEND_AS = {ALICE: ["boss@corp.example", "@alice.example"], CAROL: ["*"]}


@pytest.fixture
def senders_stack(bare_stack):
    bare_stack.write_config(send_as=SEND_AS)
    bare_stack.start("mdad")
    bare_stack.start("mtad")
    return bare_stack


def submissions(stack, login: str) -> smtplib.SMTP:
    s = smtplib.SMTP_SSL(*stack.address("submissions"), timeout=30, context=client_tls())
    s.login(login, PASSWORD)
    return s


def refused(sender: str, login: str) -> tuple[int, bytes]:
    return 553, f"5.7.1 <{sender}>: Sender address rejected: not owned by user {login}".encode()


def try_mail(s: smtplib.SMTP, sender: str) -> tuple[int, bytes]:
    reply = s.mail(sender)
    s.rset()
    return reply


@pytest.mark.parametrize("sender", [
    ALICE, "Alice@Example.TEST", "alice+tag@example.test",
    "postmaster@example.test",  # an alias to alice
    "team@example.test",  # an alias to alice and bob
    "boss@corp.example", "anyone@alice.example",  # what send_as allows
    "",  # the null sender: not checked, as in Postfix
])
def test_alice_may_send_as_her_own_addresses(senders_stack, sender):
    with senders_stack.submission(ALICE) as s:
        code, msg = try_mail(s, sender)
        assert (code, msg) == (250, b"2.1.0 Ok"), msg


@pytest.mark.parametrize("sender", [
    BOB, "bob+tag@example.test", "ceo@bank.example", "rob@remote.test",
    "boss@corp.example.net", "nobody@example.test",
])
def test_alice_may_not_send_as_anyone_else(senders_stack, sender):
    with senders_stack.submission(ALICE) as s:
        assert s.mail(sender) == refused(sender, ALICE)
        # No transaction was started.
        assert s.rcpt("rob@remote.test")[0] == 503
        assert s.mail(ALICE)[0] == 250


def test_send_as_star_allows_any_sender_and_only_for_that_login(senders_stack):
    with senders_stack.submission(CAROL) as s:
        assert try_mail(s, BOB)[0] == 250
        assert try_mail(s, "ceo@bank.example")[0] == 250
    with senders_stack.submission(BOB) as s:
        assert s.mail(CAROL) == refused(CAROL, BOB)
        assert s.mail("boss@corp.example") == refused("boss@corp.example", BOB)


def test_the_same_rule_on_port_465(senders_stack):
    with submissions(senders_stack, ALICE) as s:
        assert s.mail(BOB) == refused(BOB, ALICE)
        assert s.mail("postmaster@example.test")[0] == 250
        assert s.rcpt(BOB)[0] == 250
        assert s.data(b"Subject: from the postmaster\r\n\r\nhi\r\n")[0] == 250
    (msg,) = senders_stack.wait_messages(BOB, 1)
    assert msg.startswith(b"Return-Path: <postmaster@example.test>\n")


def test_port_25_takes_a_local_sender_for_local_mail_but_never_relays(senders_stack):
    with senders_stack.smtp() as s:
        s.ehlo("forwarder.example")
        assert not s.has_extn("auth")
        assert s.mail(ALICE) == (250, b"2.1.0 Ok")
        assert s.rcpt("rob@remote.test") == (
            554, b"5.7.1 <rob@remote.test>: Relay access denied")
        assert s.rcpt(BOB)[0] == 250
        assert s.data(b"Subject: forwarded\r\n\r\nhi\r\n")[0] == 250
    (msg,) = senders_stack.wait_messages(BOB, 1)
    assert b"Subject: forwarded" in msg
