"""IMAP command framing without I/O: bytes in, events out (the h11 way).

`CommandReader.feed(data)` returns the events the bytes complete so far:
a `commands.Command` per command, `NeedContinuation` when the client waits
for `+` before sending a literal, and `BadCommand`/`LiteralTooLarge`/
`BadCharset` for input to refuse. After a bad command the reader is already
at the start of the next one, whatever the bad one contained.

The reader pauses where the session must decide before more bytes mean
anything, and its last event says why:
- `NeedContinuation`: send `+` and call `resume()`, or answer the tag with
  NO/BAD and call `refuse_literal()` (the client then sends none of it);
- `LiteralTooLarge` for a non-synchronizing literal (`{n+}` over the
  limit): its bytes are already on their way and the reader will not read
  them, skipped or kept, so it is `finished`: it returns no more events and
  keeps nothing it is fed. The session answers and closes the connection
  (RFC 7888 section 4 lets a server do so);
- IDLE, AUTHENTICATE, STARTTLS (and the commands in `pause_after`): what
  follows is not a command, or not this reader's. Call
  `expect_line()` for each raw line wanted (IDLE's DONE, a SASL response)
  and `resume()` to go back to commands. After STARTTLS, `take_buffered()`
  hands back (and drops) plaintext the client sent too early, which must
  never be read as if it came over TLS.
Each of these calls returns the events that bytes already buffered make.
While paused, the reader only buffers: a server stops reading the socket.

Each line is split at LF (a CR before it is dropped); a line ending in
`{n}` or `{n+}` continues after n bytes of literal.

The literal limits may change between commands (they are smaller before
login): assign `reader.limits`, and the next command's first line uses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .args import KNOWN_NAMES, parse_command
from .commands import Authenticate, Idle, StartTLS
from .events import (
    BadCommand,
    Event,
    Line,
    LineTooLong,
    LiteralTooLarge,
    NeedContinuation,
)
from .grammar import TAG_CHARS


@dataclass(frozen=True)
class Limits:
    # Text of one command, over all its lines, literals not counted.
    max_line: int = 64 * 1024
    # Literal bytes in one APPEND: the largest message we accept
    # (the session sets it from mta.max_message_size).
    max_literal: int = 36 * 1024 * 1024
    # Literal bytes in any other command (passwords, search strings, names).
    max_arg_literal: int = 64 * 1024
    # Parentheses, NOT and OR, together: bounds recursion in parse and search.
    max_depth: int = 100


_LITERAL_AT_END = re.compile(rb"\{([0-9]+)(\+?)\}\Z")
# What of a discarded line is kept to see whether it ends with a literal.
_TAIL = 64
_PAUSING = (Idle, Authenticate, StartTLS)

# Where the reader is within the byte stream.
_LINE, _LITERAL, _SKIP, _DISCARD, _FINISHED = range(5)
# What the next line is for.
_COMMAND, _RAW, _NOTHING = range(3)


class CommandReader:
    def __init__(self, limits: Limits | None = None, pause_after: tuple[type, ...] = ()) -> None:
        """pause_after: further commands to pause after, as after STARTTLS (the
        login process pauses after LOGIN: what follows is for the mail process)."""
        self.limits = limits or Limits()
        self._pausing = _PAUSING + tuple(pause_after)
        self._buf = bytearray()
        self._scan = 0  # no LF before this offset of _buf
        self._phase = _LINE
        self._want = _COMMAND
        self._held = False  # a synchronizing literal waits for the session's word
        self._need = 0  # literal bytes still to read or skip
        self._tail = b""
        self._discard_literals = True
        self._reset_command()

    def _reset_command(self) -> None:
        self._cmd = bytearray()
        self._started = False
        self._text = 0
        self._literal_bytes = 0
        self._cap = 0  # set from the limits by the command's first line
        self._tag: str | None = None
        self._name: str | None = None

    @property
    def paused(self) -> bool:
        """True after NeedContinuation, IDLE, AUTHENTICATE, STARTTLS or a
        `Line`, until the session calls `resume()`, `expect_line()` or
        `refuse_literal()`."""
        return self._held or self._want == _NOTHING

    @property
    def finished(self) -> bool:
        """True after a non-synchronizing literal over the limit: the reader
        reads nothing more, and the connection should be closed."""
        return self._phase == _FINISHED

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buf)

    def feed(self, data: bytes = b"") -> list[Event]:
        if self._phase == _FINISHED:
            return []
        self._buf += data
        return self._drain()

    def expect_line(self) -> list[Event]:
        """Read the next line raw, as one `Line` event; pause again after it."""
        if self._started:
            raise RuntimeError("expect_line() in the middle of a command")
        self._want = _RAW
        return self._drain()

    def resume(self) -> list[Event]:
        """Go on: read the literal just announced (the session sent `+`),
        or read commands again after IDLE, AUTHENTICATE, STARTTLS or a Line."""
        if self._held:
            self._held = False
        elif self._started:
            raise RuntimeError("resume() in the middle of a command")
        else:
            self._want = _COMMAND
        return self._drain()

    def refuse_literal(self) -> list[Event]:
        """Drop the command whose literal was announced: the session answered
        its tag instead of sending `+`, so the client sends none of it."""
        if not self._held:
            raise RuntimeError("refuse_literal() without a NeedContinuation")
        self._held = False
        self._reset_command()
        self._phase = _LINE
        self._scan = 0
        return self._drain()

    def take_buffered(self) -> bytes:
        """Everything received and not yet read, removed from the reader."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return data

    def _drain(self) -> list[Event]:
        events: list[Event] = []
        while True:
            progressed, event = self._step()
            if event is not None:
                events.append(event)
            if not progressed:
                return events

    def _step(self) -> tuple[bool, Event | None]:
        if self._phase == _FINISHED:
            return False, None
        if self._phase == _LITERAL:
            return self._read_literal()
        if self._phase == _SKIP:
            return self._skip_literal()
        if self._phase == _DISCARD:
            return self._discard_line()
        if self._want == _NOTHING:
            return False, None
        return self._read_line()

    def _read_line(self) -> tuple[bool, Event | None]:
        buf = self._buf
        allowance = self.limits.max_line - self._text
        i = buf.find(b"\n", self._scan)
        if i < 0:
            # One byte more than allowed may be the CR before the LF.
            if len(buf) > allowance + 1:
                return True, self._too_long()
            self._scan = len(buf)
            return False, None
        end = i - 1 if i > 0 and buf[i - 1] == 0x0D else i
        if end > allowance:
            return True, self._too_long()
        line = bytes(buf[:end])
        del buf[: i + 1]
        self._scan = 0
        if self._want == _RAW:
            self._want = _NOTHING
            return True, Line(line)
        return True, self._command_line(line)

    def _too_long(self) -> Event:
        raw = self._want == _RAW
        if raw:
            tag = None
            self._want = _NOTHING
        elif self._started:
            tag = self._tag
        else:
            # Only what every chunking of the input has seen by now, so the
            # events do not depend on how the bytes arrived.
            tag = _head(bytes(self._buf[: self.limits.max_line]), need_space=True)[0]
        self._reset_command()
        self._enter_discard(literals=not raw)
        return LineTooLong(tag, "line too long" if raw else "command line too long")

    def _command_line(self, line: bytes) -> Event | None:
        first = not self._started
        if first:
            if not line:
                return None  # a stray empty line is harmless: ignore it
            self._started = True
            self._tag, name = _head(line)
            self._name = name
            limits = self.limits
            self._cap = limits.max_literal if name == "APPEND" else limits.max_arg_literal
        self._cmd += line
        self._text += len(line)
        m = _LITERAL_AT_END.search(line)
        if m is None:
            data = bytes(self._cmd)
            self._reset_command()
            event = parse_command(data, self.limits.max_depth)
            if isinstance(event, self._pausing):
                self._want = _NOTHING
            return event
        digits, plus = m.groups()
        # Python refuses int() of very long digit strings; any such count is
        # over every limit anyway.
        size = int(digits) if len(digits.lstrip(b"0")) <= 18 else 2**63
        sync = not plus
        tag = self._tag
        if self._literal_bytes + size > self._cap:
            name = self._name
            self._reset_command()
            if not sync:
                self._finish()
            return LiteralTooLarge(tag, size, sync, name)
        if sync and first:
            reason = _early_reject(line)
            if reason:
                # No `+`, so the client sends nothing more of this command.
                self._reset_command()
                return BadCommand(tag, reason)
        self._cmd += b"\r\n"
        self._literal_bytes += size
        self._need = size
        self._phase = _LITERAL
        if not sync:
            return None
        self._held = True
        return NeedContinuation(tag, size, self._name)

    def _read_literal(self) -> tuple[bool, Event | None]:
        if self._held or (self._need and not self._buf):
            return False, None
        k = min(self._need, len(self._buf))
        self._cmd += self._buf[:k]
        del self._buf[:k]
        self._need -= k
        if not self._need:
            self._phase = _LINE
            self._scan = 0
        return True, None

    def _skip_literal(self) -> tuple[bool, Event | None]:
        if self._need and not self._buf:
            return False, None
        k = min(self._need, len(self._buf))
        del self._buf[:k]
        self._need -= k
        if not self._need:
            # The rest of the refused command follows the literal.
            self._enter_discard(literals=True)
        return True, None

    def _finish(self) -> None:
        # Whatever follows is the refused literal, or comes after it: none
        # of it is read, so none of it is kept.
        self._phase = _FINISHED
        self._buf.clear()
        self._scan = 0
        self._need = 0

    def _enter_discard(self, literals: bool) -> None:
        self._phase = _DISCARD
        self._discard_literals = literals
        self._tail = b""
        self._scan = 0

    def _discard_line(self) -> tuple[bool, Event | None]:
        buf = self._buf
        i = buf.find(b"\n")
        if i < 0:
            self._tail = (self._tail + bytes(buf[-_TAIL:]))[-_TAIL:]
            buf.clear()
            return False, None
        tail = (self._tail + bytes(buf[max(0, i - _TAIL) : i]))[-_TAIL:]
        del buf[: i + 1]
        self._phase = _LINE
        self._scan = 0
        if tail.endswith(b"\r"):
            tail = tail[:-1]
        m = _LITERAL_AT_END.search(tail) if self._discard_literals else None
        if m is not None and m.group(2):
            # A non-synchronizing literal is coming whether we like it or
            # not; a synchronizing one waits for a `+` that never comes.
            # The discarded command may have been an APPEND, so the larger
            # limit decides whether its literal is skipped or refused.
            digits = m.group(1)
            size = int(digits) if len(digits.lstrip(b"0")) <= 18 else 2**63
            if size > max(self.limits.max_literal, self.limits.max_arg_literal):
                self._finish()
                return True, LiteralTooLarge(None, size, False)
            self._phase = _SKIP
            self._need = size
        return True, None


def _head(line: bytes, need_space: bool = False) -> tuple[str | None, str | None]:
    """The tag and command name of a command's first line, if they look valid."""
    tag_raw, sp, rest = line.partition(b" ")
    if need_space and not sp:
        return None, None
    tag = None
    if tag_raw and all(c in TAG_CHARS for c in tag_raw):
        tag = tag_raw.decode("ascii")
    name = rest.partition(b" ")[0].decode("latin-1").upper() if sp else None
    return tag, name


def _early_reject(line: bytes) -> str | None:
    tag, name = _head(line)
    if tag is None:
        return "invalid tag"
    if name not in KNOWN_NAMES:
        return f"unknown command {name}"
    return None
