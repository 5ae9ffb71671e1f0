"""The server's side of the wire: values and responses as bytes (mox's pack).

Every helper returns bytes ready to write. Strings choose their own form:
an atom when the grammar allows one, a quoted string for short plain
ASCII, and a literal for everything else (CR, LF, 8-bit, `"`, `\\`, long),
because a literal is the one form every client reads without surprises.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from common import mutf7

from .grammar import ASTRING_CHARS, ATOM_CHARS, MONTHS
from .seqset import format_numbers

CRLF = b"\r\n"
# Longer strings go as literals: easier on clients that read line by line.
QUOTED_MAX = 1000
_QUOTABLE = frozenset(c for c in range(0x20, 0x7F) if c not in b'"\\')

Value = bytes | str | int


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


# Values.


def atom(value: str) -> bytes:
    raw = value.encode("ascii", "strict")
    if not raw or any(c not in ATOM_CHARS for c in raw):
        raise ValueError(f"{value!r} is not an atom")
    return raw


def number(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"{n} is negative")
    return str(n).encode("ascii")


def quoted(value: str | bytes) -> bytes:
    """Always a quoted string, escaping `"` and `\\`; ValueError if it cannot be one."""
    raw = _bytes(value)
    if any(c not in _QUOTABLE and c not in b'"\\' for c in raw):
        raise ValueError(f"{value!r} cannot be a quoted string")
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(value: str | bytes) -> bytes:
    """`{n}` CRLF and the bytes, as given: message data is the caller's to vouch for."""
    raw = _bytes(value)
    return b"{%d}\r\n" % len(raw) + raw


def string(value: str | bytes) -> bytes:
    """Quoted or literal. NUL cannot travel in an IMAP4rev1 string and is dropped."""
    raw = _bytes(value).replace(b"\0", b"")
    if len(raw) <= QUOTED_MAX and all(c in _QUOTABLE for c in raw):
        return b'"' + raw + b'"'
    return literal(raw)


def astring(value: str | bytes) -> bytes:
    raw = _bytes(value).replace(b"\0", b"")
    # "NIL" as an atom would read as nil to a client expecting an nstring.
    if raw and raw.upper() != b"NIL" and all(c in ASTRING_CHARS for c in raw):
        return raw
    return string(raw)


def nstring(value: str | bytes | None) -> bytes:
    return b"NIL" if value is None else string(value)


def plist(items: Iterable[Value]) -> bytes:
    """`(a b c)` from values already encoded (bytes), or str/int written as is."""
    return b"(" + b" ".join(_part(i) for i in items) + b")"


def _part(value: Value) -> bytes:
    if isinstance(value, int):
        return number(value)
    if isinstance(value, str):
        return value.encode("ascii")
    return bytes(value)


def flag(name: str) -> bytes:
    if name == "\\*":
        return b"\\*"
    return b"\\" + atom(name[1:]) if name.startswith("\\") else atom(name)


def flag_list(flags: Iterable[str]) -> bytes:
    return plist(flag(f) for f in flags)


def mailbox(name: str) -> bytes:
    """A Unicode mailbox name in modified UTF-7, as an astring."""
    if name.upper() == "INBOX":
        name = "INBOX"
    return astring(mutf7.encode(name))


def sequence_set(numbers: Iterable[int]) -> bytes:
    """Sorted, compressed: `1:5,7,9:12`. Empty input gives b""."""
    return format_numbers(numbers).encode("ascii")


