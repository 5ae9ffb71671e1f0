"""The SMTP/LMTP reply parser and dot-stuffing: bytes in, replies out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.relay.replies import Reply, ReplyError, ReplyParser, dot_stuff


def test_single_and_multiline_replies():
    p = ReplyParser()
    out = p.feed(b"220 lmtp ready\r\n250-host\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
    assert out == [Reply(220, ("lmtp ready",)), Reply(250, ("host", "PIPELINING", "8BITMIME"))]
    assert str(out[0]) == "220 lmtp ready"


def test_reply_split_anywhere_is_held_until_complete():
    p = ReplyParser()
    assert p.feed(b"25") == []
    assert p.feed(b"0 2.0.0 ok\r") == []
    assert p.feed(b"\n") == [Reply(250, ("2.0.0 ok",))]


@pytest.mark.parametrize("bad", [b"hello\r\n", b"99 x\r\n", b"250-a\r\n251 b\r\n",
                                 b"700 x\r\n", b"250xno\r\n"])
def test_garbage_is_an_error(bad):
    with pytest.raises(ReplyError):
        ReplyParser().feed(bad)


def test_endless_line_is_an_error():
    with pytest.raises(ReplyError):
        ReplyParser().feed(b"250 " + b"x" * 10000)


replies = st.lists(
    st.tuples(st.sampled_from([220, 250, 354, 421, 451, 550, 552]),
              st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
                       min_size=1, max_size=4)),
    min_size=1, max_size=8)


@given(replies, st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_any_chunking_gives_the_same_replies(items, cuts):
    wire = b""
    for code, lines in items:
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            wire += f"{code}{sep}{line}\r\n".encode()
    p = ReplyParser()
    got = []
    pos = 0
    for c in cuts:
        got += p.feed(wire[pos:pos + c])
        pos += c
    got += p.feed(wire[pos:])
    assert [(r.code, list(r.lines)) for r in got] == [(c, ls) for c, ls in items]


@given(st.binary(max_size=300))
def test_parser_never_fails_other_than_with_reply_error(data):
    try:
        ReplyParser().feed(data)
    except ReplyError:
        pass


def receive(wire: bytes) -> bytes:
    """A strict RFC 5321 4.5.2 receiver: CRLF lines up to the lone '.', one
    leading dot taken off the others; it asserts the '.' line is the last."""
    lines = wire.split(b"\r\n")
    assert lines[-1] == b"", "the wire ends with CRLF"
    end = lines.index(b".")
    assert end == len(lines) - 2, "the data ends once, at the end"
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n"
                    for line in lines[:end])


def receive_leniently(wire: bytes) -> bytes:
    """A receiver that also ends lines at a bare LF and drops the CR before
    it (as many servers did before the 2023 smuggling reports): where the old rule let
    a body end the data early ("\\n.\\r\\n") or lose a dot ("\\n.\\rx")."""
    lines = wire.split(b"\n")
    assert lines[-1] == b""
    out = []
    for n, raw in enumerate(lines[:-1]):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line == b".":
            assert n == len(lines) - 2, "the data ended early"
            break
        out.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
    return b"".join(out)


def normalized(message: bytes) -> bytes:
    """The rule written out one byte at a time: lone CR or LF -> CRLF, a final CRLF."""
    out, i = bytearray(), 0
    while i < len(message):
        pair = message[i:i + 2] == b"\r\n"
        out += b"\r\n" if pair or message[i] in b"\r\n" else message[i:i + 1]
        i += 2 if pair else 1
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return bytes(out)


# Bytes that matter here, often enough for hypothesis to combine them.
WIRE_BYTES = st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"\x00", b"\xff"])
                      | st.binary(max_size=4)).map(b"".join)


@given(st.one_of(WIRE_BYTES, st.binary(max_size=200)))
def test_dot_stuffing_of_any_bytes_is_clean_and_round_trips(message):
    wire = dot_stuff(message)
    # Only CRLF-terminated lines, no CR or LF inside one.
    assert wire.endswith(b"\r\n")
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")
    # CRLF.CRLF once, at the end (or the whole wire for an empty message).
    assert wire == b".\r\n" if not message else (
        wire.endswith(b"\r\n.\r\n") and wire.find(b"\r\n.\r\n") == len(wire) - 5)
    assert not wire[:-3].startswith(b".\r\n")
    assert receive(wire) == normalized(message)
    assert receive_leniently(wire) == normalized(message)


def test_dot_stuffing_of_a_leading_dot_and_missing_final_newline():
    assert dot_stuff(b".hidden\r\nlast") == b"..hidden\r\nlast\r\n.\r\n"


def test_bare_lf_and_cr_become_crlf_and_their_dots_are_stuffed():
    # The smuggling body: without this a lenient next hop ends the data at
    # "\n.\r\n" and runs the MAIL FROM after it as a transaction of ours.
    assert dot_stuff(b"hi\n.\r\nMAIL FROM:<ceo@bank.example>\r\n") == (
        b"hi\r\n..\r\nMAIL FROM:<ceo@bank.example>\r\n.\r\n")
    assert dot_stuff(b"a\r.\rb\r\n.\r..") == b"a\r\n..\r\nb\r\n..\r\n...\r\n.\r\n"
    # A lone CR before the CRLF is a line of its own.
    assert dot_stuff(b"x\r\r\n") == b"x\r\n\r\n.\r\n"


def test_a_clean_message_is_sent_as_it_is():
    msg = b"Subject: s\r\n\r\nbody\r\n"
    assert dot_stuff(msg) == msg + b".\r\n"
    assert dot_stuff(b"") == b".\r\n"
