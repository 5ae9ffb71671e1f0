"""CommandReader framing: literals, continuation, pauses, resync, limits, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mda.imap import commands as c
from mda.imap.events import (
    BadCommand,
    Line,
    LineTooLong,
    LiteralTooLarge,
    NeedContinuation,
)
from mda.imap.parser import CommandReader, Limits
from mda.imap.searchkeys import And, Flag, Header

from .wire import run

STREAM = (
    b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n"
    b"a2 SELECT INBOX\r\n"
    b"a3 APPEND Drafts (\\Draft) {14}\r\nSubject: x\r\n\r\n\r\n"
    b"a4 UID SEARCH CHARSET UTF-8 SUBJECT {5}\r\ncaf\xc3\xa9 UNSEEN\r\n"
    b"a5 NOOP\r\n"
)
EXPECTED = [
    NeedContinuation("a1", 5, "LOGIN"),
    "PAUSE",
    c.Login("a1", "alice", "secret"),
    c.Select("a2", "INBOX"),
    NeedContinuation("a3", 14, "APPEND"),
    "PAUSE",
    c.Append("a3", "Drafts", b"Subject: x\r\n\r\n", ("\\Draft",)),
    NeedContinuation("a4", 5, "UID"),
    "PAUSE",
    c.Search(
        "a4",
        And((Header("SUBJECT", "café"), Flag("\\Seen", False))),
        uid=True,
        charset="UTF-8",
    ),
    c.Noop("a5"),
]


def test_stream_in_one_feed() -> None:
    assert run([STREAM]) == EXPECTED


def test_stream_split_at_every_boundary() -> None:
    for i in range(len(STREAM) + 1):
        assert run([STREAM[:i], STREAM[i:]]) == EXPECTED, i


def test_stream_byte_by_byte() -> None:
    assert run([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_synchronizing_literal_waits_for_the_session() -> None:
    reader = CommandReader()
    assert reader.feed(b"a LOGIN {5}\r\n") == [NeedContinuation("a", 5, "LOGIN")]
    assert reader.paused
    assert reader.resume() == []  # the session sent "+"
    assert not reader.paused
    assert reader.feed(b"ali") == []
    assert reader.feed(b"ce pw") == []
    assert reader.feed(b"\r\n") == [c.Login("a", "alice", "pw")]


def test_a_literal_announced_on_a_later_line() -> None:
    reader = CommandReader()
    assert reader.feed(b"a LOGIN {5+}\r\nalice {2}\r\n") == [NeedContinuation("a", 2, "LOGIN")]
    assert reader.resume() == []
    assert reader.feed(b"pw\r\n") == [c.Login("a", "alice", "pw")]


def test_the_session_may_refuse_a_literal() -> None:
    # e.g. APPEND before login, or bigger than this user may store.
    reader = CommandReader()
    assert reader.feed(b"a APPEND INBOX {5000}\r\n") == [NeedContinuation("a", 5000, "APPEND")]
    assert reader.refuse_literal() == []
    assert not reader.paused
    assert reader.feed(b"b NOOP\r\n") == [c.Noop("b")]
    with pytest.raises(RuntimeError):
        reader.refuse_literal()


def test_nothing_is_read_while_a_literal_waits() -> None:
    # A client that does not wait for "+" gets its bytes read only after it.
    reader = CommandReader()
    assert reader.feed(b"a LOGIN {1}\r\nx y\r\nb NOOP\r\n") == [NeedContinuation("a", 1, "LOGIN")]
    assert reader.resume() == [c.Login("a", "x", "y"), c.Noop("b")]


def test_non_synchronizing_literal_asks_nothing() -> None:
    assert run([b"a LOGIN {5+}\r\nalice {2+}\r\npw\r\n"]) == [c.Login("a", "alice", "pw")]


def test_literal_holding_crlf_and_braces() -> None:
    events = run([b'a LOGIN {8+}\r\na\r\n{3}\r\n "x"\r\nb NOOP\r\n'])
    assert events == [c.Login("a", "a\r\n{3}\r\n", "x"), c.Noop("b")]


def test_bare_lf_ends_a_line_and_empty_lines_are_ignored() -> None:
    assert run([b"\r\n\na NOOP\nb LOGIN {1+}\nx y\n"]) == [c.Noop("a"), c.Login("b", "x", "y")]


@pytest.mark.parametrize(
    "bad",
    [
        b"a FETCH 1 (FLAGS\r\n",
        b"a SELECT\r\n",
        b"a LOGIN {abc}\r\n",
        b"a LOGIN {-1}\r\n",
        b"a LOGIN {}\r\n",
        b"a LOGIN {3\r\n",
        b"a LOGIN x{1+}\r\ny\r\n",
        b"a LOGIN {1+}x\r\n",
        b'a LOGIN "unterminated\r\n',
        b"a LOGIN a\x00b c\r\n",
        b"\x80\xff garbage\r\n",
        b"a\tNOOP\r\n",
        b" \r\n",
        b"a NOOP \r\n",
        b"a LOGIN {2+}\r\nx\r\n",  # the literal eats the CR LF: "x\r" then "\n" ends it
    ],
)
def test_bad_command_then_the_next_one_parses(bad: bytes) -> None:
    events = run([bad + b"z NOOP\r\n"])
    assert isinstance(events[0], BadCommand), events
    assert events[-1] == c.Noop("z"), events


def test_sync_literal_on_a_bad_command_is_refused_without_continuation() -> None:
    # No `+` goes out, so the client sends nothing of the literal.
    assert run([b"a FROB {5}\r\nb NOOP\r\n"]) == [
        BadCommand("a", "unknown command FROB"),
        c.Noop("b"),
    ]
    assert run([b"{5}\r\nb NOOP\r\n"]) == [BadCommand(None, "invalid tag"), c.Noop("b")]


def test_bad_command_tags() -> None:
    (event,) = run([b"abc SELECT\r\n"])
    assert isinstance(event, BadCommand) and event.tag == "abc"
    (event,) = run([b"(x SELECT\r\n"])
    assert isinstance(event, BadCommand) and event.tag is None


# Pauses: IDLE, AUTHENTICATE, STARTTLS.


def test_idle_then_done_in_the_same_chunk() -> None:
    reader = CommandReader()
    assert reader.feed(b"a IDLE\r\nDONE\r\nb NOOP\r\n") == [c.Idle("a")]
    assert reader.paused
    assert reader.feed(b"c NOOP\r\n") == []  # nothing while paused
    assert reader.expect_line() == [Line(b"DONE")]
    assert reader.paused
    assert reader.resume() == [c.Noop("b"), c.Noop("c")]
    assert not reader.paused


def test_idle_done_arriving_later() -> None:
    reader = CommandReader()
    assert reader.feed(b"a IDLE\r\n") == [c.Idle("a")]
    assert reader.expect_line() == []
    assert reader.feed(b"DO") == []
    assert reader.feed(b"NE\r\n") == [Line(b"DONE")]
    assert reader.resume() == []


def test_authenticate_lines_are_raw() -> None:
    reader = CommandReader()
    assert reader.feed(b"a AUTHENTICATE LOGIN\r\n") == [c.Authenticate("a", "LOGIN")]
    assert reader.expect_line() == []
    # Braces and quotes mean nothing in a SASL response.
    assert reader.feed(b"YWxp{5}\r\n") == [Line(b"YWxp{5}")]
    assert reader.expect_line() == []
    assert reader.feed(b"*\r\n") == [Line(b"*")]
    assert reader.resume() == []
    assert reader.feed(b"b NOOP\r\n") == [c.Noop("b")]


def test_authenticate_with_initial_response_still_pauses() -> None:
    reader = CommandReader()
    assert reader.feed(b"a AUTHENTICATE PLAIN AGEAYg==\r\nb NOOP\r\n") == [
        c.Authenticate("a", "PLAIN", "AGEAYg==")
    ]
    assert reader.resume() == [c.Noop("b")]


def test_a_bad_authenticate_does_not_pause() -> None:
    reader = CommandReader()
    events = reader.feed(b"a AUTHENTICATE\r\nb NOOP\r\n")
    assert isinstance(events[0], BadCommand) and events[1] == c.Noop("b")
    assert not reader.paused


def test_starttls_hands_back_injected_plaintext() -> None:
    reader = CommandReader()
    assert reader.feed(b"a STARTTLS\r\nb LOGIN evil x\r\n") == [c.StartTLS("a")]
    assert reader.buffered == len(b"b LOGIN evil x\r\n")
    assert reader.take_buffered() == b"b LOGIN evil x\r\n"
    assert reader.buffered == 0
    assert reader.resume() == []
    assert reader.feed(b"c NOOP\r\n") == [c.Noop("c")]


def test_mode_changes_in_the_middle_of_a_command_are_refused() -> None:
    reader = CommandReader()
    reader.feed(b"a LOGIN {5}\r\n")
    with pytest.raises(RuntimeError):
        reader.expect_line()
    reader.resume()
    reader.feed(b"al")  # inside the literal now
    for call in (reader.expect_line, reader.resume, reader.refuse_literal):
        with pytest.raises(RuntimeError):
            call()


# Limits.

SMALL = Limits(max_line=64, max_literal=100, max_arg_literal=10, max_depth=5)


def test_line_too_long_is_refused_with_its_tag_and_skipped() -> None:
    long = b"t1 LOGIN " + b"x" * 100 + b" y\r\n"
    assert run([long + b"t2 NOOP\r\n"], SMALL) == [
        LineTooLong("t1", "command line too long"),
        c.Noop("t2"),
    ]


def test_line_too_long_is_noticed_before_its_end_arrives() -> None:
    reader = CommandReader(SMALL)
    assert reader.feed(b"t1 NOOP " + b"x" * 50) == []
    assert reader.feed(b"x" * 20) == [LineTooLong("t1", "command line too long")]
    assert reader.feed(b"x" * 10_000) == []
    assert reader.buffered == 0  # nothing of it is kept
    assert reader.feed(b"x\r\nt2 NOOP\r\n") == [c.Noop("t2")]


def test_line_limit_counts_every_line_of_a_command() -> None:
    line = b"t LOGIN {1+}\r\nx " + b"y" * 60 + b"\r\nt2 NOOP\r\n"
    assert run([line], SMALL) == [LineTooLong("t", "command line too long"), c.Noop("t2")]


def test_line_exactly_at_the_limit_is_fine() -> None:
    line = b"t LOGIN a " + b"b" * (64 - 10)
    assert len(line) == 64
    assert run([line + b"\r\n"], SMALL) == [c.Login("t", "a", "b" * 54)]
    assert isinstance(run([line + b"b\r\n"], SMALL)[0], LineTooLong)


def test_too_long_line_ending_in_a_non_synchronizing_literal() -> None:
    # The literal still comes; it must not be read as commands.
    data = b"t1 LOGIN " + b"x" * 100 + b" {12+}\r\nt9 LOGOUT\r\n\r\nt2 NOOP\r\n"
    assert run([data], SMALL) == [LineTooLong("t1", "command line too long"), c.Noop("t2")]


def test_too_long_line_ending_in_a_literal_over_every_limit_finishes_the_reader() -> None:
    # Its command is unknown, so only a literal over the larger (APPEND's)
    # limit is refused; the reader reads none of it.
    reader = CommandReader(SMALL)
    events = reader.feed(b"t1 LOGIN " + b"x" * 100 + b" {101+}\r\n" + b"m" * 50)
    assert events == [LineTooLong("t1", "command line too long"),
                      LiteralTooLarge(None, 101, False)]
    assert reader.finished and reader.buffered == 0


def test_synchronizing_literal_too_large() -> None:
    reader = CommandReader(SMALL)
    assert reader.feed(b"t1 LOGIN {11}\r\n") == [LiteralTooLarge("t1", 11, True, "LOGIN")]
    # The client got no `+`: its next line is a new command.
    assert reader.feed(b"t2 NOOP\r\n") == [c.Noop("t2")]
    assert not reader.finished


def test_non_synchronizing_literal_too_large_finishes_the_reader() -> None:
    # Its bytes are on their way: none is read, kept or skipped, and nothing
    # after them is a command (the session closes the connection).
    reader = CommandReader(SMALL)
    data = b"t1 LOGIN {11+}\r\n" + b"t9 LOGOUT\r\n" + b"t2 NOOP\r\n"
    assert reader.feed(data) == [LiteralTooLarge("t1", 11, False, "LOGIN")]
    assert reader.finished
    assert reader.buffered == 0
    assert reader.feed(b"x" * 100_000 + b"\r\nt3 NOOP\r\n") == []
    assert reader.buffered == 0


def test_append_has_the_larger_literal_limit() -> None:
    assert run([b"t APPEND INBOX {100+}\r\n" + b"m" * 100 + b"\r\n"], SMALL) == [
        c.Append("t", "INBOX", b"m" * 100)
    ]
    assert run([b"t APPEND INBOX {101}\r\nt2 NOOP\r\n"], SMALL) == [
        LiteralTooLarge("t", 101, True, "APPEND"),
        c.Noop("t2"),
    ]
    assert run([b"t APPEND INBOX {101+}\r\n" + b"m" * 101 + b"\r\nt2 NOOP\r\n"],
               SMALL) == [LiteralTooLarge("t", 101, False, "APPEND")]


def test_literal_limit_is_for_all_literals_of_a_command() -> None:
    assert run([b"t LOGIN {6+}\r\nabcdef {5}\r\nt2 NOOP\r\n"], SMALL) == [
        LiteralTooLarge("t", 5, True, "LOGIN"),
        c.Noop("t2"),
    ]


def test_limits_changed_between_commands_apply_to_the_next_one() -> None:
    # As at login: small literals before, max_message_size for APPEND after.
    reader = CommandReader(Limits(max_literal=10, max_arg_literal=10))
    assert reader.feed(b"a APPEND INBOX {11}\r\n") == [LiteralTooLarge("a", 11, True, "APPEND")]
    reader.limits = Limits(max_literal=1000, max_arg_literal=10)
    assert reader.feed(b"b APPEND INBOX {11}\r\n") == [NeedContinuation("b", 11, "APPEND")]
    assert reader.resume() == []
    assert reader.feed(b"x" * 11 + b"\r\n") == [c.Append("b", "INBOX", b"x" * 11)]
    assert reader.feed(b"c LOGIN {11}\r\n") == [LiteralTooLarge("c", 11, True, "LOGIN")]


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(11, 10**12),
    sync=st.booleans(),
    name=st.sampled_from([b"LOGIN", b"APPEND INBOX", b"SELECT", b"UID SEARCH TEXT"]),
    chunks=st.lists(st.integers(1, 5000), min_size=1, max_size=20),
)
def test_a_refused_literal_is_never_buffered(size: int, sync: bool, name: bytes,
                                             chunks: list[int]) -> None:
    # Whatever the command, the size and how the bytes arrive: a literal over
    # the limit leaves the reader holding nothing of it.
    limits = Limits(max_literal=10, max_arg_literal=10)
    reader = CommandReader(limits)
    head = b"t " + name + b" {%d%s}\r\n" % (size, b"" if sync else b"+")
    events = reader.feed(head)
    assert events == [LiteralTooLarge("t", size, sync, name.split()[0].decode())]
    for n in chunks:
        reader.feed(b"y" * n)
        # A synchronizing literal never comes; the client's bytes are then
        # read as the line of a next command, never kept past the line limit.
        assert reader.buffered <= (0 if not sync else limits.max_line + 1)
    assert reader.finished is not sync


def test_absurd_literal_sizes() -> None:
    digits = b"9" * 5000  # int() would refuse this many digits
    assert run([b"t LOGIN {" + digits + b"}\r\nt2 NOOP\r\n"]) == [
        LiteralTooLarge("t", 2**63, True, "LOGIN"),
        c.Noop("t2"),
    ]
    reader = CommandReader()
    assert reader.feed(b"t LOGIN {99999999999999+}\r\n" + b"x" * 1000) == [
        LiteralTooLarge("t", 99999999999999, False, "LOGIN")
    ]
    assert reader.buffered == 0


def test_raw_line_too_long() -> None:
    reader = CommandReader(SMALL)
    reader.feed(b"a IDLE\r\n")
    assert reader.expect_line() == []
    assert reader.feed(b"D" * 70) == [LineTooLong(None, "line too long")]
    assert reader.paused
    # A raw line has no literals: its end is just the next LF.
    assert reader.resume() == []
    assert reader.feed(b"{5+}\r\nb NOOP\r\n") == [c.Noop("b")]


def test_default_limits() -> None:
    limits = Limits()
    assert limits.max_line == 64 * 1024
    assert limits.max_literal == 36 * 1024 * 1024
    message = b"x" * (2 * 1024 * 1024)
    events = run([b"a APPEND INBOX {%d+}\r\n" % len(message), message, b"\r\n"])
    assert events == [c.Append("a", "INBOX", message)]


# Fuzz.

VALID = [
    b"a NOOP\r\n",
    b"b LOGIN {3}\r\nbob {2+}\r\npw\r\n",
    b'c SELECT "INBOX" (CONDSTORE)\r\n',
    b"d UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM)]<0.10>) (CHANGEDSINCE 3)\r\n",
    b"e SEARCH RETURN (COUNT) OR FROM {3}\r\nbob NOT 1:3\r\n",
    b"f STORE 1 (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Seen)\r\n",
    b"g APPEND INBOX {7+}\r\nx\r\n{1}\r\n\r\n",
    b"h IDLE\r\n",
    b'i LIST (SUBSCRIBED) "" (* %) RETURN (STATUS (UNSEEN))\r\n',
    b"j AUTHENTICATE PLAIN =\r\n",
    b"k BAD COMMAND\r\n",
    b"l LOGIN {999999}\r\n",
    b"m LOGIN {10+}\r\n0123456789 x\r\n",
    b"n FETCH 1 (FLAGS\r\n",
    b"\r\n",
]


@st.composite
def chunked(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@given(st.lists(st.sampled_from(VALID), max_size=12), st.data())
@settings(max_examples=300)
def test_chunking_never_changes_the_events(commands: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(commands)
    whole = run([stream])
    assert run(data.draw(chunked(stream))) == whole


@given(st.binary(max_size=300), st.data())
@settings(max_examples=500)
def test_arbitrary_bytes_only_make_events(raw: bytes, data: st.DataObject) -> None:
    whole = run([raw], SMALL)
    assert run(data.draw(chunked(raw)), SMALL) == whole


ALPHABET = st.sampled_from(
    [
        b"a",
        b" ",
        b"\r\n",
        b"\n",
        b"{",
        b"}",
        b"+",
        b"3",
        b"0",
        b"(",
        b")",
        b'"',
        b"\\",
        b"*",
        b"~",
        b"[",
        b"]",
        b"<",
        b".",
        b"NOOP",
        b"LOGIN",
        b"FETCH",
        b"SEARCH",
        b"NOT",
        b"UID",
        b"IDLE",
        b"BODY[",
        b"x",
        b"1:*",
        b"\xff",
    ]
)


@given(st.lists(ALPHABET, max_size=60), st.data())
@settings(max_examples=500)
def test_imap_like_noise_only_makes_events(parts: list[bytes], data: st.DataObject) -> None:
    raw = b"".join(parts)
    whole = run([raw], SMALL)
    assert run(data.draw(chunked(raw)), SMALL) == whole


@given(st.lists(ALPHABET.filter(lambda p: b"{" not in p), max_size=60))
@settings(max_examples=300)
def test_after_any_line_without_literals_the_next_command_is_read(parts: list[bytes]) -> None:
    events = run([b"".join(parts) + b"\r\nzz NOOP\r\n"], SMALL)
    assert events[-1] == c.Noop("zz")


def test_pause_after_login_leaves_what_follows_unread() -> None:
    """The login process's reader: bytes behind LOGIN are for the mail process."""
    r = CommandReader(pause_after=(c.Login,))
    events = r.feed(b"a NOOP\r\nb LOGIN u p\r\nc SELECT INBOX\r\nd NOOP\r\n")
    assert [type(e) for e in events] == [c.Noop, c.Login]
    assert r.paused
    assert r.take_buffered() == b"c SELECT INBOX\r\nd NOOP\r\n"
    # A refused login: the bytes come back and the reader goes on with them.
    r.feed(b"c SELECT INBOX\r\n")
    assert [type(e) for e in r.resume()] == [c.Select]
    # The mail process's reader does not pause there.
    assert [type(e) for e in CommandReader().feed(b"b LOGIN u p\r\nc NOOP\r\n")] == [
        c.Login, c.Noop]
