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


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    body = wire[:-3]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                max_size=10))
def test_dot_stuffing_round_trips(lines):
    msg = b"".join(line + b"\r\n" for line in lines)
    wire = dot_stuff(msg)
    assert b"\r\n.\r\n" not in wire[:-3]
    assert unstuff(wire) == msg


def test_dot_stuffing_of_a_leading_dot_and_missing_final_newline():
    assert dot_stuff(b".hidden\r\nlast") == b"..hidden\r\nlast\r\n.\r\n"
