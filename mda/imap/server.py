"""mdad's imap process: IMAP on 143 (STARTTLS) and 993 (implicit TLS).

The wire: sockets, TLS, timeouts, and the reader's pauses (literals,
STARTTLS, IDLE, AUTHENTICATE). What each command means is the session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from common import child, connections, connlimits, descriptors, ipc, log, tls
from common.child import ChildContext
from common.clientaddr import is_loopback
from common.config import Config
from common.supervisor import LISTEN_BACKLOG
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

# Before login a client gets little time and few mistakes: LOGIN_TIMEOUT
# between two reads, limits.login_timeout in all.
LOGIN_TIMEOUT = 60.0
MAX_BAD = 20
STOP_GRACE = 10.0


# What a client over a connection cap is told before the close.
REFUSED = {
    connlimits.PER_CLIENT: R.bye("Too many connections from your address", "UNAVAILABLE"),
    connlimits.TOTAL: R.bye("Too many connections, try again later", "UNAVAILABLE"),
}
# A connection that could not be accepted for want of descriptors.
NO_DESCRIPTORS = R.bye("Server too busy, try again later", "UNAVAILABLE")


class Closed(Exception):
    pass


class Connection:
    def __init__(self, server: IMAPServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, secure: bool) -> None:
        self.server = server
        self.cfg = server.cfg
        self.reader = reader
        self.writer = writer
        self.secure = secure
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else "local"
        self.session = Session(self.cfg, server.auth, server.watchers, self)
        self.parser = CommandReader(self.session.literal_limits())
        self.events: list[Event] = []
        self.bad = 0
        self.login_deadline = asyncio.get_running_loop().time() + self.cfg.limits.login_timeout
        self.user_slot: connlimits.Slot | None = None
        self.closing = False  # the last answer is written: close the connection
        # Between commands (or in IDLE) a stop may end the session at once.
        self.busy = False
        self.log = log.get().bind(client=self.peer)

    # -- what the session asks of the wire ------------------------------------

    @property
    def loopback(self) -> bool:
        return is_loopback(self.peer)

    @property
    def plaintext_ok(self) -> bool:
        """Whether a password may be sent on this connection."""
        return self.secure or (self.cfg.imap.plaintext_on_loopback and self.loopback)

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
        timeout = self.cfg.imap.idle_timeout if self.session.user else LOGIN_TIMEOUT
        expired = R.bye("Autologout; idle for too long")
        if not self.session.user:
            left = self.login_deadline - asyncio.get_running_loop().time()
            if left < timeout:
                timeout, expired = max(0.0, left), R.bye("Login timeout")
        await self.writer.drain()
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            await self.write(expired)
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

    async def run(self) -> None:
        await self.write(R.ok(None, "mailpair IMAP ready",
                              R.code("CAPABILITY", *self.session.capabilities())))
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
            self.bad += 1
            await self.write(R.bad(ev.tag, ev.message))
            if self.bad >= MAX_BAD and not self.session.user:
                await self.write(R.bye("Too many bad commands"))
                raise Closed

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
        if self.secure:
            await self.write(R.bad(cmd.tag, "TLS is already active"))
            self.resume()
            return
        await self.write(R.ok(cmd.tag, "Begin TLS negotiation now"))
        await self.writer.drain()
        # Anything sent before the handshake was sent in the clear: never obey it.
        self.parser.take_buffered()
        self.events.clear()
        # asyncio's StreamReader would keep bytes it already buffered across the
        # upgrade and hand them out as if they came over TLS (CVE-2011-0411's
        # injection): drop them, with no await between this and start_tls.
        buffered = getattr(self.reader, "_buffer", None)
        if buffered:
            self.log.info("dropped plaintext sent after STARTTLS", octets=len(buffered))
            buffered.clear()
        try:
            await self.writer.start_tls(self.server.tls_context)
        except (ssl.SSLError, ConnectionError, OSError) as e:
            self.log.info("TLS handshake failed", error=str(e))
            raise Closed from None
        self.secure = True
        self.resume()

    async def authenticate(self, cmd: Authenticate) -> None:
        try:
            if self.session.user:
                await self.write(R.bad(cmd.tag, "Already logged in"))
                return
            if cmd.mechanism != "PLAIN":
                await self.write(R.no(cmd.tag, "Unsupported mechanism"))
                return
            blob = cmd.initial_response
            if blob is None:
                await self.write(R.continuation(""))
                line = await self.next_line()
                if line.strip() == b"*":
                    await self.write(R.bad(cmd.tag, "AUTHENTICATE cancelled"))
                    return
                blob = line.decode("ascii", "replace").strip()
            async for out in self.session.authenticate_plain(cmd.tag, blob):
                await self.write(out)
        finally:
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
    def __init__(self, cfg: Config, context: ssl.SSLContext) -> None:
        self.cfg = cfg
        self.tls_context = context
        self.auth = ipc.Client(cfg.paths.run / "mda" / "auth.sock", timeout=30)
        self.watchers = Watchers()
        self.servers: list[asyncio.Server] = []
        self.connections: dict[asyncio.Task, Connection] = {}
        self.stopping = False
        self.gate = connlimits.connections(cfg.limits)
        self.user_gate = connlimits.user_connections(cfg.limits)

    async def start(self, plain: list, implicit: list) -> None:
        for sock in plain + implicit:
            sock.setblocking(False)
            secure = sock in implicit
            descriptors.answer_when_out(sock, None if secure else NO_DESCRIPTORS)
            self.servers.append(await asyncio.start_server(
                lambda r, w, s=secure: self._serve(r, w, s), sock=sock,
                ssl=self.tls_context if secure else None, limit=1 << 20,
                backlog=LISTEN_BACKLOG))

    async def _serve(self, reader, writer, secure: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        try:
            slot = self.gate.admit(str(peer[0]) if isinstance(peer, tuple) else "local",
                                   service="imap")
        except connlimits.Refused as e:
            writer.write(REFUSED[e.reason])
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()
            return
        try:
            conn = Connection(self, reader, writer, secure)
            self.connections[task] = conn
            await conn.run()
        except Exception:
            log.get().exception("imap connection failed")
        finally:
            self.connections.pop(task, None)
            slot.release()

    async def stop(self, retiring: bool) -> None:
        """Retiring after a reload: sessions go on here until their clients end them
        (a new process takes new ones). Stopping: idle sessions are told BYE now,
        a command in progress finishes first (within the grace)."""
        self.stopping = not retiring
        await connections.end_all(self.servers, self.connections, retiring=retiring,
                                  grace=STOP_GRACE, after_cancel=1)  # a cancelled handler says BYE
        self.watchers.close()


async def main(ctx: ChildContext) -> None:
    assert ctx.tls_pem is not None, "the parent hands the imap process its certificate"
    server = IMAPServer(ctx.cfg, tls.context_from_pem(ctx.tls_pem))
    await server.start(ctx.sockets.get("imap", []), ctx.sockets.get("imaps", []))
    log.get().info("ready")
    await ctx.stopping.wait()
    await server.stop(retiring=ctx.retiring)
    log.get().info("stopped")


if __name__ == "__main__":
    child.run("mdad", "imap", main)
