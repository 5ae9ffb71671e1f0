"""What `CommandReader` hands the session: one event per thing to answer.

Commands themselves are in `commands`; these are the other events, about
framing (literals, raw lines) and about input that is not a command.
"""

from __future__ import annotations

from dataclasses import dataclass


class Event:
    """Base of everything `CommandReader.feed` returns."""


@dataclass(frozen=True)
class NeedContinuation(Event):
    """A synchronizing literal `{size}` was announced; the reader pauses.

    The session either sends `+ ...` and calls `resume()` (the command
    follows once its bytes arrive), or answers `tag NO ...`/`BAD` and calls
    `refuse_literal()`. `command` is the command's name as far as the first
    line tells (`APPEND`, `LOGIN`, `UID`), upper-cased, None if unreadable:
    enough to refuse an APPEND before login or over a size limit.
    """

    tag: str | None
    size: int
    command: str | None = None


@dataclass(frozen=True)
class BadCommand(Event):
    """Input that is not a valid command: answer `tag BAD message`
    (`* BAD` when tag is None). The reader has already resynchronized."""

    tag: str | None
    message: str


@dataclass(frozen=True)
class LineTooLong(BadCommand):
    """A line (or a command's text over all its lines) passed `max_line`.

    A BadCommand, so a generic session answers BAD; one that prefers to say
    BYE and close can tell it apart. The rest of the line is discarded.
    """


@dataclass(frozen=True)
class LiteralTooLarge(Event):
    """A literal would take the command past its literal limit.

    The command is dropped. For a synchronizing literal the client sends
    nothing more of it once it reads the tagged answer (`NO [TOOBIG]` or
    BAD). A non-synchronizing one (`{n+}`) is already on its way: the reader
    reads none of it and is finished, and the session closes the connection.
    `command` is the command's name as in `NeedContinuation`.
    """

    tag: str | None
    size: int
    synchronizing: bool
    command: str | None = None


@dataclass(frozen=True)
class BadCharset(Event):
    """SEARCH with a CHARSET we do not take: answer
    `tag NO [BADCHARSET (UTF-8 US-ASCII)] ...`."""

    tag: str
    command: str
    charset: str


@dataclass(frozen=True)
class Line(Event):
    """One raw line, without its CRLF, read after `CommandReader.expect_line()`:
    IDLE's DONE or an AUTHENTICATE response."""

    data: bytes
