"""Forged Authentication-Results: a field claiming our authserv-id never reaches a mailbox.

A user's filters trust the Authentication-Results field that names their own
server (RFC 8601 section 5); one written by the sender, or by a server on
the way, must not pass for ours. Fields of other authserv-ids stay: they are
another server's claims, for whoever trusts that server.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_smtp_in import send

OURS = "mail.example.test"  # the stack's hostname, our authserv-id

FORGERIES = [
    f"Authentication-Results: {OURS}; spf=pass smtp.mailfrom=boss@example.test",
    # Case and folding don't make it another server's.
    "authentication-results:   MAIL.Example.TEST ;\r\n\tdkim=pass header.d=example.test",
    # A version after the authserv-id (RFC 8601 2.2) and a comment before it.
    f"Authentication-Results: (ours, honest) {OURS} 1; dmarc=pass header.from=example.test",
]


@pytest.mark.parametrize("forged", FORGERIES)
def test_field_claiming_our_authserv_id_is_removed(stack, forged):
    body = (f"{forged}\r\n"
            "Authentication-Results: other.example.net; spf=fail smtp.mailfrom=x@y.test\r\n"
            "Subject: trust me\r\n\r\nwire the money\r\n").encode()
    with stack.smtp() as s:
        send(s, "boss@remote.test", ["alice@example.test"], body)
    (msg,) = stack.wait_messages("alice@example.test", 1)
    head = msg.partition(b"\n\n")[0].lower()
    assert OURS.encode() not in head.replace(b"by mail.example.test", b"")
    assert b"authentication-results: other.example.net; spf=fail" in head
    assert b"subject: trust me" in head
    assert msg.endswith(b"wire the money\n")


def test_submission_may_not_claim_it_either(stack):
    body = (f"{FORGERIES[0]}\r\nSubject: from a user\r\n\r\nhi\r\n").encode()
    with stack.submission("alice@example.test") as s:
        send(s, "alice@example.test", ["bob@example.test"], body)
    (msg,) = stack.wait_messages("bob@example.test", 1)
    head = msg.partition(b"\n\n")[0].lower()
    assert b"authentication-results" not in head
    assert b"subject: from a user" in head
