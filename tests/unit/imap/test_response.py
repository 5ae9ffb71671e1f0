"""The server's bytes: string forms, status lines, sequence sets."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mda.imap import response as r
from mda.imap.grammar import Cursor
from mda.imap.seqset import SequenceSet


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("a]b", b"a]b"),  # resp-specials are fine in an astring
        ("", b'""'),
        ("two words", b'"two words"'),
        ("nil", b'"nil"'),  # would read as NIL
        ("NIL", b'"NIL"'),
        ("a(b", b'"a(b"'),
        ("50%", b'"50%"'),
        ("a{3}", b'"a{3}"'),
        ('say "hi"', b'{8}\r\nsay "hi"'),
        ("back\\slash", b"{10}\r\nback\\slash"),
        ("caf\u00e9", b"{5}\r\ncaf\xc3\xa9"),
        ("line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        (b"\x80", b"{1}\r\n\x80"),
    ],
)
def test_astring_forms(value: str | bytes, wire: bytes) -> None:
    assert r.astring(value) == wire


def test_string_is_never_an_atom() -> None:
    assert r.string("abc") == b'"abc"'
    assert r.string("") == b'""'


def test_long_strings_go_as_literals() -> None:
    short = "x" * r.QUOTED_MAX
    assert r.string(short) == b'"' + short.encode() + b'"'
    assert r.string(short + "x") == b"{%d}\r\n" % (r.QUOTED_MAX + 1) + short.encode() + b"x"


def test_tab_and_controls_go_as_literals() -> None:
    assert r.string("a\tb") == b"{3}\r\na\tb"
    assert r.string("a\x01b") == b"{3}\r\na\x01b"


def test_nul_cannot_be_sent_in_a_string() -> None:
    assert r.string("a\x00b") == b'"ab"'
    assert r.astring(b"\x00") == b'""'
    assert r.nstring("x\x00\r\n") == b"{3}\r\nx\r\n"


def test_nstring() -> None:
    assert r.nstring(None) == b"NIL"
    assert r.nstring("NIL") == b'"NIL"'
    assert r.nstring(b"") == b'""'


def test_quoted_escapes_and_refuses() -> None:
    assert r.quoted('a"b\\c') == b'"a\\"b\\\\c"'
    for bad in ("a\rb", "a\nb", "\u00e9", "a\x00"):
        with pytest.raises(ValueError):
            r.quoted(bad)


def test_literal() -> None:
    assert r.literal(b"") == b"{0}\r\n"
    assert r.literal("é") == b"{2}\r\n\xc3\xa9"


@given(st.one_of(st.text(max_size=50), st.binary(max_size=50)))
def test_astring_reads_back_as_the_same_bytes(value: str | bytes) -> None:
    raw = (value.encode() if isinstance(value, str) else value).replace(b"\0", b"")
    cur = Cursor(r.astring(value))
    assert cur.astring() == raw
    assert cur.at_end()


@given(st.one_of(st.none(), st.binary(max_size=50).map(lambda b: b.replace(b"\0", b""))))
def test_nstring_reads_back(value: bytes | None) -> None:
    cur = Cursor(r.nstring(value))
    assert cur.nstring() == value
    assert cur.at_end()


def test_atom_number_plist_flags() -> None:
    assert r.atom("EXISTS") == b"EXISTS"
    with pytest.raises(ValueError):
        r.atom("a b")
    with pytest.raises(ValueError):
        r.atom("")
    with pytest.raises(ValueError):
        r.number(-1)
    assert r.plist([]) == b"()"
    assert r.plist(["MESSAGES", 3, b'"x"']) == b'(MESSAGES 3 "x")'
    assert r.flag_list(["\\Seen", "$Forwarded", "\\*"]) == b"(\\Seen $Forwarded \\*)"
    with pytest.raises(ValueError):
        r.flag_list(["bad flag"])


def test_mailbox_names_are_utf7_astrings() -> None:
    assert r.mailbox("inbox") == b"INBOX"
    assert r.mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert r.mailbox("Sent Items") == b'"Sent Items"'
    assert r.mailbox("R&D") == b"R&-D"
    assert r.mailbox("Nil") == b'"Nil"'


def test_date_time() -> None:
    tz = timezone(timedelta(hours=-7))
    assert r.date_time(datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz)) == (
        b'"17-Jul-1996 02:44:25 -0700"'
    )
    half = timezone(timedelta(hours=5, minutes=30))
    assert r.date_time(datetime(2024, 1, 2, 3, 4, 5, tzinfo=half)) == (
        b'"02-Jan-2024 03:04:05 +0530"'
    )
    dt = datetime(2024, 1, 2, 3, 4, 5, tzinfo=half)
    assert Cursor(r.date_time(dt)).date_time() == dt


def test_status_lines() -> None:
    assert (
        r.ok("a1", "SELECT completed", "READ-WRITE") == b"a1 OK [READ-WRITE] SELECT completed\r\n"
    )
    assert r.no("a2", "no such mailbox", "TRYCREATE") == b"a2 NO [TRYCREATE] no such mailbox\r\n"
    assert r.bad(None, "junk") == b"* BAD junk\r\n"
    assert r.ok(None, "ready", r.code("UIDVALIDITY", 3)) == b"* OK [UIDVALIDITY 3] ready\r\n"
    assert r.bye("Logging out") == b"* BYE Logging out\r\n"
    assert r.preauth("welcome", r.code("CAPABILITY", "IMAP4rev1", "IDLE")) == (
        b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] welcome\r\n"
    )
    assert r.status("t", "OK", "") == b"t OK done\r\n"


def test_response_text_cannot_break_the_line() -> None:
    line = r.no("a1", "bad\r\n* 1 EXISTS\r\nx", "ALERT")
    assert line.count(b"\r\n") == 1 and line.endswith(b"\r\n")
    assert r.ok("a1", "caf\u00e9") == b"a1 OK caf?\r\n"


def test_codes() -> None:
    assert r.code("APPENDUID", 38505, 3955) == "APPENDUID 38505 3955"
    assert r.code("BADCHARSET", ["UTF-8", "US-ASCII"]) == "BADCHARSET (UTF-8 US-ASCII)"
    assert r.code("HIGHESTMODSEQ", 715194045007) == "HIGHESTMODSEQ 715194045007"
    assert r.code("COPYUID", 7, r.sequence_set([1, 2, 3, 9]), r.sequence_set([10, 11, 12, 13])) == (
        "COPYUID 7 1:3,9 10:13"
    )
    assert r.code("TRYCREATE") == "TRYCREATE"


def test_continuation_and_data() -> None:
    assert r.continuation() == b"+ Ready\r\n"
    assert r.continuation("idling") == b"+ idling\r\n"
    assert r.continuation("") == b"+ \r\n"
    assert r.data(3, "EXISTS") == b"* 3 EXISTS\r\n"
    assert r.data("FLAGS", r.flag_list(["\\Seen"])) == b"* FLAGS (\\Seen)\r\n"


def test_fetch_search_esearch() -> None:
    assert r.fetch(12, [("UID", b"4"), ("FLAGS", r.flag_list(["\\Seen"]))]) == (
        b"* 12 FETCH (UID 4 FLAGS (\\Seen))\r\n"
    )
    assert r.search([5, 2, 7]) == b"* SEARCH 2 5 7\r\n"
    assert r.search([]) == b"* SEARCH\r\n"
    assert r.search([1], modseq=9) == b"* SEARCH 1 (MODSEQ 9)\r\n"
    assert r.search([], modseq=9) == b"* SEARCH\r\n"
    assert r.esearch("a1", [2, 3, 4, 9], {"MIN", "MAX", "ALL", "COUNT"}, uid=True) == (
        b'* ESEARCH (TAG "a1") UID MIN 2 MAX 9 ALL 2:4,9 COUNT 4\r\n'
    )
    assert r.esearch("a2", [], {"MIN", "ALL", "COUNT"}, uid=False) == (
        b'* ESEARCH (TAG "a2") COUNT 0\r\n'
    )
    assert r.esearch("a3", [1], {"COUNT"}, uid=False, modseq=77) == (
        b'* ESEARCH (TAG "a3") COUNT 1 MODSEQ 77\r\n'
    )


def test_sequence_set_compression() -> None:
    assert r.sequence_set([]) == b""
    assert r.sequence_set([7]) == b"7"
    assert r.sequence_set([12, 1, 2, 3, 4, 5, 7, 9, 10, 11, 5]) == b"1:5,7,9:12"


@given(st.sets(st.integers(min_value=1, max_value=200), min_size=1))
def test_sequence_set_round_trip(numbers: set[int]) -> None:
    wire = r.sequence_set(numbers)
    parsed = SequenceSet.parse(wire.decode())
    assert set(parsed.resolve(max(numbers))) == numbers
    # As short as it can be: one range per run of consecutive numbers.
    runs = sum(1 for n in numbers if n - 1 not in numbers)
    assert len(parsed.ranges) == runs
