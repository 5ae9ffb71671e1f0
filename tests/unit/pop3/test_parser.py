"""CommandReader: every command, bad lines, pauses at STLS/AUTH/QUIT, limits, fuzz."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mda.pop3 import parser as P
from mda.pop3.parser import BadCommand, CommandReader, Line, parse_line


def test_every_command() -> None:
    cases = {
        b"USER alice@example.test": P.User("alice@example.test"),
        b"PASS correct horse 1": P.Pass("correct horse 1"),
        b"STAT": P.Stat(),
        b"LIST": P.List(),
        b"LIST 3": P.List(3),
        b"UIDL": P.Uidl(),
        b"UIDL 12": P.Uidl(12),
        b"RETR 1": P.Retr(1),
        b"TOP 2 0": P.Top(2, 0),
        b"TOP 2 10": P.Top(2, 10),
        b"DELE 7": P.Dele(7),
        b"NOOP": P.Noop(),
        b"RSET": P.Rset(),
        b"QUIT": P.Quit(),
        b"CAPA": P.Capa(),
        b"STLS": P.Stls(),
        b"AUTH": P.Auth(None),
        b"AUTH plain": P.Auth("PLAIN"),
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==": P.Auth("PLAIN", "AGFsaWNlAHNlY3JldA=="),
        b"AUTH PLAIN =": P.Auth("PLAIN", "="),
    }
    for line, cmd in cases.items():
        assert parse_line(line) == cmd, line


def test_keywords_in_any_case_and_the_name() -> None:
    assert parse_line(b"retr 4") == P.Retr(4)
    assert parse_line(b"uSeR bob") == P.User("bob")
    assert P.Retr(1).name == "RETR"
    assert P.Uidl().name == "UIDL"


def test_password_is_the_rest_of_the_line() -> None:
    assert parse_line(b"PASS  two  spaces ") == P.Pass(" two  spaces ")
    assert parse_line("PASS pässwörd".encode()) == P.Pass("pässwörd")


def test_bad_lines() -> None:
    for line in (b"", b"FOO", b"RETRIEVE 1", b"RETR", b"RETR x", b"RETR -1", b"RETR +1",
                 b"RETR 1 2", b"LIST 1 2", b"TOP 1", b"TOP 1 x", b"DELE", b"STAT 1",
                 b"QUIT now", b"USER", b"USER a b", b"PASS", b"PASS ", b"RETR 99999999999",
                 b"RETR 4294967296", b"RETR \xd9\xa1", b"US\x00ER a", b"AUTH PLAIN a b",
                 "RÉTR 1".encode()):
        assert isinstance(parse_line(line), BadCommand), line


def test_pipelined_commands_in_order_whatever_the_split() -> None:
    stream = b"STAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nbad\r\nTOP 1 5\r\nNOOP\r\n"
    expected = [P.Stat(), P.List(), P.Uidl(2), P.Retr(1), BadCommand("Unknown command: BAD"),
                P.Top(1, 5), P.Noop()]
    assert CommandReader().feed(stream) == expected
    for i in range(len(stream) + 1):
        r = CommandReader()
        assert r.feed(stream[:i]) + r.feed(stream[i:]) == expected, i


def test_lf_alone_ends_a_line_too() -> None:
    assert CommandReader().feed(b"STAT\nNOOP\r\n") == [P.Stat(), P.Noop()]


def test_stls_pauses_and_take_buffered_drops_what_followed() -> None:
    r = CommandReader()
    assert r.feed(b"CAPA\r\nSTLS\r\nUSER mallory\r\nPASS x\r\n") == [P.Capa(), P.Stls()]
    assert r.paused
    assert r.feed(b"RETR 1\r\n") == []  # paused: only buffered
    assert r.take_buffered() == b"USER mallory\r\nPASS x\r\nRETR 1\r\n"
    assert r.resume() == []
    assert r.feed(b"CAPA\r\n") == [P.Capa()]


def test_auth_pauses_and_expect_line_hands_out_the_response() -> None:
    r = CommandReader()
    assert r.feed(b"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nSTAT\r\n") == [P.Auth("PLAIN")]
    assert r.expect_line() == [Line(b"AGFsaWNlAHNlY3JldA==")]
    assert r.paused  # one line, then the session decides again
    assert r.resume() == [P.Stat()]


def test_expect_line_waits_for_the_line() -> None:
    r = CommandReader()
    assert r.feed(b"AUTH PLAIN\r\n") == [P.Auth("PLAIN")]
    assert r.expect_line() == []
    assert r.feed(b"*") == []
    assert r.feed(b"\r\nNOOP\r\n") == [Line(b"*")]
    assert r.resume() == [P.Noop()]


def test_a_sasl_response_may_be_longer_than_a_command() -> None:
    r = CommandReader()
    r.feed(b"AUTH PLAIN\r\n")
    long = b"A" * 2000
    assert r.feed(long + b"\r\n") == []
    assert r.expect_line() == [Line(long)]


def test_quit_pauses() -> None:
    r = CommandReader()
    assert r.feed(b"QUIT\r\nDELE 1\r\n") == [P.Quit()]
    assert r.paused


def test_long_line_is_one_bad_command_and_the_next_line_works() -> None:
    r = CommandReader()
    out = r.feed(b"USER " + b"a" * 600)
    assert out == []
    assert len(r._buf) <= P.MAX_LINE + 1  # bounded while the line goes on
    out = r.feed(b"b" * 100_000)
    assert out == [] and len(r._buf) <= P.MAX_LINE + 1
    assert r.feed(b"\r\nSTAT\r\n") == [BadCommand("Line too long"), P.Stat()]


def test_line_at_the_limit_is_taken() -> None:
    user = "u" * (P.MAX_LINE - len("USER ") - 2)
    line = f"USER {user}\r\n".encode()
    assert len(line) == P.MAX_LINE
    assert CommandReader().feed(line) == [P.User(user)]
    assert CommandReader().feed(b"USER u" + line[5:]) == [BadCommand("Line too long")]


# -- fuzz ------------------------------------------------------------------------------

WORDS = st.sampled_from([b"USER", b"PASS", b"STAT", b"LIST", b"RETR", b"TOP", b"DELE",
                         b"UIDL", b"NOOP", b"RSET", b"QUIT", b"CAPA", b"STLS", b"AUTH",
                         b"PLAIN", b"1", b"0", b"-1", b"99999999999", b"*", b"=", b"x"])
LINES = st.lists(WORDS, max_size=4).map(b" ".join) | st.binary(max_size=700).map(
    lambda b: b.replace(b"\n", b""))


def drive(chunks: list[bytes]) -> list[P.Event]:
    """Feed chunks as a server would: resume after every pause, answer AUTH with a line."""
    r = CommandReader()
    out: list[P.Event] = []

    def take(events: list[P.Event]) -> None:
        while events:
            ev = events.pop(0)
            out.append(ev)
            if isinstance(ev, P.Auth):
                events.extend(r.expect_line())
            elif r.paused and not events:
                events.extend(r.resume())

    for chunk in chunks:
        take(r.feed(chunk))
        assert len(r._buf) <= P.MAX_RESPONSE_LINE + len(chunk) + 1
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=12), st.lists(st.integers(0, 50), max_size=10))
def test_fuzz_any_split_gives_the_same_events(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\r\n" for line in lines)
    whole = drive([stream])
    points = sorted({min(c * 13, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert drive(chunks) == whole
    # One event per line: nothing is lost, nothing is made up.
    assert len(whole) == len(lines)
    assert all(isinstance(e, P.Command | BadCommand | Line) for e in whole)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    events = drive([data[i:i + 97] for i in range(0, len(data), 97)])
    assert len(events) <= data.count(b"\n")


def test_pause_after_pass_leaves_what_follows_unread() -> None:
    r = CommandReader(pause_after=(P.Pass,))
    events = r.feed(b"USER u\r\nPASS p\r\nSTAT\r\nQUIT\r\n")
    assert [type(e) for e in events] == [P.User, P.Pass]
    assert r.paused
    assert r.take_buffered() == b"STAT\r\nQUIT\r\n"
    assert [type(e) for e in CommandReader().feed(b"PASS p\r\nSTAT\r\n")] == [P.Pass, P.Stat]
