"""Does one message match a SEARCH program? (RFC 3501 6.4.4, RFC 7162)

The session adapts its store and MIME data to `SearchTarget`; `Searcher`
compiles a parsed program once per command (resolving `*` against the
mailbox as it is now) and is then asked about each message. Keys that
need the message text come last in every AND, so a search on flags never
opens a file.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.utils
import re
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Protocol

from .searchkeys import (
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
    SearchKey,
    Seq,
    Smaller,
    Text,
    Uid,
)


class SearchTarget(Protocol):
    """One message as SEARCH sees it.

    `flags` includes `\\Recent` when the message is recent in this session.
    `header(name)` gives the raw values (folded or not, encoded words and
    all) of every field of that name, in order, matching the name without
    regard to case; this module unfolds and decodes them. `header_text()`
    is the whole header section, raw the same way. `body_text()` is the
    body as text, ideally with transfer encodings undone. `sent_date()` is
    the Date: field parsed (see `parse_sent_date`), None when missing or
    unreadable.

    A target may also have `header_folded(name)`: the values of `header(name)`
    already unfolded, decoded and case-folded (`decode_words(v).casefold()`),
    or None when it does not know them; a store that keeps them saves the
    decoding of every message on every search.
    """

    @property
    def seq(self) -> int: ...

    @property
    def uid(self) -> int: ...

    @property
    def flags(self) -> Collection[str]: ...

    @property
    def size(self) -> int: ...

    @property
    def internal_date(self) -> datetime: ...

    @property
    def modseq(self) -> int: ...

    def header(self, name: str) -> list[str]: ...

    def header_text(self) -> str: ...

    def body_text(self) -> str: ...

    def sent_date(self) -> datetime | None: ...


# A compiled key: the message and a per-message cache of decoded text.
_Test = Callable[[SearchTarget, dict], bool]

# How dear a key is to test; cheaper keys go first in an AND.
_CHEAP, _HEADERS, _BODY = 0, 1, 2


class Searcher:
    def __init__(self, program: SearchKey, *, max_seq: int, max_uid: int) -> None:
        """`max_seq` and `max_uid` are what `*` means: the message count and
        the highest UID in the mailbox now (0 when it is empty)."""
        self.max_seq = max_seq
        self.max_uid = max_uid
        self.needs_headers = False
        self.needs_body = False
        self.uses_modseq = False
        self._test, _ = self._compile(program)

    def matches(self, target: SearchTarget) -> bool:
        return self._test(target, {})

    def _compile(self, key: SearchKey) -> tuple[_Test, int]:
        match key:
            case All():
                return (lambda m, c: True), _CHEAP
            case And(keys):
                parts = sorted((self._compile(k) for k in keys), key=lambda p: p[1])
                tests = [t for t, _ in parts]
                return (lambda m, c: all(t(m, c) for t in tests)), parts[-1][1]
            case Or(left, right):
                (a, ca), (b, cb) = sorted(
                    (self._compile(left), self._compile(right)), key=lambda p: p[1]
                )
                return (lambda m, c: a(m, c) or b(m, c)), cb
            case Not(inner):
                t, cost = self._compile(inner)
                return (lambda m, c: not t(m, c)), cost
            case Flag(flag, present):
                wanted = flag.casefold()
                return (lambda m, c: (wanted in _flags(m, c)) == present), _CHEAP
            case Seq(seqs):
                numbers = seqs.resolve(self.max_seq)
                return (lambda m, c: m.seq in numbers), _CHEAP
            case Uid(seqs):
                uids = seqs.resolve(self.max_uid)
                return (lambda m, c: m.uid in uids), _CHEAP
            case Larger(size):
                return (lambda m, c: m.size > size), _CHEAP
            case Smaller(size):
                return (lambda m, c: m.size < size), _CHEAP
            case ModSeq(modseq):
                self.uses_modseq = True
                return (lambda m, c: m.modseq >= modseq), _CHEAP
            case DateKey(op, day, sent=False):
                compare = _DAY_TESTS[op]
                return (lambda m, c: compare(m.internal_date.date(), day)), _CHEAP
            case DateKey(op, day, sent=True):
                self.needs_headers = True
                compare = _DAY_TESTS[op]

                def sent_test(m: SearchTarget, c: dict) -> bool:
                    sent = m.sent_date()
                    return sent is not None and compare(sent.date(), day)

                return sent_test, _HEADERS
            case Header(field, value):
                self.needs_headers = True
                needle = value.casefold()

                def header_test(m: SearchTarget, c: dict) -> bool:
                    known = getattr(m, "header_folded", None)
                    values = known(field) if known is not None else None
                    if values is not None:
                        return any(needle in v for v in values)
                    return any(needle in decode_words(v).casefold() for v in m.header(field))

                return header_test, _HEADERS
            case Body(value):
                self.needs_body = True
                needle = value.casefold()
                return (lambda m, c: needle in _body(m, c)), _BODY
            case Text(value):
                self.needs_headers = self.needs_body = True
                needle = value.casefold()
                return (lambda m, c: needle in _headers(m, c) or needle in _body(m, c)), _BODY
        raise TypeError(f"not a search key: {key!r}")


def matches(program: SearchKey, target: SearchTarget, *, max_seq: int, max_uid: int) -> bool:
    """One-off form of `Searcher(...).matches(target)`."""
    return Searcher(program, max_seq=max_seq, max_uid=max_uid).matches(target)


_DAY_TESTS = {
    "before": lambda have, day: have < day,
    "on": lambda have, day: have == day,
    "since": lambda have, day: have >= day,
}


def _flags(m: SearchTarget, cache: dict) -> frozenset[str]:
    if "flags" not in cache:
        # RFC 3501 flags and keywords compare without regard to case.
        cache["flags"] = frozenset(f.casefold() for f in m.flags)
    return cache["flags"]


def _body(m: SearchTarget, cache: dict) -> str:
    if "body" not in cache:
        cache["body"] = m.body_text().casefold()
    return cache["body"]


def _headers(m: SearchTarget, cache: dict) -> str:
    if "headers" not in cache:
        cache["headers"] = decode_words(m.header_text()).casefold()
    return cache["headers"]


def parse_sent_date(value: str | None) -> datetime | None:
    """A Date: field's value as a datetime in its own zone, or None."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# RFC 2047 encoded words. Written out rather than via email.header, which
