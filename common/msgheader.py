"""A message's header section, found in its first bytes: no I/O.

`HeaderReader.feed` takes a message in pieces (the clean CRLF lines that
`datareader.DataReader` gives) and keeps its header section, and only that,
until the first empty line, which is where the store's parser ends it too
(a line without a colon does not end it there either). It counts the
section's octets and its fields (a field is a line that does not start with
a blank) and gives up, keeping nothing more, once either passes its limit:
the header is the only part of a message that is held in memory.

`Header` answers what the MTA and the MDA ask of it: how many fields of
some names, their values.
"""

from __future__ import annotations

import re

__all__ = ["TOO_LARGE", "TOO_MANY_FIELDS", "Header", "HeaderReader"]

TOO_LARGE, TOO_MANY_FIELDS = "header too large", "too many header fields"
CRLF = b"\r\n"
_EMPTY_LINE = re.compile(rb"\n\r?\n")


class Header:
    """The fields of a header section: `raw` is the section, each line with its CRLF."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._fields: list[tuple[str, bytes]] = []
        for line in raw.split(b"\n"):
            line = line.removesuffix(b"\r")
            if line[:1] in (b" ", b"\t"):
                if self._fields:  # else a stray continuation, not a field
                    name, value = self._fields[-1]
                    self._fields[-1] = (name, value + line)  # unfolded: the line end removed
                continue
            name, colon, value = line.partition(b":")
            name = name.rstrip(b" \t")  # RFC 5322's obsolete syntax allows blanks before ":"
            if colon and name and b" " not in name and b"\t" not in name:
                self._fields.append((name.decode("ascii", "replace").lower(), value))
            elif line:
                self._fields.append(("", line))  # not a field; counted, never matched

    def __len__(self) -> int:
        return len(self._fields)

    def count(self, *names: str) -> int:
        wanted = {n.lower() for n in names}
        return sum(1 for name, _ in self._fields if name in wanted)

    def has(self, name: str) -> bool:
        return self.count(name) > 0

    def values(self, name: str) -> list[bytes]:
        key = name.lower()
        return [v.strip(b" \t") for n, v in self._fields if n == key]

    @classmethod
    def of(cls, message: bytes) -> Header:
        """The header of a whole message in memory (no limit), ended as HeaderReader ends it."""
        if message[:1] == b"\n" or message[:2] == CRLF:
            return cls(b"")
        m = _EMPTY_LINE.search(message)
        return cls(message if m is None else message[: m.start() + 1])


class HeaderReader:
    def __init__(self, size_limit: int | None = None, field_limit: int | None = None) -> None:
        self.size_limit = size_limit or None
        self.field_limit = field_limit or None
        self.done = False
        self.error: str | None = None  # TOO_LARGE or TOO_MANY_FIELDS
        self._buf = bytearray()
        self._scanned = 0  # the complete lines at the start of _buf
        self._fields = 0
        self._header: Header | None = None

    def feed(self, data: bytes) -> bytes:
        """Whatever of `data` lies after the header section (from its empty line on)."""
        if self.done:
            return b"" if self.error else data
        buf = self._buf
        buf += data
        while True:
            eol = buf.find(b"\n", self._scanned)
            if eol < 0:
                break
            start = self._scanned
            if eol - start <= 1 and buf[start : eol + 1] in (b"\n", CRLF):
                return self._end(start)
            if buf[start] not in b" \t":
                self._fields += 1
                if self.field_limit is not None and self._fields > self.field_limit:
                    return self._fail(TOO_MANY_FIELDS)
            self._scanned = eol + 1
            if self.size_limit is not None and self._scanned > self.size_limit:
                return self._fail(TOO_LARGE)
        if self.size_limit is not None and len(buf) > self.size_limit:
            return self._fail(TOO_LARGE)
        return b""

    def finish(self) -> Header:
        """The header, once the section ended (or the message did: then all of it)."""
        if self.error:
            raise ValueError(self.error)
        if not self.done:
            self._end(len(self._buf))
        assert self._header is not None
        return self._header

    @property
    def header(self) -> Header | None:
        return self._header

    def _end(self, at: int) -> bytes:
        self.done = True
        rest = bytes(self._buf[at:])
        self._header = Header(bytes(self._buf[:at]))
        self._buf = bytearray()
        return rest

    def _fail(self, error: str) -> bytes:
        self.done = True
        self.error = error
        self._buf = bytearray()
        return b""
