"""One frozen dataclass per IMAP command, as `CommandReader` hands them out.

Values are already checked and normalized: names and keywords upper-cased,
mailbox names decoded from modified UTF-7 with INBOX in capitals, system
flags in their canonical case (`\\Seen`), strings that stand for text
decoded as UTF-8 (undecodable bytes kept as surrogate escapes, so
`s.encode("utf-8", "surrogateescape")` gives back the client's bytes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .events import Event
from .fetchitems import FetchAtt
from .searchkeys import SearchKey
from .seqset import SequenceSet


@dataclass(frozen=True)
class Command(Event):
    tag: str

    NAME: ClassVar[str] = ""

    @property
    def name(self) -> str:
        """The command as the client named it (`UID FETCH`, `EXAMINE`)."""
        return ("UID " if getattr(self, "uid", False) else "") + self.NAME


# Commands without arguments.


@dataclass(frozen=True)
class Capability(Command):
    NAME: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True)
class Noop(Command):
    NAME: ClassVar[str] = "NOOP"


@dataclass(frozen=True)
class Logout(Command):
    NAME: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True)
class StartTLS(Command):
    """The reader pauses after it: see `CommandReader.take_buffered`."""

    NAME: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True)
class Check(Command):
    NAME: ClassVar[str] = "CHECK"


@dataclass(frozen=True)
class Close(Command):
    NAME: ClassVar[str] = "CLOSE"


@dataclass(frozen=True)
class Unselect(Command):
    NAME: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True)
class Idle(Command):
    """The reader pauses after it; `expect_line()` then reads the DONE."""

    NAME: ClassVar[str] = "IDLE"


@dataclass(frozen=True)
class Namespace(Command):
    NAME: ClassVar[str] = "NAMESPACE"


# Not authenticated state.


@dataclass(frozen=True)
class Authenticate(Command):
    """`initial_response` is the SASL-IR base64 text, "" for `=`, None if absent.

    The reader pauses after it; `expect_line()` reads each client response.
    """

    mechanism: str
    initial_response: str | None = None

    NAME: ClassVar[str] = "AUTHENTICATE"


@dataclass(frozen=True)
class Login(Command):
    username: str
    password: str

    NAME: ClassVar[str] = "LOGIN"


# Authenticated state.


@dataclass(frozen=True)
class Select(Command):
    """SELECT, or EXAMINE when `readonly`; `condstore` for `(CONDSTORE)`."""

    mailbox: str
    readonly: bool = False
    condstore: bool = False

    NAME: ClassVar[str] = "SELECT"

    @property
    def name(self) -> str:
        return "EXAMINE" if self.readonly else "SELECT"


@dataclass(frozen=True)
class Create(Command):
    """`special_use`: the RFC 6154 `(USE (\\Sent ...))` attributes, if any."""

    mailbox: str
    special_use: tuple[str, ...] = ()

    NAME: ClassVar[str] = "CREATE"


@dataclass(frozen=True)
class Delete(Command):
    mailbox: str

    NAME: ClassVar[str] = "DELETE"


@dataclass(frozen=True)
class Rename(Command):
    mailbox: str
    new_name: str

    NAME: ClassVar[str] = "RENAME"


@dataclass(frozen=True)
class Subscribe(Command):
    mailbox: str

    NAME: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True)
class Unsubscribe(Command):
    mailbox: str

    NAME: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True)
class List(Command):
    """LIST, basic or extended (RFC 5258, 5819, 6154).

    `select_options` ⊆ {SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE};
    `return_options` ⊆ {SUBSCRIBED, CHILDREN, SPECIAL-USE} (STATUS is not in
    it: `status_items` is the STATUS list, None when not asked). `extended`
    says the client used the RFC 5258 syntax, which changes some answers
    (CHILDINFO, \\NonExistent). Patterns keep their `*` and `%`.
    """

    reference: str
    patterns: tuple[str, ...]
    select_options: frozenset[str] = frozenset()
    return_options: frozenset[str] = frozenset()
    status_items: tuple[str, ...] | None = None
    extended: bool = False

    NAME: ClassVar[str] = "LIST"


@dataclass(frozen=True)
class Lsub(Command):
    reference: str
    pattern: str

    NAME: ClassVar[str] = "LSUB"


@dataclass(frozen=True)
class Status(Command):
    """`items` ⊆ MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ, in order."""

    mailbox: str
    items: tuple[str, ...]

    NAME: ClassVar[str] = "STATUS"


@dataclass(frozen=True)
class Append(Command):
    """`date` is the optional internal date, timezone-aware."""

    mailbox: str
    message: bytes
    flags: tuple[str, ...] = ()
    date: datetime | None = None

    NAME: ClassVar[str] = "APPEND"


@dataclass(frozen=True)
class Enable(Command):
    capabilities: tuple[str, ...]

    NAME: ClassVar[str] = "ENABLE"


@dataclass(frozen=True)
class Id(Command):
    """`params` is None for `ID NIL`, else (field, value) pairs in order."""

    params: tuple[tuple[str, str | None], ...] | None

    NAME: ClassVar[str] = "ID"


# Selected state.


@dataclass(frozen=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE (RFC 4315) when `uids` is given."""

    uids: SequenceSet | None = None

    NAME: ClassVar[str] = "EXPUNGE"

    @property
    def name(self) -> str:
        return "EXPUNGE" if self.uids is None else "UID EXPUNGE"


@dataclass(frozen=True)
class Search(Command):
    """`return_options` is None for a plain SEARCH (answer `* SEARCH`), else
    the ESEARCH options ⊆ {MIN, MAX, ALL, COUNT}; `RETURN ()` gives {ALL}.
    `charset` is "UTF-8", "US-ASCII" or None; others give `BadCharset`."""

    program: SearchKey
    uid: bool = False
    charset: str | None = None
    return_options: frozenset[str] | None = None

    NAME: ClassVar[str] = "SEARCH"


@dataclass(frozen=True)
class Fetch(Command):
    """`items` has the macros (ALL, FAST, FULL) expanded, in order, without
    duplicates. RFC 7162 wants MODSEQ in the answer when `changedsince` is
    set, and UID FETCH always answers UID: the session adds those."""

    sequence: SequenceSet
    items: tuple[FetchAtt, ...]
    uid: bool = False
    changedsince: int | None = None

    NAME: ClassVar[str] = "FETCH"


class StoreMode(enum.Enum):
    REPLACE = "FLAGS"
    ADD = "+FLAGS"
    REMOVE = "-FLAGS"


@dataclass(frozen=True)
class Store(Command):
    sequence: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchangedsince: int | None = None

    NAME: ClassVar[str] = "STORE"


@dataclass(frozen=True)
class Copy(Command):
    sequence: SequenceSet
    mailbox: str
    uid: bool = False

    NAME: ClassVar[str] = "COPY"


@dataclass(frozen=True)
class Move(Command):
    sequence: SequenceSet
    mailbox: str
    uid: bool = False

    NAME: ClassVar[str] = "MOVE"
