"""mdad's pop3 process: POP3 on 110 (STLS) and 995 (implicit TLS).

The wire: sockets, TLS, timeouts, the reader's pauses (STLS, the SASL
exchange of AUTH, QUIT). What each command means is the session's.
"""

from __future__ import annotations

import asyncio
import ssl

from common import child, connections, connlimits, descriptors, ipc, log, tls
from common.child import ChildContext
from common.clientaddr import is_loopback
from common.config import Config
from common.supervisor import LISTEN_BACKLOG
from common.tlsstream import Stream
from mda.pop3 import parser as P
from mda.pop3.maildrop import Maildrop
from mda.pop3.session import AuthUnavailable, Session, err
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
# A connection that could not be accepted for want of descriptors.
NO_DESCRIPTORS = err("Server too busy, try again later.", "SYS/TEMP")


class Closed(Exception):
    pass


class AuthClient:
    """Passwords are checked by mdad's auth process, the only reader of the users file."""

    def __init__(self, client: ipc.Client, failures_per_connection: int) -> None:
        self.client = client
        self.failures_per_connection = failures_per_connection

    async def check(self, user: str, password: str, *, authzid: str = "",
                    address: str = "") -> str | None:
        try:
            reply = await self.client.call("auth", idempotent=True, user=user,
                                           password=password, authzid=authzid,
                                           address=address, service="pop3")
        except ipc.IPCError as e:
            raise AuthUnavailable(str(e)) from None
        return reply["user"] if reply.get("valid") else None


class Connection:
    def __init__(self, server: POP3Server, stream: Stream) -> None:
        self.server = server
        self.cfg: Config = server.cfg
        self.stream = stream
        self.parser = P.CommandReader()
        self.events: list[P.Event] = []
        self.peer = stream.peer
        loopback_ok = self.cfg.pop3.plaintext_on_loopback and is_loopback(self.peer)
        self.session = Session(server.auth, server.open_maildrop, secure=stream.secure,
                               plaintext_anyway=loopback_ok, peer=self.peer,
                               admit=self.admit_user)
        self.log = log.get().bind(client=self.peer)
        self.busy = False  # a command is being answered: a stop lets it finish
        # limits.login_timeout from connecting to logging in, whatever is sent meanwhile.
        self.login_deadline = asyncio.get_running_loop().time() + self.cfg.limits.login_timeout
        self.user_slot: connlimits.Slot | None = None

    def admit_user(self, account: str) -> bool:
        try:
            self.user_slot = self.server.user_gate.admit(self.peer, account.lower(),
                                                         user=account, service="pop3")
        except connlimits.Refused:
            return False
        return True

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

    async def run(self) -> None:
        try:
            await self.write(self.session.greeting())
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
        # QUIT (the reader's only pause here) always sets closing.
        if self.parser.paused and not self.session.closing:
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
            dropped += await self.stream.start_tls(self.server.tls_context, HANDSHAKE_TIMEOUT)
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
    def __init__(self, cfg: Config, context: ssl.SSLContext) -> None:
        self.cfg = cfg
        self.tls_context = context
        self.auth = AuthClient(ipc.Client(cfg.paths.run / "mda" / "auth.sock", timeout=30),
                               cfg.auth.failures_per_connection)
        self.servers: list[asyncio.Server] = []
        self.connections: dict[asyncio.Task, Connection] = {}
        self.stopping = False
        self.gate = connlimits.connections(cfg.limits)
        self.user_gate = connlimits.user_connections(cfg.limits)

    def open_maildrop(self, account: str) -> Maildrop:
        """Blocking: called by the session in a worker thread."""
        return Maildrop(maildir_path(self.cfg.paths.mail, account), self.cfg.mda.folders,
                        user=account)

    async def start(self, plain: list, implicit: list) -> None:
        loop = asyncio.get_running_loop()
        for sock in plain + implicit:
            sock.setblocking(False)
            secure = sock in implicit
            descriptors.answer_when_out(sock, None if secure else NO_DESCRIPTORS)
            self.servers.append(await loop.create_server(
                lambda: Stream(self._accept), sock=sock,
                ssl=self.tls_context if secure else None,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if secure else None,
                backlog=LISTEN_BACKLOG))

    def _accept(self, stream: Stream) -> None:
        try:
            slot = self.gate.admit(stream.peer, service="pop3")
        except connlimits.Refused as e:
            stream.write(REFUSED[e.reason])
            stream.close()
            return
        conn = Connection(self, stream)
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self.connections[task] = conn

        def done(t: asyncio.Task) -> None:
            self.connections.pop(t, None)
            slot.release()
        task.add_done_callback(done)

    async def _serve(self, conn: Connection) -> None:
        try:
            await conn.run()
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
        await connections.end_all(self.servers, self.connections, retiring=retiring,
                                  grace=STOP_GRACE, after_cancel=STOP_GRACE)
        await self.auth.client.close()


async def main(ctx: ChildContext) -> None:
    assert ctx.tls_pem is not None, "the parent hands the pop3 process its certificate"
    server = POP3Server(ctx.cfg, tls.context_from_pem(ctx.tls_pem))
    await server.start(ctx.sockets.get("pop3", []), ctx.sockets.get("pop3s", []))
    log.get().info("ready")
    await ctx.stopping.wait()
    await server.stop(retiring=ctx.retiring)
    log.get().info("stopped")


if __name__ == "__main__":
    child.run("mdad", "pop3", main)
