"""POP3 command lines without I/O: bytes in, commands out (the h11 way).

`CommandReader.feed(data)` returns one event per complete line: a typed
command (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH) or a
`BadCommand` saying what is wrong with it. A bad line costs only itself:
the reader is already at the start of the next one.

Lines end at LF (a CR before it is dropped). A command line may be
`MAX_LINE` octets long: RFC 2449 sets 255 with the CRLF, we allow some
more for clients that count differently. A longer line is discarded up to
its LF and answered as one `BadCommand`, so memory stays bounded whatever
the client sends.

The reader pauses after STLS, AUTH and QUIT, because what follows them is
not (yet) a command: the bytes after STLS came in the clear and must never
be obeyed once TLS is up (`take_buffered()` drops them), the line after AUTH
may be a SASL response (`expect_line()` hands it out as a `Line`), and
nothing after QUIT is read. `resume()` goes back to commands. Each of these
calls returns the events that bytes already buffered make.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 2449 section 4: 255 octets including CRLF; "a bit" more, as above.
MAX_LINE = 512
# A SASL response after "+ " is base64 of the user name and password: longer
# than a command may be (RFC 5034 puts no 255-octet limit on it).
MAX_RESPONSE_LINE = 8192
# Message numbers and TOP line counts: 32 bits are plenty for either.
MAX_NUMBER = 2**32 - 1


class Event:
    """Base of everything the reader returns."""


@dataclass(frozen=True)
class BadCommand(Event):
    """A line that is not a valid command; answer -ERR with message."""

    message: str


@dataclass(frozen=True)
class Line(Event):
    """A raw line asked for with expect_line(), without its line end."""

    data: bytes


@dataclass(frozen=True)
class Command(Event):
    """Base of the commands; `name` is the keyword as RFC 1939 spells it."""

    @property
    def name(self) -> str:
        return type(self).__name__.upper()


@dataclass(frozen=True)
class User(Command):
    user: str


@dataclass(frozen=True)
class Pass(Command):
    password: str


@dataclass(frozen=True)
class Auth(Command):
    """AUTH alone lists the mechanisms (as RFC 1734 servers did); initial is
    the RFC 5034 initial response as sent ("=" for an empty one)."""

    mechanism: str | None
    initial: str | None = None


@dataclass(frozen=True)
class Stat(Command):
    pass


@dataclass(frozen=True)
class List(Command):
    msg: int | None = None


@dataclass(frozen=True)
class Uidl(Command):
    msg: int | None = None


@dataclass(frozen=True)
class Retr(Command):
    msg: int


@dataclass(frozen=True)
class Top(Command):
    msg: int
    lines: int


@dataclass(frozen=True)
class Dele(Command):
    msg: int


@dataclass(frozen=True)
class Noop(Command):
    pass


@dataclass(frozen=True)
class Rset(Command):
    pass


@dataclass(frozen=True)
class Quit(Command):
    pass


@dataclass(frozen=True)
class Capa(Command):
    pass


@dataclass(frozen=True)
class Stls(Command):
    pass


class _Bad(Exception):
    pass


def _number(text: str, what: str = "message number") -> int:
    # isdigit() alone would take other scripts' digits ("١"); ASCII only.
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise _Bad(f"Invalid {what}: {text[:20]}")
    value = int(text)
    if value > MAX_NUMBER:
        raise _Bad(f"Invalid {what}: {text[:20]}")
    return value


def _no_args(cls: type[Command]):
    def build(args: list[str]) -> Command:
        if args:
            raise _Bad(f"{cls.__name__.upper()} takes no arguments")
        return cls()
    return build


def _optional_msg(cls: type[Command]):
    def build(args: list[str]) -> Command:
        if len(args) > 1:
            raise _Bad("Noise after message number")
        return cls(_number(args[0])) if args else cls()
    return build


def _one_msg(cls: type[Command]):
    def build(args: list[str]) -> Command:
        if not args:
            raise _Bad("Missing message number")
        if len(args) > 1:
            raise _Bad("Noise after message number")
        return cls(_number(args[0]))
    return build


def _top(args: list[str]) -> Command:
    if len(args) != 2:
        raise _Bad("TOP takes a message number and a number of lines")
    return Top(_number(args[0]), _number(args[1], "number of lines"))


def _user(args: list[str]) -> Command:
    if len(args) != 1:
        raise _Bad("USER takes one argument: the user name")
    return User(args[0])


def _auth(args: list[str]) -> Command:
    if not args:
        return Auth(None)
    if len(args) > 2:
        raise _Bad("AUTH takes a mechanism and an optional initial response")
    return Auth(args[0].upper(), args[1] if len(args) == 2 else None)


_BUILDERS = {
    "USER": _user,
    "AUTH": _auth,
    "STAT": _no_args(Stat),
    "LIST": _optional_msg(List),
    "UIDL": _optional_msg(Uidl),
    "RETR": _one_msg(Retr),
    "DELE": _one_msg(Dele),
    "TOP": _top,
    "NOOP": _no_args(Noop),
    "RSET": _no_args(Rset),
    "QUIT": _no_args(Quit),
    "CAPA": _no_args(Capa),
    "STLS": _no_args(Stls),
}
_PAUSING = (Stls, Auth, Quit)


def parse_line(line: bytes) -> Command | BadCommand:
    """One command line (without its line end) -> its command, or why not."""
    if b"\0" in line:
        return BadCommand("NUL in command line")
    text = line.decode("utf-8", "surrogateescape")
    keyword, sep, rest = text.partition(" ")
    keyword = keyword.upper()
    if not keyword:
        return BadCommand("Empty command")
    if not (keyword.isascii() and keyword.isalpha() and len(keyword) <= 4):
        return BadCommand("Unknown command")
    if keyword == "PASS":
        # The password is the rest of the line, spaces and all (RFC 1939 7).
        if not sep or not rest:
            return BadCommand("PASS takes the password")
        return Pass(rest)
    build = _BUILDERS.get(keyword)
    if build is None:
        return BadCommand(f"Unknown command: {keyword}")
    try:
        return build(rest.split())
    except _Bad as e:
        return BadCommand(str(e))


class CommandReader:
    def __init__(self, max_line: int = MAX_LINE, pause_after: tuple[type, ...] = ()) -> None:
        """pause_after: further commands to pause after (the login process
        pauses after PASS: what follows may be for the mail process)."""
        self.max_line = max_line
        self._pausing = _PAUSING + tuple(pause_after)
        self._buf = bytearray()
        self._scan = 0  # no LF in _buf before this offset
        self._paused = False
        self._raw = False  # the next line is for expect_line(), not a command
        self._skipping = False  # inside an over-long line, dropping it up to its LF

    @property
    def paused(self) -> bool:
        return self._paused

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        return self._events()

    def resume(self) -> list[Event]:
        """Back to commands after a pause (or after expect_line())."""
        self._paused = self._raw = False
        return self._events()

    def expect_line(self) -> list[Event]:
        """The next line is a raw `Line` (a SASL response), then the reader pauses again."""
        self._paused, self._raw = False, True
        return self._events()

    def take_buffered(self) -> bytes:
        """Drop and return whatever was received but not yet read as a line."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        self._skipping = False
        return data

    def _limit(self) -> int:
        return MAX_RESPONSE_LINE if self._raw else self.max_line

    def _events(self) -> list[Event]:
        out: list[Event] = []
        while not self._paused:
            end = self._buf.find(b"\n", self._scan)
            if end < 0:
                if len(self._buf) > self._limit():
                    # Keep nothing of an over-long line but the fact that it was one.
                    self._skipping = True
                    self._buf.clear()
                self._scan = len(self._buf)
                break
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._scan = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            too_long = self._skipping or len(line) + 2 > self._limit()
            self._skipping = False
            if self._raw:
                # One line only, then the session decides again.
                ev: Event = BadCommand("Line too long") if too_long else Line(line)
                self._raw = False
                self._paused = True
            elif too_long:
                ev = BadCommand("Line too long")
            else:
                ev = parse_line(line)
                if isinstance(ev, self._pausing):
                    self._paused = True
            out.append(ev)
        return out
