"""mdad's pop3 process: the POP3 sessions of logged-in users.

It holds no port and no TLS key: the pop3-login process (mda/login/pop3.py)
runs the AUTHORIZATION state on 110 (STLS) and 995 (implicit TLS) with the
same `Connection` as here, then hands each connection over on
<run>/mda-login/pop3-mail.sock (mda/login/handover.py). This process
redeems the login token, opens the maildrop and answers the +OK; a refusal
(the maildrop in use, too many connections of the user) goes back to the
login process to send, and the client may try again there.

The wire: timeouts, the reader's pauses (STLS, the SASL exchange of AUTH,
QUIT). What each command means is the session's.
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
from common.tlsstream import Stream
from mda.login import handover
from mda.pop3 import parser as P
from mda.pop3.maildrop import Maildrop
from mda.pop3.session import Session, err
from mda.store.maildir import maildir_path

# Before login a client gets little time; RFC 1939 3 wants at least ten
# minutes once logged in (idle_timeout, 600 s by default).
LOGIN_TIMEOUT = 60.0
HANDSHAKE_TIMEOUT = 30.0
STOP_GRACE = 10.0
WRITE_HIGH_WATER = 256 * 1024
SHUTDOWN = err("Server shutting down, nothing was deleted.", "SYS/TEMP")
# What a client over a connection cap is told before the close.
REFUSED = {
    connlimits.PER_CLIENT: err("Too many connections from your address.", "SYS/TEMP"),
    connlimits.TOTAL: err("Too many connections, try again later.", "SYS/TEMP"),
}
LOGIN_DEADLINE = err("Login timeout, closing the connection.")


class Closed(Exception):
    pass


class Connection:
    """One POP3 connection, before login (in pop3-login) or after it (here):
    the session says which state it is in."""

    def __init__(self, server: Any, stream: Stream, session: Session, peer: str,
                 tls_context: ssl.SSLContext | None = None,
                 pause_after: tuple[type, ...] = ()) -> None:
        self.server = server
        self.cfg: Config = server.cfg
        self.stream = stream
        self.tls_context = tls_context
        self.parser = P.CommandReader(pause_after=pause_after)
        self.events: list[P.Event] = []
        self.peer = peer
        self.session = session
        self.log = log.get().bind(client=self.peer)
        self.busy = False  # a command is being answered: a stop lets it finish
        # limits.login_timeout from connecting to logging in, whatever is sent meanwhile.
        self.login_deadline = asyncio.get_running_loop().time() + self.cfg.limits.login_timeout
        self.user_slot: connlimits.Slot | None = None

    async def write(self, data: bytes) -> None:
        self.stream.write(data)
        if self.stream.buffered_out() > WRITE_HIGH_WATER:
            try:
                await self.stream.drain()
            except ConnectionError:
                raise Closed from None

    async def _read(self) -> bytes:
        timeout = float(self.cfg.pop3.idle_timeout)
        deadline = False
        if self.session.account is None:
            timeout = min(timeout, LOGIN_TIMEOUT)
            left = self.login_deadline - asyncio.get_running_loop().time()
            if left < timeout:
                timeout, deadline = max(0.0, left), True
        try:
            await self.stream.drain()
            async with asyncio.timeout(timeout):
                data = await self.stream.read()
        except TimeoutError:
            # RFC 1939 3: an autologout timer ends the session without UPDATE.
            self.stream.write(LOGIN_DEADLINE if deadline else err("Disconnected for inactivity."))
            raise Closed from None
        except (ConnectionError, ssl.SSLError):
            raise Closed from None
        if not data:
            raise Closed
        return data

    async def next_event(self) -> P.Event:
        while not self.events:
            self.events.extend(self.parser.feed(await self._read()))
        return self.events.pop(0)

    def resume(self) -> None:
        self.events.extend(self.parser.resume())

    async def run(self, first: bytes | None = None, pending: bytes = b"") -> None:
        """first: what to say first (the greeting unless given); pending: bytes
        the client sent that this process has not read (after a hand-over)."""
        try:
            await self.write(self.session.greeting() if first is None else first)
            self.events.extend(self.parser.feed(pending))
            while not self.session.closing:
                if self.server.stopping:
                    # The command in progress when the stop came is answered; no more.
                    self.stream.write(SHUTDOWN)
                    break
                ev = await self.next_event()
                self.busy = True
                if isinstance(ev, P.Stls):
                    await self.starttls()
                elif isinstance(ev, P.Auth):
                    await self.authenticate(ev)
                elif isinstance(ev, P.Command):
                    await self.command(ev)
                elif isinstance(ev, P.BadCommand):
                    await self.write(self.session.bad_command(ev))
                else:  # a raw Line where a command was due: the reader never does this
                    raise Closed
                self.busy = False
            await self.stream.drain()
        except (Closed, ConnectionError):
            pass
        except asyncio.CancelledError:
            self.stream.write(SHUTDOWN)
            raise
        finally:
            try:
                await asyncio.shield(self.session.close())
            finally:
                if self.user_slot is not None:
                    self.user_slot.release()
                self.stream.close()

    async def command(self, cmd: P.Command) -> None:
        try:
            reply = await self.session.execute(cmd)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One command's failure is that command's answer, not the session's end.
            self.log.exception("command failed", command=cmd.name)
            reply = err("Internal error.", "SYS/TEMP")
        await self.write(reply)
        # The reader paused after this command (QUIT, which always sets closing;
        # PASS in the login process) only if no event came after it.
        if self.parser.paused and not self.events and not self.session.closing:
            self.resume()

    async def starttls(self) -> None:
        problem = self.session.stls_problem()
        if problem is not None:
            await self.write(problem)
            self.resume()
            return
        await self.write(b"+OK Begin TLS negotiation now.\r\n")
        await self.stream.drain()
        # Anything sent after STLS came in the clear: never obey it (RFC 2595 3.1).
        dropped = len(self.parser.take_buffered())
        self.events.clear()
        try:
            assert self.tls_context is not None  # stls_problem() says no after login
            dropped += await self.stream.start_tls(self.tls_context, HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as e:
            self.log.info("TLS handshake failed", error=str(e))
            raise Closed from None
        if dropped:
            self.log.warning("dropped plaintext sent after STLS", octets=dropped)
        self.session.tls_started()
        self.resume()

    async def authenticate(self, cmd: P.Auth) -> None:
        try:
            if cmd.mechanism is None:
                reply = self.session.auth_mechanisms()
            elif (problem := self.session.auth_problem(cmd)) is not None:
                reply = problem
            else:
                response = cmd.initial
                if response is None:
                    await self.write(b"+ \r\n")
                    self.events.extend(self.parser.expect_line())
                    ev = await self.next_event()
                    if not isinstance(ev, P.Line):
                        await self.write(self.session.auth_cancelled())
                        return
                    response = ev.data.decode("ascii", "replace").strip()
                if response == "*":
                    reply = self.session.auth_cancelled()
                else:
                    reply = await self.session.auth_plain(response)
            await self.write(reply)
        finally:
            if not self.session.closing:
                self.resume()


class POP3Server:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.auth = ipc.Client(cfg.paths.run / "mda" / "auth.sock", timeout=30)
        self.handovers: ipc.Server | None = None
        self.connections: dict[asyncio.Task, Connection] = {}
        self.stopping = False
        self.gate = connlimits.connections(cfg.limits)
        self.user_gate = connlimits.user_connections(cfg.limits)

    def open_maildrop(self, account: str) -> Maildrop:
        """Blocking: called by the session in a worker thread."""
        return Maildrop(maildir_path(self.cfg.paths.mail, account), self.cfg.mda.folders,
                        user=account)

    async def start(self, sock: socket.socket) -> None:
        self.handovers = await ipc.serve(sock, {"session": ipc.takes_fds(self._take)})

    async def _take(self, args: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        """A connection handed over by the login process: serve it, or say no."""
        given = await handover.receive(args, fds, self.auth)
        if isinstance(given, bytes):  # the token was no good
            return handover.refuse(err("Internal error, try again later.", "SYS/TEMP"), True)
        try:
            slot = self.gate.admit(given.peer, service="pop3")
        except connlimits.Refused as e:
            given.sock.close()
            return handover.refuse(REFUSED[e.reason], close=True)
        user_slots: list[connlimits.Slot] = []

        def admit(account: str) -> bool:
            try:
                user_slots.append(self.user_gate.admit(given.peer, account.lower(),
                                                       user=account, service="pop3"))
            except connlimits.Refused:
                return False
            return True
        session = Session(None, self.open_maildrop, secure=given.secure, peer=given.peer,
                          admit=admit)
        first = await session.start(given.user)
        if session.account is None:
            slot.release()
            given.sock.close()  # the login process keeps the client
            return handover.refuse(first, close=session.closing)
        loop = asyncio.get_running_loop()
        started: list[Stream] = []
        try:
            await loop.connect_accepted_socket(lambda: Stream(started.append), given.sock)
        except OSError:
            given.sock.close()
            with contextlib.suppress(Exception):
                await session.close()
            slot.release()
            for s in user_slots:
                s.release()
            return handover.ACCEPTED  # the client is gone: nothing to hand back to
        conn = Connection(self, started[0], session, given.peer)
        conn.user_slot = user_slots[0] if user_slots else None
        task = loop.create_task(self._serve(conn, first, given.pending))
        self.connections[task] = conn

        def done(t: asyncio.Task) -> None:
            self.connections.pop(t, None)
            slot.release()
        task.add_done_callback(done)
        return handover.ACCEPTED

    async def _serve(self, conn: Connection, first: bytes, pending: bytes) -> None:
        try:
            await conn.run(first, pending)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.get().exception("pop3 connection failed")

    async def stop(self, retiring: bool) -> None:
        """Retiring after a reload: sessions go on here until their clients end
        them (the new process takes new ones, and answers [IN-USE] for a maildrop
        still held here). Stopping: idle sessions end now, without UPDATE (RFC
        1939: nothing is deleted); a command in progress finishes first, within
        the grace."""
        self.stopping = not retiring
        if self.handovers is not None:
            await self.handovers.drain()
        await connections.end_all([], self.connections, retiring=retiring,
                                  grace=STOP_GRACE, after_cancel=STOP_GRACE)
        await self.auth.close()


async def main(ctx: ChildContext) -> None:
    server = POP3Server(ctx.cfg)
    (sock,) = ctx.sockets["handover"]
    await server.start(sock)
    log.get().info("ready")
    await ctx.stopping.wait()
    await server.stop(retiring=ctx.retiring)
    log.get().info("stopped")


if __name__ == "__main__":
    child.run("mdad", "pop3", main)
