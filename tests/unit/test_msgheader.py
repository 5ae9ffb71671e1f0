"""HeaderReader and Header: the header section of a message arriving in pieces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.msgheader import TOO_LARGE, TOO_MANY_FIELDS, Header, HeaderReader


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


lines = st.lists(st.sampled_from([b"Received: x\r\n", b"\tfolded\r\n", b"From: a\r\n",
                                  b"\r\n", b"body\r\n", b"no colon\r\n"]), max_size=30)


@settings(max_examples=500)
@given(lines, st.lists(st.integers(0, 500), max_size=10))
def test_the_header_ends_at_the_first_empty_line_however_it_is_cut(parts, where):
    message = b"".join(parts)
    cut = message.find(b"\r\n\r\n")
    head_end = 0 if message.startswith(b"\r\n") else (len(message) if cut < 0 else cut + 2)
    r = HeaderReader()
    rest = b"".join(r.feed(p) for p in split(message, where))
    header = r.finish()
    assert header.raw == message[:head_end]
    assert rest == message[head_end:]
    assert Header.of(message).raw == header.raw  # the whole-message shortcut agrees
    fields = [ln for ln in header.raw.split(b"\r\n") if ln and ln[:1] not in b" \t"]
    assert len(header) == len(fields)


def test_counts_and_values_are_case_insensitive_and_unfolded():
    h = Header.of(b"Received: from a\r\n\tby b\r\nRECEIVED : c\r\nDelivered-To: Bob@X\r\n"
                  b"Subject: s\r\n\r\nReceived: in the body\r\n")
    assert h.count("received", "delivered-to") == 3
    assert h.values("Received") == [b"from a\tby b", b"c"]
    assert h.values("delivered-to") == [b"Bob@X"]
    assert not h.has("message-id") and h.has("SUBJECT")


def test_over_the_size_limit_nothing_more_is_kept():
    r = HeaderReader(size_limit=100)
    assert r.feed(b"X-A: " + b"a" * 60 + b"\r\n") == b""
    assert r.feed(b"X-B: " + b"b" * 60 + b"\r\n\r\nbody\r\n") == b""
    assert r.error == TOO_LARGE and r.done
    assert r.feed(b"more\r\n") == b""
    with pytest.raises(ValueError):
        r.finish()


def test_a_header_line_that_never_ends_is_stopped_at_the_limit():
    r = HeaderReader(size_limit=1000)
    for _ in range(20):
        r.feed(b"x" * 100)
    assert r.error == TOO_LARGE


def test_a_header_of_exactly_the_limit_passes():
    head = b"X-A: " + b"a" * 93 + b"\r\n"  # 100 octets
    r = HeaderReader(size_limit=100)
    assert r.feed(head + b"\r\nbody\r\n") == b"\r\nbody\r\n"
    assert r.error is None and r.finish().raw == head


def test_more_fields_than_the_limit_is_refused_continuations_do_not_count():
    r = HeaderReader(field_limit=3)
    r.feed(b"A: 1\r\n\tmore\r\n\tmore\r\nB: 2\r\nC: 3\r\n\r\n")
    assert r.error is None
    r = HeaderReader(field_limit=3)
    r.feed(b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n")
    assert r.error == TOO_MANY_FIELDS


def test_lf_only_messages_are_read_too():
    h = Header.of(b"Delivered-To: a@b\nSubject: x\n\nbody\n")
    assert h.values("delivered-to") == [b"a@b"] and len(h) == 2
