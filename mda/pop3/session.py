"""The rules of one POP3 session: AUTHORIZATION, TRANSACTION, UPDATE (RFC 1939).

The session answers each command with the bytes to send; the server does
the wire (STLS, the SASL exchange, closing). Passwords are checked by an
`Authenticator` (the auth process, over IPC); the maildrop comes from an
`opener` that blocks and so runs in a worker thread. Both can be fakes, so
the rules are tested without sockets or daemons.

mdad runs the AUTHORIZATION state in the pop3-login process, whose session
has a `handover` instead of an opener: a good password passes the
connection to the pop3 process, which starts its own session there with
`start(account)` (mda/login/handover.py).

What a client can rely on:
- numbers, sizes and UIDLs refer to the list taken at login, for the whole
  session; sizes are those of the CRLF bytes RETR sends;
- DELE only marks: messages are deleted in the UPDATE state, after QUIT. A
  session that ends any other way (a dropped connection, a timeout, a
  shutdown) deletes nothing;
- RETR marks a message \\Seen, at the end of the session (as Dovecot does by
  default), TOP does not;
- no password is taken over a connection in the clear, unless the server
  allows it (loopback with `plaintext_on_loopback`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from common import log, sasl
from mda.pop3 import parser as P
from mda.pop3.maildrop import InUse
from mda.store.errors import MessageGone

AUTHORIZATION, TRANSACTION, UPDATE = "AUTHORIZATION", "TRANSACTION", "UPDATE"
# Mistakes before the connection is closed: a real client makes none, a
# scanner or a confused script would otherwise hold the connection forever.
MAX_BAD = 20
MECHANISMS = ("PLAIN",)
# Clients fetch in order: after RETR n (or TOP n) the messages from n + 1 on
# are read in the background, as many as fit in READ_AHEAD_MAX bytes (at most
# READ_AHEAD_COUNT), in one worker-thread call. The next RETRs find their bytes
# ready: a hop to a worker thread and back costs more than reading a small
# message, so it is paid once for a run of them.
READ_AHEAD_MAX = 1024 * 1024
READ_AHEAD_COUNT = 32
IMPLEMENTATION = "mailpair"
PLAINTEXT_REFUSED = "Use STLS first: no password is accepted before TLS"


@dataclass
class Ahead:
    """Messages being read ahead: their numbers, and uid -> bytes once read."""

    numbers: frozenset[int]
    reading: asyncio.Future[dict[int, bytes]]


class AuthUnavailable(Exception):
    """The password could not be checked (the auth process did not answer)."""


class Authenticator(Protocol):
    """The auth process decides, delays and logs every refusal."""

    # Wrong passwords on one connection before it is closed (auth.failures_per_connection).
    failures_per_connection: int

    async def check(self, user: str, password: str, *, authzid: str = "",
                    address: str = "") -> str | None:
        """The account's canonical address, or None for a wrong user or password
        (or an authorization identity other than the user)."""
        ...


class Drop(Protocol):
    """What the session needs of a maildrop (maildrop.Maildrop, or a fake)."""

    messages: list[tuple[int, int]]  # (uid, size), message n is messages[n - 1]

    def uidl(self, uid: int) -> str: ...
    def read(self, uid: int) -> bytes: ...
    def read_many(self, uids: list[int]) -> dict[int, bytes]: ...
    def finish(self, deleted: list[int], seen: list[int]) -> int: ...
    def close(self) -> None: ...


def ok(text: str = "") -> bytes:
    return f"+OK {text}\r\n".encode() if text else b"+OK\r\n"


def err(text: str, code: str | None = None) -> bytes:
    """-ERR with an RFC 2449 response code when one applies ([IN-USE], [AUTH], [SYS/TEMP])."""
    prefix = f"[{code}] " if code else ""
    return f"-ERR {prefix}{text}\r\n".encode("utf-8", "replace")


def multiline(first: str, lines: list[str]) -> bytes:
    body = "".join(f"{line}\r\n" for line in lines)
    return f"+OK {first}\r\n{body}.\r\n".encode() if first else f"+OK\r\n{body}.\r\n".encode()


def messages(n: int) -> str:
    return "1 message" if n == 1 else f"{n} messages"


def dot_stuffed(data: bytes) -> bytes:
    """A multi-line body as RFC 1939 3 sends it: lines starting with "." get
    another, and the terminating ".\\r\\n" follows a complete last line."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\n.", b"\n..")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def top_part(data: bytes, lines: int) -> bytes:
    """The header, the empty line after it and the first `lines` body lines of
    a CRLF message (TOP). A message without an empty line is all header."""
    if data.startswith(b"\r\n"):
        pos = 2  # no header at all: the empty line comes first
    else:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return data
        pos = end + 4
    for _ in range(lines):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return data
        pos = nl + 1
    return data[:pos]


