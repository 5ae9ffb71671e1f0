"""DataReader: the end of SMTP DATA, dot-unstuffing, bare CR/LF, the limits.

The reference model says it the slow, obvious way: split the stream into
RFC 5321 lines at CRLF, stop at the first line that is one dot, drop a
leading dot, then make every lone CR and lone LF a CRLF.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from common.datareader import DataReader

END = b"\r\n.\r\n"


def reference(stream: bytes) -> tuple[bytes, bytes] | None:
    """(message, what follows the end), or None when the stream has no end."""
    lines = stream.split(b"\r\n")
    out = []
    for i, line in enumerate(lines[:-1]):  # the last piece has no CRLF after it
        if line == b".":
            rest = b"\r\n".join(lines[i + 1 :])
            return normalize(b"".join(out)), rest
        out.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
    return None


def normalize(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def feed_all(reader: DataReader, pieces: list[bytes]) -> bytes:
    return b"".join(reader.feed(p) for p in pieces)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


# Bytes that matter, often; an ordinary letter now and then.
tricky = st.lists(st.sampled_from([b".", b"\r", b"\n", b"a", b"\r\n", b".\r\n", b"\r.\r",
                                   b"\n.\n", b"\n.\r\n"]), max_size=60).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=12)


@settings(max_examples=600)
@given(tricky, tricky, cuts)
def test_any_stream_reads_as_the_reference_says(body, after, where):
    stream = body + END + after
    expected, rest = reference(stream)
    r = DataReader()
    out = feed_all(r, split(stream, where))
    assert r.done
    assert out == expected
    assert r.unused == rest
    assert r.size == len(expected)


@settings(max_examples=300)
@given(tricky, cuts)
def test_a_stream_without_its_end_gives_a_prefix_and_waits(body, where):
    if reference(body) is not None:
        return  # it has an end after all: the test above covers it
    r = DataReader()
    out = feed_all(r, split(body, where))
    assert not r.done and r.unused == b""
    full, _ = reference(body + END)
    assert full.startswith(out)


@settings(max_examples=400)
@given(st.binary(max_size=300), cuts)
def test_no_output_ever_holds_a_lone_cr_or_lf(data, where):
    r = DataReader()
    out = feed_all(r, split(data + END, where))
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", out) is None
    assert out == b"" or out.endswith(b"\r\n")


@settings(max_examples=300)
@given(tricky, st.integers(min_value=1, max_value=80), cuts)
def test_the_size_limit_stops_output_but_not_the_reading(body, limit, where):
    stream = body + END + b"QUIT\r\n"
    expected, rest = reference(stream)
    r = DataReader(size_limit=limit)
    out = feed_all(r, split(stream, where))
    assert r.done and r.unused == rest
    assert r.size == len(expected)
    assert r.too_big == (len(expected) > limit)
    assert out == expected if not r.too_big else len(out) <= limit


def test_only_crlf_dot_crlf_ends_the_data():
    for fake in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\n", b"\r\n.\n", b"\r\n.\r"):
        r = DataReader()
        r.feed(b"a" + fake + b"b\r\n")
        assert not r.done, fake
    r = DataReader()
    assert r.feed(b"a\r\n.\r\nMAIL FROM:<x>\r\n") == b"a\r\n"
    assert r.done and r.unused == b"MAIL FROM:<x>\r\n"


def test_an_empty_message_ends_at_once():
    r = DataReader()
    assert r.feed(b".\r\nQUIT\r\n") == b""
    assert r.done and r.unused == b"QUIT\r\n"


def test_smuggling_attempts_become_plain_lines():
    r = DataReader()
    out = r.feed(b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<ceo@bank.example>\r\n.\r\n")
    assert out == b"Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<ceo@bank.example>\r\n"
    assert r.done


def test_dots_are_unstuffed_at_line_starts_only():
    r = DataReader()
    assert r.feed(b"..a\r\n.b\r\nc.\r\n...\r\n.\r\n") == b".a\r\nb\r\nc.\r\n..\r\n"
    # After a bare LF the line has not ended: its dot is data.
    r = DataReader()
    assert r.feed(b"x\n..y\r\n.\r\n") == b"x\r\n..y\r\n"


def test_a_cr_split_from_its_lf_is_still_one_line_end():
    r = DataReader()
    assert r.feed(b"abc\r") == b"abc"
    assert r.feed(b"\n.") == b"\r\n"
    assert r.feed(b"\r") == b""
    assert r.feed(b"\n") == b""
    assert r.done


def test_a_line_over_the_limit_is_flagged_and_dropped():
    r = DataReader(line_limit=10)
    assert r.feed(b"12345678\r\n") == b"12345678\r\n"
    assert r.feed(b"123456789") == b""
    r.feed(b"\r\nshort\r\n.\r\n")
    assert r.line_too_long and r.done
    # Lines ended by a bare LF count as lines: an LF-only message is not one long line.
    r = DataReader(line_limit=10)
    r.feed(b"1234567\n" * 100 + b".\r\n")
    assert not r.line_too_long


@settings(max_examples=300)
@given(st.lists(st.sampled_from([b"a", b"aaaa", b"\r\n", b"\n", b"\r", b"."]), max_size=80)
       .map(b"".join), st.integers(min_value=3, max_value=12), cuts)
def test_a_line_is_too_long_exactly_when_the_reference_has_one_over_the_limit(body, limit,
                                                                             where):
    stream = body + END
    expected, _ = reference(stream)
    r = DataReader(line_limit=limit)
    out = feed_all(r, split(stream, where))
    longest = max(len(line) for line in expected.split(b"\r\n"))
    assert r.line_too_long == (longest > limit - 2)
    if not r.line_too_long:
        assert out == expected
