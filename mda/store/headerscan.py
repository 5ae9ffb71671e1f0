"""A few fields of a message's header, without the rest of `message.parse`.

ENVELOPE and the search text look at a dozen fields of the top-level header;
real headers carry dozens more (Received, DKIM-Signature, X-...) that they
never need. `FieldReader` finds only its fields, with one regular expression
over the header block, and gives each the value `message.parse` would: the
same first-empty-line end of the header, the same unfolding (line ends and
one CR before each removed, whitespace kept, leading blanks dropped), the
same names in any case. What a line-by-line reader would treat specially
(a line without a colon, a stray continuation) cannot start with one of the
names followed by a colon, so it is skipped here as there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["FieldReader", "HeaderFields", "fields_end", "unfold"]

_UNFOLD = re.compile(rb"\r?\n")
_EMPTY_LINE = re.compile(rb"\n\r?\n")


def unfold(value: bytes) -> bytes:
    """A field's value as found in the header block (after the blanks that
    follow the colon, continuation lines included) as `message` gives it."""
    if b"\n" in value:
        value = _UNFOLD.sub(b"", value)
    if value[-1:] == b"\r":
        value = value[:-1]
    return value.lstrip(b" \t")


def fields_end(data: bytes) -> int:
    """Where the top-level header's fields end: at its first empty line, or
    the end of `data` without one (`message.Part.fields_end` of the root)."""
    if data[:1] == b"\n" or data[:2] == b"\r\n":
        return 0
    m = _EMPTY_LINE.search(data)
    return len(data) if m is None else m.start() + 1


class HeaderFields:
    """The fields a FieldReader found: `get` and `get_all` as on `message.Part`,
    for the reader's names only."""

    __slots__ = ("_index",)

    def __init__(self, index: dict[str, list[bytes]]) -> None:
        self._index = index

    def get(self, name: str) -> bytes | None:
        values = self._index.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[bytes]:
        return list(self._index.get(name.lower(), ()))


class FieldReader:
    """Reads the fields called `names` (ASCII, any case) out of messages."""

    def __init__(self, names: Iterable[str]) -> None:
        wanted = sorted({n.lower() for n in names}, key=len, reverse=True)
        choice = b"|".join(re.escape(n.encode("ascii")) for n in wanted)
        # A field starts a line (hence the "\n" put before the block) and runs
        # over the lines that start with a blank.
        self._pattern = re.compile(
            rb"\n(" + choice + rb")[ \t]*:[ \t]*(.*(?:\n[ \t].*)*)", re.IGNORECASE)

    def read(self, data: bytes) -> HeaderFields:
        """The fields of the message (or of its header alone) `data`."""
        block = data[: fields_end(data)]
        index: dict[str, list[bytes]] = {}
        odd = b"\r" in block
        for name, value in self._pattern.findall(b"\n" + block):
            if odd or b"\n" in value:
                value = unfold(value)
            key = name.decode("ascii").lower()
            values = index.get(key)
            if values is None:
                index[key] = [value]
            else:
                values.append(value)
        return HeaderFields(index)
