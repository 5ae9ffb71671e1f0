"""SEARCH programs: the key tree and its grammar (RFC 3501 6.4.4, RFC 7162).

Keys that are only spellings of others are folded at parse time (UNSEEN is
`Flag("\\Seen", present=False)`, FROM is `Header("FROM", ...)`), so the
evaluator in `search` has few cases and the session none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from .grammar import Cursor, ParseError, text
from .seqset import SequenceSet


class SearchKey:
    """Base of the key tree."""


@dataclass(frozen=True)
class All(SearchKey):
    pass


@dataclass(frozen=True)
class And(SearchKey):
    """Every key matches: the implicit AND of a key list or `( ... )`."""

    keys: tuple[SearchKey, ...]


@dataclass(frozen=True)
class Or(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class Not(SearchKey):
    key: SearchKey


@dataclass(frozen=True)
class Flag(SearchKey):
    """The message has (`present`) or lacks the flag: a system flag such as
    `\\Seen` (`\\Recent` for RECENT, OLD and NEW) or a keyword."""

    flag: str
    present: bool = True


@dataclass(frozen=True)
class Header(SearchKey):
    """`field` upper-cased: FROM, TO, CC, BCC, SUBJECT or a HEADER field."""

    field: str
    value: str


@dataclass(frozen=True)
class Body(SearchKey):
    value: str


@dataclass(frozen=True)
class Text(SearchKey):
    value: str


@dataclass(frozen=True)
class DateKey(SearchKey):
    """BEFORE/ON/SINCE on the internal date, SENT* (`sent`) on the Date: field."""

    op: Literal["before", "on", "since"]
    day: date
    sent: bool = False


@dataclass(frozen=True)
class Larger(SearchKey):
    size: int


@dataclass(frozen=True)
class Smaller(SearchKey):
    size: int


@dataclass(frozen=True)
class Seq(SearchKey):
    """Message sequence numbers."""

    set: SequenceSet


@dataclass(frozen=True)
class Uid(SearchKey):
    set: SequenceSet


@dataclass(frozen=True)
class ModSeq(SearchKey):
    """Mod-sequence at least `modseq`; the optional entry (`/flags/\\Seen`,
    priv/shared/all) may be ignored by a server without per-flag modseqs."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


class CharsetError(Exception):
    def __init__(self, charset: str) -> None:
        super().__init__(f"charset {charset} is not supported")
        self.charset = charset


CHARSETS = ("UTF-8", "US-ASCII")
RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT"})

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "OLD": ("\\Recent", False),
}
_HEADER_KEYS = ("BCC", "CC", "FROM", "SUBJECT", "TO")
_DATE_KEYS = {
    "BEFORE": ("before", False),
    "ON": ("on", False),
    "SINCE": ("since", False),
    "SENTBEFORE": ("before", True),
    "SENTON": ("on", True),
    "SENTSINCE": ("since", True),
}


def parse_search(cur: Cursor) -> tuple[SearchKey, str | None, frozenset[str] | None]:
    """After `SEARCH`: (program, charset, ESEARCH return options or None)."""
    returns = None
    charset = None
    cur.sp()
    if cur.take_word(b"RETURN"):
        cur.sp()
        returns = _return_options(cur)
        cur.sp()
    if cur.take_word(b"CHARSET"):
        cur.sp()
        charset = text(cur.astring("a charset")).upper()
        if charset not in CHARSETS:
            raise CharsetError(charset)
        cur.sp()
    keys = [search_key(cur)]
    while cur.take(b" "):
        keys.append(search_key(cur))
    return _conjunction(keys), charset, returns


def _return_options(cur: Cursor) -> frozenset[str]:
    options = cur.parenthesized(lambda: _return_option(cur), empty_ok=True)
    # RFC 4731: an empty list asks for ALL.
    return frozenset(options or {"ALL"})


def _return_option(cur: Cursor) -> str:
    option = cur.keyword("a RETURN option")
    if option not in RETURN_OPTIONS:
        raise ParseError(f"RETURN option {option} is not supported")
    return option


def _conjunction(keys: list[SearchKey]) -> SearchKey:
    return keys[0] if len(keys) == 1 else And(tuple(keys))


def search_key(cur: Cursor) -> SearchKey:
    c = cur.peek()
    if c == ord("("):
        return _conjunction(cur.parenthesized(lambda: search_key(cur)))
    if c is not None and (c == ord("*") or ord("0") <= c <= ord("9")):
        return Seq(cur.sequence_set())
    start = cur.pos
    word = cur.keyword("a search key")
    if word == "ALL":
        return All()
    if word in _FLAG_KEYS:
        return Flag(*_FLAG_KEYS[word])
    if word == "NEW":
        return And((Flag("\\Recent"), Flag("\\Seen", False)))
    if word in _HEADER_KEYS:
        cur.sp()
        return Header(word, cur.text_astring())
    if word == "HEADER":
        cur.sp()
        field = cur.text_astring("a header field name").upper()
        cur.sp()
        return Header(field, cur.text_astring())
    if word == "BODY":
        cur.sp()
        return Body(cur.text_astring())
    if word == "TEXT":
        cur.sp()
        return Text(cur.text_astring())
    if word in ("KEYWORD", "UNKEYWORD"):
        cur.sp()
        return Flag(cur.atom("a keyword"), word == "KEYWORD")
    if word in _DATE_KEYS:
        cur.sp()
        op, sent = _DATE_KEYS[word]
        return DateKey(op, cur.date(), sent)
    if word == "LARGER":
        cur.sp()
        return Larger(cur.number(what="a size"))
    if word == "SMALLER":
        cur.sp()
        return Smaller(cur.number(what="a size"))
    if word == "UID":
        cur.sp()
        return Uid(cur.sequence_set())
    if word == "NOT":
        cur.sp()
        cur.nest()
        key = search_key(cur)
        cur.unnest()
        return Not(key)
    if word == "OR":
        cur.sp()
        cur.nest()
        left = search_key(cur)
        cur.sp()
        right = search_key(cur)
        cur.unnest()
        return Or(left, right)
    if word == "MODSEQ":
        cur.sp()
        return _modseq(cur)
    cur.pos = start
    raise ParseError(f"unknown search key {word}")


def _modseq(cur: Cursor) -> ModSeq:
    entry = entry_type = None
    if cur.peek() == ord('"'):
        entry = text(cur.quoted())
        if not entry.lower().startswith("/flags/") or len(entry) == len("/flags/"):
            raise ParseError(f"MODSEQ entry {entry!r} is not /flags/<flag>")
        cur.sp()
        entry_type = cur.keyword("priv, shared or all").lower()
        if entry_type not in ("priv", "shared", "all"):
            raise ParseError(f"MODSEQ entry type {entry_type} is not priv, shared or all")
        cur.sp()
    return ModSeq(cur.number64(), entry, entry_type)