class Session:
    def __init__(self, authenticator: Authenticator | None,
                 opener: Callable[[str], Drop] | None, *,
                 secure: bool, plaintext_anyway: bool = False, peer: str = "",
                 admit: Callable[[str], bool] | None = None,
                 handover: Callable[[str], Awaitable[bytes]] | None = None) -> None:
        """plaintext_anyway: passwords are accepted in the clear (a loopback client
        with plaintext_on_loopback); secure: TLS is up (implicit, or after STLS);
        admit(account): False when the account has too many sessions already;
        handover(account): pass the connection on after a good password, and
        return b"" once it is gone or the reply to send when it came back."""
        self.authenticator = authenticator
        self.admit = admit
        self.opener = opener
        self.handover = handover
        self.secure = secure
        self.plaintext_anyway = plaintext_anyway
        self.state = AUTHORIZATION
        self.closing = False  # the server closes the connection after this answer
        self.pending_user: str | None = None  # USER given, PASS awaited
        self.account: str | None = None
        self.drop: Drop | None = None
        self.deleted: set[int] = set()  # message numbers
        self.retrieved: set[int] = set()  # UIDs
        self.bad = 0
        self.auth_failures = 0
        self._ahead: Ahead | None = None
        self.peer = peer
        self.log = log.get().bind(client=peer)
        self._handlers: dict[type, tuple[tuple[str, ...], Callable[[Any], Any]]] = {
            P.Capa: ((AUTHORIZATION, TRANSACTION), self.capa),
            P.Quit: ((AUTHORIZATION, TRANSACTION), self.quit),
            P.Noop: ((TRANSACTION,), self.noop),
            P.User: ((AUTHORIZATION,), self.user),
            P.Pass: ((AUTHORIZATION,), self.pass_),
            P.Stat: ((TRANSACTION,), self.stat),
            P.List: ((TRANSACTION,), self.list_),
            P.Uidl: ((TRANSACTION,), self.uidl),
            P.Retr: ((TRANSACTION,), self.retr),
            P.Top: ((TRANSACTION,), self.top),
            P.Dele: ((TRANSACTION,), self.dele),
            P.Rset: ((TRANSACTION,), self.rset),
        }

    # -- plumbing ------------------------------------------------------------------

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The store blocks (files, SQLite): it runs in a worker thread."""
        return await asyncio.to_thread(fn, *args)

    @property
    def plaintext_ok(self) -> bool:
        return self.secure or self.plaintext_anyway

    def greeting(self) -> bytes:
        return ok("mailpair POP3 ready.")

    def capabilities(self) -> list[str]:
        caps = ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"]
        if self.state == AUTHORIZATION:
            if not self.secure:
                caps.append("STLS")
            if self.plaintext_ok:
                caps += ["USER", "SASL " + " ".join(MECHANISMS)]
        caps.append(f"IMPLEMENTATION {IMPLEMENTATION}")
        return caps

    def _mistake(self, reply: bytes) -> bytes:
        self.bad += 1
        if self.bad >= MAX_BAD:
            self.closing = True
            return reply + err("Too many bad commands, closing the connection.")
        return reply

    def bad_command(self, ev: P.BadCommand) -> bytes:
        return self._mistake(err(ev.message))

    def tls_started(self) -> None:
        """After STLS: what was said in the clear is forgotten (RFC 2595 4)."""
        self.secure = True
        self.pending_user = None

    # -- dispatch ------------------------------------------------------------------

    async def execute(self, cmd: P.Command) -> bytes:
        """The answer to one command (STLS and AUTH go through their own methods)."""
        states, handler = self._handlers.get(type(cmd), ((), None))
        if handler is None or self.state not in states:
            return self._mistake(err(f"{cmd.name} is not valid in the {self.state} state"))
        return await handler(cmd)

    def _message(self, n: int) -> tuple[int, int] | bytes:
        """(uid, size) of message n, or the -ERR that says why not."""
        assert self.drop is not None
        if not 1 <= n <= len(self.drop.messages):
            return err(f"There is no message {n}.")
        if n in self.deleted:
            return err(f"Message {n} is deleted.")
        return self.drop.messages[n - 1]

    def _live(self) -> list[tuple[int, int, int]]:
        """(number, uid, size) of every message not marked deleted."""
        assert self.drop is not None
        return [(n, uid, size) for n, (uid, size) in enumerate(self.drop.messages, 1)
                if n not in self.deleted]

    # -- AUTHORIZATION ---------------------------------------------------------------

    async def capa(self, cmd: P.Capa) -> bytes:
        return multiline("Capability list follows", self.capabilities())

    async def user(self, cmd: P.User) -> bytes:
        if not self.plaintext_ok:
            return self._mistake(err(PLAINTEXT_REFUSED, "SYS/PERM"))
        self.pending_user = cmd.user
        return ok()

    async def pass_(self, cmd: P.Pass) -> bytes:
        if not self.plaintext_ok:
            return self._mistake(err(PLAINTEXT_REFUSED, "SYS/PERM"))
        user, self.pending_user = self.pending_user, None
        if user is None:
            return self._mistake(err("No user name: give USER first."))
        return await self._login(user, cmd.password)

    def stls_problem(self) -> bytes | None:
        """None when STLS may start now, else its -ERR."""
        if self.state != AUTHORIZATION:
            return self._mistake(err("STLS is only valid before logging in."))
        if self.secure:
            return self._mistake(err("TLS is already active."))
        return None

    def auth_mechanisms(self) -> bytes:
        """AUTH without a mechanism: the list, as RFC 1734 servers answered."""
        return multiline("", list(MECHANISMS) if self.plaintext_ok else [])

    def auth_problem(self, cmd: P.Auth) -> bytes | None:
        """None when the SASL exchange may go on, else its -ERR."""
        if self.state != AUTHORIZATION:
            return self._mistake(err("Already logged in."))
        if not self.plaintext_ok:
            return self._mistake(err(PLAINTEXT_REFUSED, "SYS/PERM"))
        if cmd.mechanism not in MECHANISMS:
            return self._mistake(err(f"Unsupported authentication mechanism: "
                                     f"{(cmd.mechanism or '')[:20]}"))
        return None

    def auth_cancelled(self) -> bytes:
        return err("Authentication cancelled.")

    async def auth_plain(self, response: str) -> bytes:
        """The client's PLAIN response (base64; "=" is an empty one, RFC 5034 4)."""
        try:
            blob = b"" if response == "=" else sasl.decode(response)
            authzid, user, password = sasl.parse_plain(blob)
        except sasl.SASLError as e:
            return self._mistake(err(str(e)))
        return await self._login(user, password, authzid)

    def _failed(self) -> bytes:
        assert self.authenticator is not None
        self.auth_failures += 1
        if self.auth_failures >= self.authenticator.failures_per_connection:
            self.closing = True
            return err("Authentication failed; too many failures, closing.", "AUTH")
        return err("Authentication failed.", "AUTH")

    async def _login(self, user: str, password: str, authzid: str = "") -> bytes:
        assert self.authenticator is not None
        try:
            account = await self.authenticator.check(user, password, authzid=authzid,
                                                     address=self.peer)
        except AuthUnavailable as e:
            self.log.error("authentication lookup failed", error=str(e))
            return err("Temporary authentication failure, try again later.", "SYS/TEMP")
        if account is None:
            return self._failed()
        if self.handover is not None:
            return await self.handover(account)
        return await self.start(account)

    async def start(self, account: str) -> bytes:
        """Log the authenticated account in: the +OK, or the -ERR that says why
        not (the state stays AUTHORIZATION then)."""
        assert self.opener is not None
        if self.admit is not None and not self.admit(account):
            self.closing = True
            return err("Too many connections for this user from your address.", "SYS/TEMP")
        try:
            drop = await self.run(self.opener, account)
        except InUse:
            self.log.info("maildrop in use", user=account)
            return err("Mailbox is locked by another POP3 session.", "IN-USE")
        except Exception:
            self.log.exception("cannot open the maildrop", user=account)
            return err("Cannot open the mailbox, try again later.", "SYS/TEMP")
        self.drop, self.account, self.state = drop, account, TRANSACTION
        self.log = self.log.bind(user=account)
        count, octets = len(drop.messages), sum(s for _, s in drop.messages)
        self.log.info("logged in", messages=count, octets=octets)
        return ok(f"Logged in, {messages(count)} ({octets} octets).")

    # -- TRANSACTION -------------------------------------------------------------------

    async def stat(self, cmd: P.Stat) -> bytes:
        live = self._live()
        return ok(f"{len(live)} {sum(size for _, _, size in live)}")

    async def list_(self, cmd: P.List) -> bytes:
        if cmd.msg is not None:
            found = self._message(cmd.msg)
            return found if isinstance(found, bytes) else ok(f"{cmd.msg} {found[1]}")
        live = self._live()
        total = sum(size for _, _, size in live)
        return multiline(f"{messages(len(live))} ({total} octets)",
                         [f"{n} {size}" for n, _, size in live])

    async def uidl(self, cmd: P.Uidl) -> bytes:
        assert self.drop is not None
        if cmd.msg is not None:
            found = self._message(cmd.msg)
            return found if isinstance(found, bytes) else ok(
                f"{cmd.msg} {self.drop.uidl(found[0])}")
        return multiline("", [f"{n} {self.drop.uidl(uid)}" for n, uid, _ in self._live()])

    async def _read(self, n: int) -> tuple[int, int, bytes] | bytes:
        found = self._message(n)
        if isinstance(found, bytes):
            return found
        uid, size = found
        assert self.drop is not None
        ahead = self._ahead
        data = None
        if ahead is not None and n in ahead.numbers:
            with contextlib.suppress(Exception):  # a failed read ahead: read it again
                data = (await ahead.reading).pop(uid, None)
        else:
            self._ahead = None
            await self._forget(ahead)
        if data is None:
            try:
                data = await self.run(self.drop.read, uid)
            except MessageGone:
                # An IMAP client expunged it during this session.
                return err(f"Message {n} was removed by another session.")
        if self._ahead is None or n + 1 not in self._ahead.numbers:
            self._read_ahead(n + 1)
        return uid, size, data

    def _read_ahead(self, n: int) -> None:
        assert self.drop is not None
        numbers, uids, total = [], [], 0
        for k in range(n, min(n + READ_AHEAD_COUNT, len(self.drop.messages) + 1)):
            uid, size = self.drop.messages[k - 1]
            if total + size > READ_AHEAD_MAX:
                break
            total += size
            if k not in self.deleted:
                numbers.append(k)
                uids.append(uid)
        if not uids:
            self._ahead = None
            return
        self._ahead = Ahead(frozenset(numbers),
                            asyncio.ensure_future(self.run(self.drop.read_many, uids)))

    async def _forget(self, ahead: Ahead | None) -> None:
        """Let a read ahead nobody wants finish (its thread uses the maildrop)."""
        if ahead is not None:
            with contextlib.suppress(Exception):
                await ahead.reading

    async def retr(self, cmd: P.Retr) -> bytes:
        got = await self._read(cmd.msg)
        if isinstance(got, bytes):
            return got
        uid, size, data = got
        self.retrieved.add(uid)
        return b"".join((ok(f"{size} octets"), dot_stuffed(data)))

    async def top(self, cmd: P.Top) -> bytes:
        got = await self._read(cmd.msg)
        if isinstance(got, bytes):
            return got
        return b"".join((ok(), dot_stuffed(top_part(got[2], cmd.lines))))

    async def dele(self, cmd: P.Dele) -> bytes:
        found = self._message(cmd.msg)
        if isinstance(found, bytes):
            return found
        self.deleted.add(cmd.msg)
        return ok(f"Message {cmd.msg} marked to be deleted.")

    async def noop(self, cmd: P.Noop) -> bytes:
        return ok()

    async def rset(self, cmd: P.Rset) -> bytes:
        self.deleted.clear()
        live = self._live()
        return ok(f"{messages(len(live))} ({sum(s for _, _, s in live)} octets).")

    # -- QUIT and UPDATE ---------------------------------------------------------------

    async def quit(self, cmd: P.Quit) -> bytes:
        self.closing = True
        if self.state == AUTHORIZATION:
            return ok("Logging out.")
        self.state = UPDATE
        ahead, self._ahead = self._ahead, None
        await self._forget(ahead)
        drop, self.drop = self.drop, None
        assert drop is not None
        doomed = [drop.messages[n - 1][0] for n in sorted(self.deleted)]
        try:
            removed = await self.run(drop.finish, doomed, sorted(self.retrieved))
        except Exception:
            self.log.exception("deleting messages failed", count=len(doomed))
            return err("Some deleted messages were not removed.", "SYS/TEMP")
        finally:
            await self.run(drop.close)
        self.log.info("logged out", retrieved=len(self.retrieved), deleted=removed)
        if doomed:
            return ok(f"Logging out, {messages(len(doomed))} deleted.")
        return ok("Logging out.")

    async def close(self) -> None:
        """The session ends without QUIT: nothing is deleted, RETR still marks \\Seen."""
        ahead, self._ahead = self._ahead, None
        await self._forget(ahead)
        drop, self.drop = self.drop, None
        if drop is None:
            return
        try:
            if self.retrieved:
                await self.run(drop.finish, [], sorted(self.retrieved))
        except Exception:
            self.log.exception("marking retrieved messages seen failed")
        finally:
            await self.run(drop.close)
        self.log.info("connection ended without QUIT: nothing deleted",
                      retrieved=len(self.retrieved), marked=len(self.deleted))
