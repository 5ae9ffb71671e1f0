"""SMTP/LMTP replies from a server, parsed without I/O.

Bytes in, complete replies out: `250-first` / `250 last` lines make one
reply. The LMTP and SMTP clients feed it whatever the socket gave.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 4096
MAX_LINES = 200


class ReplyError(ValueError):
    """The peer sent something that is not an SMTP reply."""


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400


class ReplyParser:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None

    @property
    def buffered(self) -> bool:
        """Whether part of a reply is waiting for the rest."""
        return bool(self._buf) or bool(self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    raise ReplyError("reply line too long")
                return out
            raw = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            reply = self._line(raw)
            if reply is not None:
                out.append(reply)

    def _line(self, raw: bytes) -> Reply | None:
        if len(raw) < 3 or not raw[:3].isdigit() or raw[3:4] not in (b"", b" ", b"-"):
            raise ReplyError(f"not a reply line: {raw[:80]!r}")
        code = int(raw[:3])
        if self._code is not None and code != self._code:
            raise ReplyError(f"reply code changed within a reply: {raw[:80]!r}")
        if not 200 <= code <= 599:
            raise ReplyError(f"reply code out of range: {code}")
        self._code = code
        self._lines.append(raw[4:].decode("utf-8", "replace"))
        if len(self._lines) > MAX_LINES:
            raise ReplyError("reply has too many lines")
        if raw[3:4] == b"-":
            return None
        reply = Reply(code, tuple(self._lines))
        self._code, self._lines = None, []
        return reply


def crlf_lines(message: bytes) -> bytes:
    """The message as CRLF lines only: every lone CR or LF becomes CRLF, and
    a last line without one gets it.

    Whatever the spool holds (a client's bare LF, a bounce, a file from an
    older version), the next hop sees only CRLF: a receiver that also ends
    lines at a bare LF or CR could otherwise find a `.` line, and a new SMTP
    command, inside the body (SMTP smuggling).
    """
    # Bytes methods, not a loop over lines: this runs for every delivery.
    # (Counting CRs and LFs would be slower: bytes.count of one byte has no
    # fast search.)
    rest = message.replace(b"\r\n", b"")
    if b"\r" in rest or b"\n" in rest:
        message = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message


def dot_stuff(message: bytes) -> bytes:
    """Wire form of a message for DATA (RFC 5321 4.5.2): CRLF lines, each
    line that starts with '.' given one more, then '.' CRLF."""
    message = crlf_lines(message)
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
