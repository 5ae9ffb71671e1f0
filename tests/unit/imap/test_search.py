"""SEARCH semantics on one message at a time (RFC 3501 6.4.4)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import pytest

from mda.imap.grammar import Cursor
from mda.imap.search import Searcher, decode_words, matches, parse_sent_date
from mda.imap.searchkeys import (
    All,
    And,
    Body,
    DateKey,
    Flag,
    Header,
    ModSeq,
    Not,
    Or,
    SearchKey,
    Seq,
    Uid,
    parse_search,
)
from mda.imap.seqset import SequenceSet

TZ = timezone(timedelta(hours=2))


@dataclass
class Message:
    seq: int = 1
    uid: int = 10
    flags: Collection[str] = ()
    size: int = 1000
    internal_date: datetime = datetime(2024, 3, 10, 23, 30, tzinfo=TZ)
    modseq: int = 5
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    opened: list[str] = field(default_factory=list)

    def header(self, name: str) -> list[str]:
        self.opened.append("headers")
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header_text(self) -> str:
        self.opened.append("headers")
        return "".join(f"{k}: {v}\r\n" for k, v in self.headers)

    def body_text(self) -> str:
        self.opened.append("body")
        return self.body

    def sent_date(self) -> datetime | None:
        values = self.header("Date")
        return parse_sent_date(values[0]) if values else None


MAIL = Message(
    seq=3,
    uid=42,
    flags={"\\Seen", "$Forwarded", "\\Recent"},
    size=2048,
    headers=[
        ("From", "=?UTF-8?Q?Andr=C3=A9?= <andre@example.org>"),
        ("To", "Bob <bob@example.net>,\r\n Carol <carol@example.net>"),
        ("Cc", "dave@example.com"),
        ("Subject", "=?ISO-8859-1?Q?Caf=E9?= =?UTF-8?B?IGNyw6htZQ==?= meeting"),
        # Sent at 23:00 -0500 on the 9th: the 10th in UTC, but ON counts its own day.
        ("Date", "Sat, 9 Mar 2024 23:00:00 -0500"),
        ("X-Spam", "yes"),
    ],
    body="Hello,\r\nthe Quarterly REPORT is attached.\r\n",
)


def program(text: str) -> SearchKey:
    key, _, _ = parse_search(Cursor(b" " + text.encode()))
    return key


def hit(text: str, message: Message = MAIL, max_seq: int = 5, max_uid: int = 50) -> bool:
    return matches(program(text), message, max_seq=max_seq, max_uid=max_uid)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ALL", True),
        ("SEEN", True),
        ("UNSEEN", False),
        ("RECENT", True),
        ("OLD", False),
        ("NEW", False),  # recent but seen
        ("ANSWERED", False),
        ("UNANSWERED", True),
        ("DELETED", False),
        ("UNDELETED", True),
        ("DRAFT", False),
        ("UNDRAFT", True),
        ("FLAGGED", False),
        ("UNFLAGGED", True),
        ("KEYWORD $Forwarded", True),
        ("KEYWORD $forwarded", True),  # flags compare without case
        ("UNKEYWORD $Forwarded", False),
        ("KEYWORD $Junk", False),
        ("UNKEYWORD $Junk", True),
        ("LARGER 2047", True),
        ("LARGER 2048", False),
        ("SMALLER 2049", True),
        ("SMALLER 2048", False),
        ("3", True),
        ("1:2,4", False),
        ("*", False),
        ("2:*", True),
        ("UID 42", True),
        ("UID 1:41,43:*", False),
        ("UID 50:*", False),
        ("MODSEQ 5", True),
        ("MODSEQ 6", False),
        ('MODSEQ "/flags/\\\\Seen" all 4', True),
    ],
)
def test_cheap_keys(query: str, expected: bool) -> None:
    assert hit(query) is expected


def test_star_is_the_largest_number_given() -> None:
    assert hit("*", max_seq=3)
    assert hit("UID *", max_uid=42)
    assert hit("UID 100:*", max_uid=42)  # the range is 42:100


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("FROM andre", True),
        ("FROM ANDRÉ", True),  # decoded encoded word, without case
        ('FROM "example.org"', True),
        ("FROM bob", False),
        ("TO carol", True),  # on the folded second line
        ('TO "net>, carol"', True),  # unfolded
        ("CC dave", True),
        ("BCC dave", False),  # no Bcc field at all
        ('BCC ""', False),
        ('CC ""', True),
        ("SUBJECT café", True),
        ('SUBJECT "Café crème"', True),  # adjacent encoded words join
        ("SUBJECT MEETING", True),
        ("SUBJECT lunch", False),
        ("HEADER X-Spam yes", True),
        ('HEADER x-spam ""', True),  # the field exists
        ('HEADER X-Other ""', False),
        ("HEADER X-Spam no", False),
        ("BODY quarterly", True),
        ('BODY "report is"', True),
        ("BODY andre", False),  # only in a header
        ("TEXT andré", True),
        ("TEXT quarterly", True),
        ("TEXT nowhere", False),
    ],
)
def test_text_keys(query: str, expected: bool) -> None:
    assert hit(query) is expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Internal date: 10 Mar 2024 23:30 +0200, its own day whatever UTC says.
        ("ON 10-Mar-2024", True),
        ("ON 11-Mar-2024", False),
        ("BEFORE 10-Mar-2024", False),
        ("BEFORE 11-Mar-2024", True),
        ("SINCE 10-Mar-2024", True),
        ("SINCE 11-Mar-2024", False),
        # Date: field says the 9th in its own zone.
        ("SENTON 9-Mar-2024", True),
        ("SENTON 10-Mar-2024", False),
        ("SENTBEFORE 9-Mar-2024", False),
        ("SENTBEFORE 10-Mar-2024", True),
        ("SENTSINCE 9-Mar-2024", True),
        ("SENTSINCE 10-Mar-2024", False),
    ],
)
def test_date_keys(query: str, expected: bool) -> None:
    assert hit(query) is expected


def test_no_date_field_matches_no_sent_key() -> None:
    bare = Message(headers=[("Subject", "x")])
    for key in ("SENTON", "SENTBEFORE", "SENTSINCE"):
        assert not hit(f"{key} 1-Jan-2000", bare)
        assert hit(f"NOT {key} 1-Jan-2000", bare)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SEEN FROM andre", True),
        ("SEEN FROM bob", False),
        ("OR FROM bob SEEN", True),
        ("OR FROM bob UNSEEN", False),
        ("NOT SEEN", False),
        ("NOT NOT SEEN", True),
        ("(SEEN UNDELETED) LARGER 100", True),
        ("(SEEN DELETED)", False),
        ("OR (DELETED FLAGGED) (SUBJECT meeting NOT FROM bob)", True),
        ("NOT (SEEN DELETED)", True),
        ("OR OR DELETED FLAGGED ANSWERED", False),
    ],
)
def test_combinations(query: str, expected: bool) -> None:
    assert hit(query) is expected


def test_cheap_keys_decide_before_the_message_is_opened() -> None:
    msg = Message(flags={"\\Deleted"}, body="x")
    assert not matches(program("BODY x SEEN"), msg, max_seq=1, max_uid=10)
    assert msg.opened == []
    assert not matches(program("FROM x DELETED UNDELETED"), msg, max_seq=1, max_uid=10)
    assert msg.opened == []


def test_searcher_reports_what_it_needs() -> None:
    flags_only = Searcher(program("SEEN 1:* UID 3"), max_seq=1, max_uid=1)
    assert not flags_only.needs_headers and not flags_only.needs_body
    assert not flags_only.uses_modseq
    assert Searcher(program("NOT FROM x"), max_seq=1, max_uid=1).needs_headers
    assert Searcher(program("SENTON 1-Jan-2000"), max_seq=1, max_uid=1).needs_headers
    body = Searcher(program("OR SEEN BODY x"), max_seq=1, max_uid=1)
    assert body.needs_body and not body.needs_headers
    text = Searcher(program("TEXT x"), max_seq=1, max_uid=1)
    assert text.needs_body and text.needs_headers
    assert Searcher(program("OR SEEN MODSEQ 3"), max_seq=1, max_uid=1).uses_modseq


def test_searcher_is_reusable_across_messages() -> None:
    s = Searcher(program("OR 1 UID 20:*"), max_seq=4, max_uid=30)
    msgs = [Message(seq=i, uid=u) for i, u in ((1, 5), (2, 12), (3, 20), (4, 30))]
    assert [m.seq for m in msgs if s.matches(m)] == [1, 3, 4]


def test_constructed_programs() -> None:
    key = And((Flag("\\Seen"), Or(Header("FROM", "nobody"), Not(Body("absent")))))
    assert matches(key, MAIL, max_seq=5, max_uid=50)
    assert matches(All(), Message(), max_seq=1, max_uid=1)
    assert matches(Seq(SequenceSet.parse("1")), Message(), max_seq=1, max_uid=1)
    assert not matches(Uid(SequenceSet.parse("*")), Message(uid=3), max_seq=1, max_uid=9)
    assert matches(ModSeq(1), Message(), max_seq=1, max_uid=1)
    assert matches(DateKey("on", date(2024, 3, 10)), Message(), max_seq=1, max_uid=1)
    with pytest.raises(TypeError):
        Searcher(object(), max_seq=1, max_uid=1)  # type: ignore[arg-type]


def test_naive_internal_date_is_taken_as_is() -> None:
    msg = Message(internal_date=datetime(2024, 1, 31, 23, 59))
    assert hit("ON 31-Jan-2024", msg)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("plain text", "plain text"),
        ("=?UTF-8?B?w6k=?=", "é"),
        ("=?utf-8?q?caf=C3=A9_au_lait?=", "café au lait"),
        ("a =?UTF-8?Q?=C3=A9?= b", "a é b"),
        ("=?UTF-8?Q?a?=  \t =?UTF-8?Q?b?=", "ab"),  # space between words goes
        ("=?UTF-8?Q?a?= x =?UTF-8?Q?b?=", "a x b"),
        ("=?UTF-8?B?4pw=?= =?UTF-8?B?kw==?=", "✓"),  # a character split over two words
        ("=?ISO-8859-1?Q?caf=E9?= =?UTF-8?Q?=C3=A9?=", "caféé"),
        ("=?UTF-8*en?Q?hi?=", "hi"),  # RFC 2231 language
        ("=?x-unknown?Q?hi?= there", "=?x-unknown?Q?hi?= there"),
        ("=?hex?Q?hi?=", "=?hex?Q?hi?="),
        ("=?UTF-8?B?!!!?=", "=?UTF-8?B?!!!?="),
        ("=?UTF-8?Q?bad_=FF?=", "bad \ufffd"),
        ("folded\r\n line", "folded line"),
        ("8-bit raw café =?UTF-8?Q?=C3=A9?=", "8-bit raw café é"),
    ],
)
def test_decode_words(raw: str, decoded: str) -> None:
    assert decode_words(raw) == decoded


def test_parse_sent_date() -> None:
    assert parse_sent_date("Sat, 9 Mar 2024 23:00:00 -0500").date() == date(2024, 3, 9)
    assert parse_sent_date("garbage") is None
    assert parse_sent_date("") is None
    assert parse_sent_date(None) is None
