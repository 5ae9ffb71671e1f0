"""SEARCH: every RFC 3501 key, CHARSET, ESEARCH RETURN, MODSEQ, nesting."""

from __future__ import annotations

from datetime import date

import pytest

from mda.imap.commands import Search
from mda.imap.events import BadCharset, BadCommand
from mda.imap.parser import Limits
from mda.imap.searchkeys import (
    All,
    And,
    Body,
    DateKey,
    Flag,
    Header,
    Larger,
    ModSeq,
    Not,
    Or,
    Seq,
    Smaller,
    Text,
    Uid,
)
from mda.imap.seqset import SequenceSet

from .wire import one


def key(spec: bytes):
    cmd = one(b"a SEARCH " + spec)
    assert isinstance(cmd, Search), cmd
    return cmd.program


DAY = date(1994, 2, 1)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (b"ALL", All()),
        (b"ANSWERED", Flag("\\Answered")),
        (b"BCC bob", Header("BCC", "bob")),
        (b"BEFORE 1-Feb-1994", DateKey("before", DAY)),
        (b"BODY {5+}\r\nhello", Body("hello")),
        (b'CC "a b"', Header("CC", "a b")),
        (b"DELETED", Flag("\\Deleted")),
        (b"DRAFT", Flag("\\Draft")),
        (b"FLAGGED", Flag("\\Flagged")),
        (b"FROM Smith", Header("FROM", "Smith")),
        (b"HEADER List-Id {3+}\r\nfoo", Header("LIST-ID", "foo")),
        (b'HEADER "X-Spam" ""', Header("X-SPAM", "")),
        (b"KEYWORD $Junk", Flag("$Junk")),
        (b"LARGER 1000", Larger(1000)),
        (b"NEW", And((Flag("\\Recent"), Flag("\\Seen", False)))),
        (b"NOT SEEN", Not(Flag("\\Seen"))),
        (b"OLD", Flag("\\Recent", False)),
        (b'ON "1-Feb-1994"', DateKey("on", DAY)),
        (b"OR SEEN FLAGGED", Or(Flag("\\Seen"), Flag("\\Flagged"))),
        (b"RECENT", Flag("\\Recent")),
        (b"SEEN", Flag("\\Seen")),
        (b"SENTBEFORE 01-feb-1994", DateKey("before", DAY, sent=True)),
        (b"SENTON 1-FEB-1994", DateKey("on", DAY, sent=True)),
        (b"SENTSINCE 1-Feb-1994", DateKey("since", DAY, sent=True)),
        (b"SINCE 1-Feb-1994", DateKey("since", DAY)),
        (b"SMALLER 10", Smaller(10)),
        (b"SUBJECT caf\xc3\xa9", None),  # 8-bit atoms are not atoms
        (b'SUBJECT "caf\xc3\xa9"', Header("SUBJECT", "café")),
        (b"TEXT string", Text("string")),
        (b"TO x@example.org", Header("TO", "x@example.org")),
        (b"UID 1:*", Uid(SequenceSet(((1, None),)))),
        (b"UNANSWERED", Flag("\\Answered", False)),
        (b"UNDELETED", Flag("\\Deleted", False)),
        (b"UNDRAFT", Flag("\\Draft", False)),
        (b"UNFLAGGED", Flag("\\Flagged", False)),
        (b"UNKEYWORD $Junk", Flag("$Junk", False)),
        (b"UNSEEN", Flag("\\Seen", False)),
        (b"2:4,*", Seq(SequenceSet(((2, 4), (None, None))))),
        (b"MODSEQ 620162338", ModSeq(620162338)),
        (b'MODSEQ "/flags/\\\\draft" all 620162338', ModSeq(620162338, "/flags/\\draft", "all")),
        (b'MODSEQ "/flags/$Junk" PRIV 0', ModSeq(0, "/flags/$Junk", "priv")),
    ],
)
def test_each_key(spec: bytes, expected) -> None:
    if expected is None:
        assert isinstance(one(b"a SEARCH " + spec), BadCommand)
    else:
        assert key(spec) == expected


def test_keys_are_case_insensitive() -> None:
    assert key(b"unseen not deleted") == And((Flag("\\Seen", False), Not(Flag("\\Deleted"))))
    assert key(b"Or From a To b") == Or(Header("FROM", "a"), Header("TO", "b"))


