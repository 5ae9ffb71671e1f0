"""The tokens of RFC 3501 section 9, read from one complete command.

`CommandReader` has already framed the command, so a literal here is always
`{n}` CRLF and then n bytes that are all present; this module only decides
what the bytes mean and says precisely why when they mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar

from common import mutf7

from .seqset import MAX_NUMBER, SequenceSet, SequenceSetError

MAX_NUMBER64 = 2**63 - 1

_ATOM_SPECIALS = b'(){ %*"\\]'
ATOM_CHARS = frozenset(c for c in range(0x21, 0x7F) if c not in _ATOM_SPECIALS)
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}
LIST_CHARS = ASTRING_CHARS | {ord("%"), ord("*")}
_SEQ_CHARS = frozenset(b"0123456789:*,")
_DIGITS = frozenset(b"0123456789")

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
SYSTEM_FLAGS = {f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")}


T = TypeVar("T")


class ParseError(ValueError):
    """The command does not follow the grammar; the text says where and why."""


def text(raw: bytes) -> str:
    """Client bytes meant as text: UTF-8, with any other byte kept recoverable."""
    return raw.decode("utf-8", "surrogateescape")


class Cursor:
    def __init__(self, data: bytes, max_depth: int = 100) -> None:
        self.data = data
        self.pos = 0
        self.depth = 0
        self.max_depth = max_depth

    # Looking ahead.

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def peek_is(self, token: bytes) -> bool:
        """Case-insensitive look at what comes next."""
        return self.data[self.pos : self.pos + len(token)].upper() == token.upper()

    def _describe(self) -> str:
        if self.at_end():
            return "the end of the command"
        nxt = self.data[self.pos : self.pos + 12]
        return repr(nxt.decode("latin-1")) + f" at {self.pos}"

    def fail(self, expected: str) -> ParseError:
        return ParseError(f"expected {expected}, not {self._describe()}")

    # Single characters.

    def take(self, token: bytes) -> bool:
        if self.peek_is(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: bytes, what: str | None = None) -> None:
        if not self.take(token):
            raise self.fail(what or repr(token.decode()))

    def sp(self) -> None:
        self.expect(b" ", "a space")

    def end(self) -> None:
        if not self.at_end():
            raise ParseError(f"unexpected {self._describe()}")

    def open(self) -> None:
        self.expect(b"(", "'('")
        self.depth += 1
        if self.depth > self.max_depth:
            raise ParseError(f"more than {self.max_depth} nested levels")

    def close(self) -> None:
        self.expect(b")", "')'")
        self.depth -= 1

    def parenthesized(self, read: Callable[[], T], *, empty_ok: bool = False) -> list[T]:
        """`(` item *(SP item) `)`, each item read by `read`."""
        self.open()
        items: list[T] = []
        if not (empty_ok and self.peek() == ord(")")):
            items.append(read())
            while self.take(b" "):
                items.append(read())
        self.close()
        return items

    def nest(self) -> None:
        """Count a level of nesting that has no parenthesis (NOT, OR)."""
        self.depth += 1
        if self.depth > self.max_depth:
            raise ParseError(f"more than {self.max_depth} nested levels")

    def unnest(self) -> None:
        self.depth -= 1

    # Tokens.

    def _run(self, allowed: frozenset[int]) -> bytes:
        start = self.pos
        data = self.data
        while self.pos < len(data) and data[self.pos] in allowed:
            self.pos += 1
        return data[start : self.pos]

    def tag(self) -> str:
        raw = self._run(TAG_CHARS)
        if not raw:
            raise self.fail("a tag")
        return raw.decode("ascii")

    def atom(self, what: str = "an atom") -> str:
        raw = self._run(ATOM_CHARS)
        if not raw:
            raise self.fail(what)
        return raw.decode("ascii")

    def keyword(self, what: str = "a keyword") -> str:
        return self.atom(what).upper()

    def number(self, limit: int = MAX_NUMBER, what: str = "a number") -> int:
        raw = self._run(_DIGITS)
        if not raw:
            raise self.fail(what)
        if len(raw.lstrip(b"0")) > len(str(limit)) or int(raw) > limit:
            raise ParseError(f"{raw.decode()} is larger than {limit}")
        return int(raw)

    def nz_number(self, what: str = "a number") -> int:
        start = self.pos
        n = self.number(what=what)
        if n == 0:
            self.pos = start
            raise self.fail(f"{what} above 0")
        return n

    def number64(self, what: str = "a mod-sequence") -> int:
        return self.number(MAX_NUMBER64, what)

    def quoted(self) -> bytes:
        self.expect(b'"', "a quoted string")
        out = bytearray()
        data = self.data
        while True:
            if self.pos >= len(data):
                raise ParseError("unterminated quoted string")
            c = data[self.pos]
            self.pos += 1
            if c == 0x22:
                return bytes(out)
            if c == 0x5C:
                if self.pos < len(data) and data[self.pos] in b'"\\':
                    out.append(data[self.pos])
                    self.pos += 1
                    continue
                raise ParseError('a quoted string may escape only " and \\')
            if c in (0, 0x0D, 0x0A):
                raise ParseError("a quoted string cannot hold NUL, CR or LF")
            out.append(c)

    def literal(self) -> bytes:
        self.expect(b"{", "a literal")
        size = self.number(limit=2**62, what="a literal size")
        self.take(b"+")
        self.expect(b"}\r\n", "'}' and the end of the line")
        if self.pos + size > len(self.data):
            # The reader frames literals, so this means a malformed command
            # such as a literal in the middle of a line.
            raise ParseError("literal is shorter than its size")
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return bytes(value)

    def string(self, what: str = "a string") -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        raise self.fail(what)

    def astring(self, what: str = "a string") -> bytes:
        if self.peek() in (0x22, 0x7B):
            return self.string(what)
        raw = self._run(ASTRING_CHARS)
        if not raw:
            raise self.fail(what)
        return raw

    def nstring(self, what: str = "a string or NIL") -> bytes | None:
        if self.peek() not in (0x22, 0x7B) and self._word_is(b"NIL"):
            return None
        return self.string(what)

    def _word_is(self, word: bytes) -> bool:
        end = self.pos + len(word)
        if self.peek_is(word) and (end >= len(self.data) or self.data[end] not in ASTRING_CHARS):
            self.pos = end
            return True
        return False

    def take_word(self, word: bytes) -> bool:
        """Take `word` (any case) if it is the whole next atom."""
        return self._word_is(word)

    def text_astring(self, what: str = "a string") -> str:
        return text(self.astring(what))

    # Mailboxes.

    def mailbox(self) -> str:
        return mailbox_name(self.astring("a mailbox name"))

    def list_mailbox(self) -> str:
        if self.peek() in (0x22, 0x7B):
            raw = self.string()
        else:
            raw = self._run(LIST_CHARS)
            if not raw:
                raise self.fail("a mailbox pattern")
        return decode_name(raw)

    # Flags.

    def flag(self) -> str:
        if self.take(b"\\"):
            name = "\\" + self.atom("a flag name")
            canonical = SYSTEM_FLAGS.get(name.upper())
            if canonical is None:
                raise ParseError(f"{name} is not a flag that can be set")
            return canonical
        return self.atom("a flag")

    def flag_list(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.parenthesized(self.flag, empty_ok=True)))

    # Numbers with structure.

    def sequence_set(self) -> SequenceSet:
        raw = self._run(_SEQ_CHARS)
        if not raw:
            raise self.fail("a sequence set")
        try:
            return SequenceSet.parse(raw.decode("ascii"))
        except SequenceSetError as e:
            raise ParseError(str(e)) from None

    def date(self) -> date:
        quoted = self.take(b'"')
        day = self._digits(1, 2, "a day")
        self.expect(b"-", "'-' after the day")
        month = self._month()
        self.expect(b"-", "'-' after the month")
        year = self._digits(4, 4, "a four-digit year")
        if quoted:
            self.expect(b'"', "'\"' after the date")
        try:
            return date(year, month, day)
        except ValueError as e:
            raise ParseError(f"not a date: {e}") from None

    def date_time(self) -> datetime:
        self.expect(b'"', "a quoted date-time")
        self.take(b" ")
        day = self._digits(1, 2, "a day")
        self.expect(b"-", "'-' after the day")
        month = self._month()
        self.expect(b"-", "'-' after the month")
        year = self._digits(4, 4, "a four-digit year")
        self.sp()
        hour = self._digits(2, 2, "hours")
        self.expect(b":", "':'")
        minute = self._digits(2, 2, "minutes")
        self.expect(b":", "':'")
        second = self._digits(2, 2, "seconds")
        self.sp()
        sign = self.peek()
        if sign not in (0x2B, 0x2D):
            raise self.fail("a zone such as +0200")
        self.pos += 1
        zone = self._digits(4, 4, "a four-digit zone")
        self.expect(b'"', "'\"' after the date-time")
        hh, mm = divmod(zone, 100)
        if mm > 59 or hh > 23:
            raise ParseError(f"not a time zone: {zone:04d}")
        offset = timedelta(hours=hh, minutes=mm) * (-1 if sign == 0x2D else 1)
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
        except ValueError as e:
            raise ParseError(f"not a date-time: {e}") from None

    def _digits(self, least: int, most: int, what: str) -> int:
        start = self.pos
        raw = self._run(_DIGITS)
        if not least <= len(raw) <= most:
            self.pos = start
            raise self.fail(what)
        return int(raw)

    def _month(self) -> int:
        name = self.data[self.pos : self.pos + 3].decode("latin-1").upper()
        if name not in MONTHS:
            raise self.fail("a month such as Jul")
        self.pos += 3
        return MONTHS.index(name) + 1


def decode_name(raw: bytes) -> str:
    try:
        return mutf7.decode(raw)
    except mutf7.UTF7Error as e:
        raise ParseError(f"mailbox name is not modified UTF-7: {e}") from None


def mailbox_name(raw: bytes) -> str:
    name = decode_name(raw)
    # RFC 3501 5.1: INBOX is case-insensitive, every other name is not.
    return "INBOX" if name.upper() == "INBOX" else name
