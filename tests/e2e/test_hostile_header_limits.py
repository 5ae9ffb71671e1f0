"""Header limits: one message may not bring a header too large, or too many fields.

limits.header_size caps the header section, limits.header_fields its number
of fields; over either the data is read to its end, then refused with 552
5.3.4, and the session goes on.
"""

from __future__ import annotations

import smtplib

import pytest

from tests.conftest import wait_for

TOO_LARGE = b"5.3.4 Message header too large"
TOO_MANY = b"5.3.4 Message header has too many header fields"


def fields(count: int, width: int = 60) -> bytes:
    return b"".join(f"X-F{i:05d}: ".encode() + b"v" * width + b"\r\n" for i in range(count))


def send(s: smtplib.SMTP, message: bytes) -> tuple[int, bytes]:
    s.ehlo_or_helo_if_needed()
    # The login's own address: submission refuses a sender the login does not own.
    assert s.mail("alice@example.test")[0] == 250
    assert s.rcpt("alice@example.test")[0] == 250
    return s.data(message)


def nothing_left(stack) -> None:
    wait_for(lambda: not list((stack.root / "spool" / "incoming").iterdir()), 60,
             "incoming/ to be empty")


def test_defaults_refuse_a_header_over_256k_and_take_one_under(stack):
    line = 10 + 300 + 2  # octets per field below
    under = fields((256 * 1024) // line - 2, width=300)
    over = fields((256 * 1024) // line + 2, width=300)
    assert len(under) < 256 * 1024 < len(over) and over.count(b"\r\n") < 1000
    with stack.smtp() as s:
        code, msg = send(s, over + b"\r\nbody\r\n")
        assert (code, msg) == (552, TOO_LARGE)
        code, msg = send(s, under + b"\r\nbody\r\n")
        assert code == 250, msg
    (got,) = stack.wait_messages("alice@example.test", 1)
    assert got.endswith(under.replace(b"\r\n", b"\n") + b"\nbody\n")
    nothing_left(stack)


def test_defaults_refuse_more_than_1000_fields(stack):
    with stack.smtp() as s:
        code, msg = send(s, b"Subject: many\r\n" + fields(1000, width=4) + b"\r\nbody\r\n")
        assert (code, msg) == (552, TOO_MANY)
        # Continuation lines are part of their field, not fields.
        folded = b"Subject: many\r\n" + b"".join(b"X: a\r\n\tb\r\n" for _ in range(999))
        code, msg = send(s, folded + b"\r\nbody\r\n")
        assert code == 250, msg
    stack.wait_messages("alice@example.test", 1)
    nothing_left(stack)


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_configured_limits_apply_and_the_session_goes_on(bare_stack, listener):
    stack = bare_stack
    stack.write_config(sections={"limits": {"header_size": "4K", "header_fields": 20}})
    stack.start("mdad")
    stack.start("mtad")
    s = stack.smtp() if listener == "smtp" else stack.submission()
    with s:
        # A header line that never ends is stopped at the limit, not read into memory.
        endless = b"X-Long: " + b"y" * 900 + b"".join(b"\r\n\t" + b"y" * 900 for _ in range(10))
        assert send(s, endless + b"\r\n\r\nbody\r\n") == (552, TOO_LARGE)
        assert send(s, fields(21, width=4) + b"\r\nbody\r\n") == (552, TOO_MANY)
        # No empty line at all: the whole message is its header, as the store reads it.
        assert send(s, b"Subject: x\r\n" + b"text without a blank line\r\n" * 200)[0] == 552
        code, msg = send(s, fields(20, width=150) + b"\r\nbody\r\n")
        assert code == 250, msg
    stack.wait_messages("alice@example.test", 1)
    nothing_left(stack)
    assert "header too large" in stack.log("mtad")
