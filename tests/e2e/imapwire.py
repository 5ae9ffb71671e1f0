"""Reading IMAP answers off a socket, for tests that speak the protocol line by line."""

from __future__ import annotations

import re
from typing import BinaryIO

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n$")


def read_response(file: BinaryIO) -> bytes:
    """One response: its line and, for each literal it announces, the literal and what follows."""
    out = b""
    while True:
        line = file.readline()
        assert line, "connection closed"
        out += line
        m = _LITERAL_AT_END.search(line)
        if not m:
            return out
        out += file.read(int(m.group(1)))
