"""Submission completes a message (RFC 6409 8.3, 8.4): Message-ID and Date when missing.

Only on 587 and 465, where our own users submit; mail arriving on 25 is
stored as its sender made it.
"""

from __future__ import annotations

import email.utils
import re
import smtplib
import time

import pytest

from tests.conftest import PASSWORD, client_tls

BARE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: bare\r\n\r\nbody\r\n"


def submit(s: smtplib.SMTP, message: bytes) -> None:
    # sendmail sends the bytes as they are: smtplib adds no header of its own.
    assert s.sendmail("alice@example.test", ["bob@example.test"], message) == {}


def header_of(msg: bytes) -> bytes:
    return msg.split(b"\n\n", 1)[0]


@pytest.mark.parametrize("listener", ["submission", "submissions"])
def test_submission_adds_message_id_and_date_when_missing(stack, listener):
    if listener == "submission":
        s = stack.submission()
    else:
        s = smtplib.SMTP_SSL(*stack.address("submissions"), context=client_tls(), timeout=30)
        s.login("alice@example.test", PASSWORD)
    with s:
        submit(s, BARE)
    (msg,) = stack.wait_messages("bob@example.test", 1)
    head = header_of(msg)
    (mid,) = re.findall(rb"(?m)^Message-ID: (.*)$", head)
    assert re.fullmatch(rb"<[0-9]{14}\.[0-9A-F]{17}@mail\.example\.test>", mid), mid
    (date,) = re.findall(rb"(?m)^Date: (.*)$", head)
    when = email.utils.parsedate_to_datetime(date.decode())
    assert when.tzinfo is not None and abs(when.timestamp() - time.time()) < 600
    # Added at the end of the client's header, the body untouched.
    assert head.endswith(b"Subject: bare\nMessage-ID: " + mid + b"\nDate: " + date)
    assert msg.endswith(b"\n\nbody\n")


def test_submission_keeps_the_clients_own_and_adds_only_what_is_missing(stack):
    with stack.submission() as s:
        submit(s, b"Message-ID: <mine@example.test>\r\n" + BARE)
        submit(s, b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" + BARE)
    first, second = stack.wait_messages("bob@example.test", 2)
    heads = sorted([header_of(first), header_of(second)], key=lambda h: b"<mine@" in h)
    with_date, with_id = heads
    assert re.findall(rb"(?m)^Message-ID: .*$", with_id) == [b"Message-ID: <mine@example.test>"]
    assert len(re.findall(rb"(?m)^Date: ", with_id)) == 1
    assert re.findall(rb"(?m)^Date: .*$", with_date) == [b"Date: Mon, 1 Jan 2024 00:00:00 +0000"]
    assert len(re.findall(rb"(?m)^Message-ID: ", with_date)) == 1


def test_port_25_adds_neither(stack):
    with stack.smtp() as s:
        assert s.sendmail("s@remote.test", ["bob@example.test"], BARE) == {}
    (msg,) = stack.wait_messages("bob@example.test", 1)
    head = header_of(msg)
    assert not re.search(rb"(?mi)^(message-id|date):", head)
