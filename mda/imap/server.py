"""mdad's imap process: the IMAP sessions of logged-in users.

It holds no port and no TLS key: the imap-login process (mda/login/imap.py)
speaks everything before authentication, then hands each connection over on
<run>/mda-login/imap-mail.sock (mda/login/handover.py): the client's socket,
or for TLS one end of a socketpair the login process proxies, with the tag of
the LOGIN, the login token and the bytes the client sent after it. This
process redeems the token with the auth process, admits the user, answers
the tagged OK and serves the session; when it refuses (over a connection
limit) its answer goes back to the login process to send.

The wire: timeouts and the reader's pauses (literals, IDLE). What each
command means is the session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

from common import child, connections, connlimits, ipc, log
from common.child import ChildContext
from common.config import Config
from mda.imap import response as R
from mda.imap.commands import Authenticate, Command, Idle, Logout, StartTLS
from mda.imap.events import (
    BadCharset,
    BadCommand,
    Event,
    Line,
    LiteralTooLarge,
    NeedContinuation,
)
from mda.imap.parser import CommandReader
from mda.imap.session import Session
from mda.imap.watch import Watchers
from mda.login import handover

STOP_GRACE = 10.0

# What a client over a connection cap is told before the close.
REFUSED = {
    connlimits.PER_CLIENT: R.bye("Too many connections from your address", "UNAVAILABLE"),
    connlimits.TOTAL: R.bye("Too many connections, try again later", "UNAVAILABLE"),
}


class Closed(Exception):
    pass


class Connection:
    def __init__(self, server: IMAPServer, peer: str, secure: bool) -> None:
        self.server = server
        self.cfg = server.cfg
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.secure = secure
        self.peer = peer
        self.session = Session(self.cfg, server.watchers, self)
        self.parser = CommandReader(self.session.literal_limits())
        self.events: list[Event] = []
        self.user_slot: connlimits.Slot | None = None
        self.closing = False  # the last answer is written: close the connection
        # Between commands (or in IDLE) a stop may end the session at once.
        self.busy = False
        self.log = log.get().bind(client=self.peer)

    # -- what the session asks of the wire ------------------------------------

    def admit_user(self, user: str) -> bool:
        """Asked just before a login is answered OK: False when this user has too
        many sessions from this address already (the session answers BYE instead)."""
        try:
            self.user_slot = self.server.user_gate.admit(self.peer, user.lower(), user=user,
                                                         service="imap")
        except connlimits.Refused:
            self.closing = True
            return False
        return True

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > 256 * 1024:
            await self.writer.drain()

    # -- reading -----------------------------------------------------------------

    async def _read(self) -> bytes:
        assert self.reader is not None and self.writer is not None
        await self.writer.drain()
        try:
            data = await asyncio.wait_for(self.reader.read(65536), self.cfg.imap.idle_timeout)
        except TimeoutError:
            await self.write(R.bye("Autologout; idle for too long"))
            raise Closed from None
        except (ConnectionError, ssl.SSLError):
            raise Closed from None
        if not data:
            raise Closed
        return data

    async def next_event(self) -> Event:
        while not self.events:
            self.events.extend(self.parser.feed(await self._read()))
        return self.events.pop(0)

    async def next_line(self) -> bytes:
        """The next raw line (IDLE's DONE, a SASL response); the reader is paused."""
        self.events.extend(self.parser.expect_line())
        ev = await self.next_event()
        if not isinstance(ev, Line):
            raise Closed  # the reader promised a line: anything else is a broken client
        return ev.data

    def resume(self) -> None:
        self.events.extend(self.parser.resume())

    # -- the loop ------------------------------------------------------------------

    async def run(self, sock: socket.socket, first: bytes, pending: bytes) -> None:
        """The session after its login: `first` is the tagged OK, `pending`
        what the client sent after the LOGIN (pipelined commands)."""
        try:
            self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        except OSError:
            sock.close()
            await self.session.close()
            if self.user_slot is not None:
                self.user_slot.release()
            return
        await self.write(first)
        self.events.extend(self.parser.feed(pending))
        try:
            while True:
                ev = await self.next_event()
                self.busy = True
                if isinstance(ev, Command):
                    await self.command(ev)
                    # A login raises the literal limits for the commands after it.
                    self.parser.limits = self.session.literal_limits()
                else:
                    await self.refuse(ev)
                self.busy = False
                if self.closing or self.session.closing:  # its answer ended with a BYE
                    await self.writer.drain()
                    raise Closed
                if self.server.stopping:
                    await self.write(R.bye("Server shutting down, reconnect"))
                    raise Closed
        except Closed:
            pass
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self.writer.write(R.bye("Server shutting down, reconnect"))
            raise
        finally:
            await self.session.close()
            if self.user_slot is not None:
                self.user_slot.release()
            with contextlib.suppress(Exception):
                self.writer.close()

    async def refuse(self, ev: Event) -> None:
        if isinstance(ev, NeedContinuation):
            # Within the limits: the reader refused any literal over them.
            await self.write(R.continuation("Ready for literal data"))
            self.resume()
            return
        if isinstance(ev, BadCharset):
            await self.write(R.no(ev.tag, "Unsupported charset",
                                  R.code("BADCHARSET", "(UTF-8 US-ASCII)")))
            return
        if isinstance(ev, LiteralTooLarge):
            replies, close = self.session.literal_refusal(ev)
            for out in replies:
                await self.write(out)
            if close:
                await self.writer.drain()
                raise Closed
            return
        if isinstance(ev, BadCommand):
            await self.write(R.bad(ev.tag, ev.message))

    async def command(self, cmd: Command) -> None:
        if isinstance(cmd, StartTLS):
            await self.starttls(cmd)
        elif isinstance(cmd, Idle):
            await self.idle(cmd)
        elif isinstance(cmd, Authenticate):
            await self.authenticate(cmd)
        elif isinstance(cmd, Logout):
            await self.write(R.bye("Logging out"))
            await self.write(R.ok(cmd.tag, "LOGOUT completed"))
            await self.writer.drain()
            raise Closed
        else:
            try:
                async for out in self.session.execute(cmd):
                    await self.write(out)
            except (Closed, asyncio.CancelledError):
                raise
            except Exception:
                # One command's failure is that command's answer, not the session's end.
                self.log.exception("command failed", command=cmd.name)
                await self.write(R.no(cmd.tag, "Internal error", R.code("SERVERBUG")))

    async def starttls(self, cmd: StartTLS) -> None:
        # TLS, if any, is the login process's: after login there is no upgrade.
        await self.write(R.bad(cmd.tag, "STARTTLS is only valid before login"))
        self.resume()

    async def authenticate(self, cmd: Authenticate) -> None:
        await self.write(R.bad(cmd.tag, "Already logged in"))
        self.resume()

    async def idle(self, cmd: Idle) -> None:
        problem = self.session.idle_problem(cmd)
        if problem is not None:
            await self.write(problem)
            self.resume()
            return
        await self.write(R.continuation("idling"))
        changed = asyncio.Event()
        stop_watching = self.session.watch(changed.set)
        self.events.extend(self.parser.expect_line())
        try:
            for out in await self.session.updates():
                await self.write(out)
            read: asyncio.Future | None = None
            while not self.events:
                if read is None:
                    read = asyncio.ensure_future(self._read())
                wake = asyncio.ensure_future(changed.wait())
                done, _ = await asyncio.wait({read, wake}, return_when=asyncio.FIRST_COMPLETED)
                if read in done:
                    wake.cancel()
                    self.events.extend(self.parser.feed(read.result()))
                    read = None
                else:
                    changed.clear()
                    for out in await self.session.updates():
                        await self.write(out)
                    await self.writer.drain()
            ev = self.events.pop(0)
        finally:
            stop_watching()
        self.resume()
        if not (isinstance(ev, Line) and ev.data.strip().upper() == b"DONE"):
            await self.write(R.bad(cmd.tag, "Expected DONE"))
            return
        await self.write(R.ok(cmd.tag, "IDLE terminated"))


class IMAPServer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.auth = ipc.Client(cfg.paths.run / "mda" / "auth.sock", timeout=30)
        self.watchers = Watchers()
        self.handovers: ipc.Server | None = None
        self.connections: dict[asyncio.Task, Connection] = {}
        self.stopping = False
        self.gate = connlimits.connections(cfg.limits)
        self.user_gate = connlimits.user_connections(cfg.limits)

    async def start(self, sock: socket.socket) -> None:
        self.handovers = await ipc.serve(sock, {"session": ipc.takes_fds(self._take)})

    async def _take(self, args: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        """A connection handed over by the login process: serve it, or say no."""
        given = await handover.receive(args, fds, self.auth)
        if isinstance(given, bytes):  # the token was no good
            return handover.refuse(R.bye("Internal error, try again", "UNAVAILABLE"), close=True)
        try:
            slot = self.gate.admit(given.peer, service="imap")
        except connlimits.Refused as e:
            given.sock.close()
            return handover.refuse(REFUSED[e.reason], close=True)
        conn = Connection(self, given.peer, given.secure)
        try:
            first = await conn.session.begin(str(args.get("tag", "")), given.user)
        except Exception:
            log.get().exception("cannot open the mailbox", user=given.user)
            first = R.no(str(args.get("tag", "")), "Cannot open the mailbox, try again later",
                         R.code("UNAVAILABLE"))
        if conn.session.user is None:
            slot.release()
            if conn.user_slot is not None:
                conn.user_slot.release()
            given.sock.close()  # the login process keeps the client
            return handover.refuse(first, close=conn.closing)
        task = asyncio.create_task(self._serve(conn, slot, given, first))
        self.connections[task] = conn
        return handover.ACCEPTED

    async def _serve(self, conn: Connection, slot: connlimits.Slot,
                     given: handover.Received, first: bytes) -> None:
        task = asyncio.current_task()
        try:
            await conn.run(given.sock, first, given.pending)
        except Exception:
            log.get().exception("imap connection failed")
        finally:
            self.connections.pop(task, None)  # type: ignore[arg-type]
            slot.release()

    async def stop(self, retiring: bool) -> None:
        """Retiring after a reload: sessions go on here until their clients end them
        (a new process takes new ones). Stopping: idle sessions are told BYE now,
        a command in progress finishes first (within the grace)."""
        self.stopping = not retiring
        if self.handovers is not None:
            await self.handovers.drain()
        await connections.end_all([], self.connections, retiring=retiring,
                                  grace=STOP_GRACE, after_cancel=1)  # a cancelled handler says BYE
        self.watchers.close()
        await self.auth.close()


async def main(ctx: ChildContext) -> None:
    server = IMAPServer(ctx.cfg)
    (sock,) = ctx.sockets["handover"]
    await server.start(sock)
    log.get().info("ready")
    await ctx.stopping.wait()
    await server.stop(retiring=ctx.retiring)
    log.get().info("stopped")


if __name__ == "__main__":
    child.run("mdad", "imap", main)