# mangles 8-bit text next to encoded words and gives up on a whole field
# for one bad word.
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_words(value: str) -> str:
    """Unfold a header value and decode its encoded words; any word that
    cannot be decoded stays as it was written."""
    if "\n" in value:
        value = _FOLD.sub("", value)
    if "=?" not in value:
        return value  # no encoded word: most values, and worth the shortcut
    out: list[str] = []
    run: list[tuple[str, bytes]] = []  # adjacent decoded words, for split characters
    pos = 0
    for m in _WORD.finditer(value):
        between = value[pos : m.start()]
        raw = _word_bytes(m.group(2), m.group(3))
        charset = m.group(1).split("*", 1)[0].lower()  # drop an RFC 2231 language
        if raw is None or not _known_charset(charset):
            _flush(run, out)
            out.append(between + m.group(0))
        else:
            # Whitespace between two encoded words is not part of the text.
            if not (run and between.strip(" \t") == ""):
                _flush(run, out)
                out.append(between)
            if run and run[-1][0] == charset:
                run[-1] = (charset, run[-1][1] + raw)
            else:
                run.append((charset, raw))
        pos = m.end()
    _flush(run, out)
    out.append(value[pos:])
    return "".join(out)


def _flush(run: list[tuple[str, bytes]], out: list[str]) -> None:
    out.extend(raw.decode(charset, "replace") for charset, raw in run)
    run.clear()


def _known_charset(charset: str) -> bool:
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return False
    # Python also has bytes-to-bytes codecs (hex, zlib) that are no charset.
    return getattr(info, "_is_text_encoding", True)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    data = payload.encode("ascii", "replace")
    if encoding in "Bb":
        try:
            return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
    data = data.replace(b"_", b" ")
    return _Q_ESCAPE.sub(lambda e: bytes([int(e.group(1), 16)]), data)