def date_time(dt: datetime) -> bytes:
    """INTERNALDATE form, quoted: `"17-Jul-1996 02:44:25 -0700"`.
    A naive datetime is taken as local time."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    offset = dt.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    month = MONTHS[dt.month - 1].capitalize()
    text = f"{dt.day:02d}-{month}-{dt.year:04d} {dt:%H:%M:%S} {sign}{hh:02d}{mm:02d}"
    return b'"' + text.encode("ascii") + b'"'


# Responses.


def code(name: str, *args: Value | Iterable[Value]) -> str:
    """A response code's text: code("APPENDUID", 38505, 3955) -> "APPENDUID 38505 3955";
    an iterable argument becomes a list: code("BADCHARSET", ["UTF-8"])."""
    parts = [name]
    for arg in args:
        if isinstance(arg, str | bytes | int):
            parts.append(_part(arg).decode("ascii"))
        else:
            parts.append(plist(arg).decode("ascii"))
    return " ".join(parts)


def _text(text: str) -> bytes:
    # Response text is one 7-bit line: nothing the client could read as a
    # second response.
    clean = " ".join(text.split()) or "done"
    return clean.encode("ascii", "replace")


def status(tag: str | None, kind: str, text: str, code: str | None = None) -> bytes:
    """`tag OK [code] text` (`*` when tag is None); kind is OK, NO, BAD, BYE or PREAUTH."""
    head = (tag or "*").encode("ascii") + b" " + kind.encode("ascii") + b" "
    if code:
        head += b"[" + _text(code) + b"] "
    return head + _text(text) + CRLF


def ok(tag: str | None, text: str, code: str | None = None) -> bytes:
    return status(tag, "OK", text, code)


def no(tag: str | None, text: str, code: str | None = None) -> bytes:
    return status(tag, "NO", text, code)


def bad(tag: str | None, text: str, code: str | None = None) -> bytes:
    return status(tag, "BAD", text, code)


def bye(text: str, code: str | None = None) -> bytes:
    return status(None, "BYE", text, code)


def preauth(text: str, code: str | None = None) -> bytes:
    return status(None, "PREAUTH", text, code)


def continuation(text: str = "Ready") -> bytes:
    """`+ text`: for a literal, IDLE, or a base64 SASL challenge ("" for none)."""
    return b"+ " + (" ".join(text.split())).encode("ascii", "replace") + CRLF


def data(*parts: Value) -> bytes:
    """An untagged data line: data(3, "EXISTS") -> b"* 3 EXISTS\\r\\n"."""
    return b"* " + b" ".join(_part(p) for p in parts) + CRLF


def fetch(seq: int, items: Iterable[tuple[str, bytes]]) -> bytes:
    """`* seq FETCH (name value ...)`; values already encoded (e.g. by nstring)."""
    body = b" ".join(name.encode("ascii") + b" " + value for name, value in items)
    return b"* %d FETCH (" % seq + body + b")" + CRLF


def search(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """`* SEARCH 2 5 7`, with `(MODSEQ n)` when the program used MODSEQ and
    something matched (RFC 7162 3.1.5)."""
    found = sorted(numbers)
    line = b"* SEARCH" + b"".join(b" %d" % n for n in found)
    if modseq is not None and found:
        line += b" (MODSEQ %d)" % modseq
    return line + CRLF


def esearch(
    tag: str,
    numbers: Collection[int],
    options: Iterable[str],
    *,
    uid: bool,
    modseq: int | None = None,
) -> bytes:
    """RFC 4731 `* ESEARCH (TAG "a1") UID MIN 2 COUNT 3` for the matches.

    MIN, MAX and ALL are left out when nothing matched, as the RFC says;
    COUNT is always there if asked.
    """
    wanted = set(options)
    line = b"* ESEARCH (TAG " + quoted(tag) + b")"
    if uid:
        line += b" UID"
    if numbers:
        if "MIN" in wanted:
            line += b" MIN %d" % min(numbers)
        if "MAX" in wanted:
            line += b" MAX %d" % max(numbers)
        if "ALL" in wanted:
            line += b" ALL " + sequence_set(numbers)
    if "COUNT" in wanted:
        line += b" COUNT %d" % len(numbers)
    if modseq is not None and numbers:
        line += b" MODSEQ %d" % modseq
    return line + CRLF
