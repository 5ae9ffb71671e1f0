"""The bytes of SMTP DATA, read as they arrive: no I/O, bytes in, clean bytes out.

`DataReader.feed` takes what the client sends after the 354, in pieces of
any size, and gives back the message it carries:

- the end is `CRLF . CRLF` and nothing else (RFC 5321 4.1.1.4): a line of
  one dot, a line being what lies between two CRLF. `\\n.\\n`, `\\r.\\r`,
  `\\n.\\r\\n` do not end the data (as aiosmtpd >= 1.4.6), so nothing a
  lenient reader would take for an end can hide a second transaction;
- a line that starts with a dot loses that dot (4.5.2);
- a CR not followed by LF, and an LF not preceded by CR, become CRLF.
  Postfix's `smtpd_forbid_bare_newline = normalize` does this for LF; a lone
  CR is treated the same way, so that what is stored, served over IMAP and
  relayed has one reading only: every line ends with CRLF. Neither starts
  an SMTP line: a dot after one is data, kept;
- the size of the message (after the two steps above) is counted against
  `size_limit`, and each of its lines against `line_limit` (with CRLF).
  Over either, the output stops but the reading goes on to the end, so the
  reply comes where the client expects it (RFC 5321 4.2.5).

Whatever follows the end (a pipelined command) is left in `unused`, as
`zlib.decompressobj` does.
"""

from __future__ import annotations

import re

__all__ = ["DataReader"]

_BREAK = re.compile(rb"[\r\n]")
CRLF = b"\r\n"


class DataReader:
    def __init__(self, size_limit: int | None = None, line_limit: int | None = None) -> None:
        self.size_limit = size_limit or None
        # Content octets of one line, its CRLF not counted.
        self._line_max = line_limit - 2 if line_limit else None
        self.size = 0  # of the clean message, counted on even once over the limit
        self.too_big = False
        self.line_too_long = False
        self.done = False
        self.unused = b""
        self._line = 0  # content octets of the line being written
        self._bol = True  # the next byte starts an SMTP line
        self._hold = b""  # bytes whose meaning depends on what follows ("\r", ".", ".\r")

    def feed(self, data: bytes) -> bytes:
        """The clean message bytes found in `data`, possibly none."""
        if self.done:
            self.unused += data
            return b""
        if self._hold:
            data = self._hold + data
            self._hold = b""
        out: list[bytes] = []
        pos, n = 0, len(data)
        while pos < n:
            if self._bol:
                if data[pos] == 0x2E:  # "."
                    rest = data[pos + 1 : pos + 3]
                    if rest == CRLF:
                        self.done = True
                        self.unused = data[pos + 3 :]
                        break
                    if rest in (b"", b"\r"):  # not known yet
                        self._hold = data[pos:]
                        break
                    # A stuffed dot (or a dot before a lone CR): drop it.
                    pos += 1
                self._bol = False
                continue
            m = _BREAK.search(data, pos)
            end = n if m is None else m.start()
            if end > pos:
                self._emit(out, data[pos:end])
                pos = end
            if m is None:
                break
            if data[pos] == 0x0D:  # "\r"
                if pos + 1 == n:
                    self._hold = b"\r"
                    break
                if data[pos + 1] == 0x0A:
                    self._bol = True
                    pos += 2
                else:
                    pos += 1  # a lone CR
            else:
                pos += 1  # a lone LF
            self._emit(out, CRLF, line_end=True)
        return b"".join(out)

    def _emit(self, out: list[bytes], chunk: bytes, line_end: bool = False) -> None:
        if line_end:
            self._line = 0
        else:
            self._line += len(chunk)
            if self._line_max is not None and self._line > self._line_max:
                self.line_too_long = True
        self.size += len(chunk)
        if self.size_limit is not None and self.size > self.size_limit:
            self.too_big = True
        if not (self.too_big or self.line_too_long):
            out.append(chunk)