def test_implicit_and_and_groups() -> None:
    assert key(b"FLAGGED SINCE 1-Feb-1994 NOT FROM Smith") == And(
        (Flag("\\Flagged"), DateKey("since", DAY), Not(Header("FROM", "Smith")))
    )
    assert key(b"(SEEN)") == Flag("\\Seen")
    assert key(b"OR (SEEN FLAGGED) (1:3 UID 9)") == Or(
        And((Flag("\\Seen"), Flag("\\Flagged"))),
        And((Seq(SequenceSet(((1, 3),))), Uid(SequenceSet(((9, 9),))))),
    )
    assert key(b"NOT (OR SEEN DELETED)") == Not(Or(Flag("\\Seen"), Flag("\\Deleted")))


def test_charset() -> None:
    assert one(b"a SEARCH CHARSET UTF-8 TEXT x") == Search("a", Text("x"), charset="UTF-8")
    assert one(b"a SEARCH charset us-ascii ALL").charset == "US-ASCII"
    assert one(b'a SEARCH CHARSET "utf-8" ALL').charset == "UTF-8"
    assert one(b"a SEARCH CHARSET ISO-8859-1 TEXT x") == BadCharset("a", "SEARCH", "ISO-8859-1")
    assert one(b"a UID SEARCH CHARSET koi8-r ALL") == BadCharset("a", "UID SEARCH", "KOI8-R")
    assert isinstance(one(b"a SEARCH CHARSET"), BadCommand)
    assert isinstance(one(b"a SEARCH CHARSET UTF-8"), BadCommand)


def test_esearch_return() -> None:
    cmd = one(b"a UID SEARCH RETURN (MIN max COUNT) CHARSET UTF-8 UNSEEN")
    assert cmd == Search(
        "a",
        Flag("\\Seen", False),
        uid=True,
        charset="UTF-8",
        return_options=frozenset({"MIN", "MAX", "COUNT"}),
    )
    assert one(b"a SEARCH RETURN () ALL").return_options == {"ALL"}
    assert one(b"a SEARCH RETURN (ALL) 1:5").return_options == {"ALL"}
    assert one(b"a SEARCH ALL").return_options is None
    for bad in (
        b"a SEARCH RETURN (SAVE) ALL",
        b"a SEARCH RETURN (FOO) ALL",
        b"a SEARCH RETURN ALL",
    ):
        assert isinstance(one(bad), BadCommand), bad


@pytest.mark.parametrize(
    "spec",
    [
        b"",
        b"FOO",
        b"FROM",
        b"HEADER Subject",
        b"OR SEEN",
        b"NOT",
        b"BEFORE 31-Feb-2000",
        b"BEFORE 1-Foo-2000",
        b"BEFORE 1-Feb-94",
        b'BEFORE "1-Feb-1994',
        b"BEFORE 1-Feb-1994 02:00:00",
        b"LARGER x",
        b"LARGER 99999999999",
        b"UID",
        b"UID 0",
        b"KEYWORD \\Seen",
        b"(SEEN",
        b"SEEN)",
        b"()",
        b"SEEN  FLAGGED",
        b"SEEN ",
        b"MODSEQ",
        b'MODSEQ "/flags/" all 1',
        b'MODSEQ "/other/x" all 1',
        b'MODSEQ "/flags/\\\\Seen" some 1',
        b"MODSEQ 9223372036854775808",
        b"$",
    ],
)
def test_bad_programs(spec: bytes) -> None:
    event = one(b"a SEARCH " + spec)
    assert isinstance(event, BadCommand) and event.tag == "a", event


def test_depth_is_limited() -> None:
    limits = Limits(max_depth=10)
    assert isinstance(one(b"a SEARCH " + b"NOT " * 10 + b"SEEN", limits), Search)
    assert isinstance(one(b"a SEARCH " + b"NOT " * 11 + b"SEEN", limits), BadCommand)
    assert isinstance(one(b"a SEARCH " + b"(" * 10 + b"SEEN" + b")" * 10, limits), Search)
    assert isinstance(one(b"a SEARCH " + b"(" * 11 + b"SEEN" + b")" * 11, limits), BadCommand)
    assert isinstance(one(b"a SEARCH " + b"OR SEEN " * 11 + b"SEEN", limits), BadCommand)


def test_deep_programs_within_the_default_limit_parse() -> None:
    # Thunderbird writes long OR chains for a list of addresses.
    ors = b"OR FROM a " * 99 + b"FROM z"
    assert isinstance(one(b"a SEARCH " + ors), Search)
    hostile = b"a SEARCH " + b"NOT " * 10000 + b"SEEN"
    assert isinstance(one(hostile), BadCommand)
