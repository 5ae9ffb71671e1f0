"""mdad's imap-login process: IMAP on 143 (STARTTLS) and 993 (implicit TLS)
before authentication.

Greeting, CAPABILITY, NOOP, ID, LOGOUT, STARTTLS, LOGIN and AUTHENTICATE
PLAIN, read with the one IMAP reader (mda/imap/parser.py), which pauses
after LOGIN so that whatever the client pipelined behind it goes to the
mail process unread. Every other command is answered `BAD Log in first`.
The password goes to the auth process, which delays and logs refusals; a
success is handed to the imap process (handover.py), which answers the
tagged OK.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from common import child, connlimits, ipc, log, sasl
from common.child import ChildContext
from common.clientaddr import is_loopback
from common.tlsstream import Stream
from mda.imap import commands as C
from mda.imap import prelogin
from mda.imap import response as R
from mda.imap.events import BadCharset, BadCommand, Event, Line, LiteralTooLarge, NeedContinuation
from mda.imap.parser import CommandReader
from mda.login import handover
from mda.login.service import HANDSHAKE_TIMEOUT, LoginServer, serve, tls_context

# Before login a client gets little time and few mistakes: READ_TIMEOUT
# between two reads, limits.login_timeout in all.
READ_TIMEOUT = 60.0
MAX_BAD = 20

REFUSED = {
    connlimits.PER_CLIENT: R.bye("Too many connections from your address", "UNAVAILABLE"),
    connlimits.TOTAL: R.bye("Too many connections, try again later", "UNAVAILABLE"),
}
NO_DESCRIPTORS = R.bye("Server too busy, try again later", "UNAVAILABLE")
SHUTDOWN = R.bye("Server shutting down, reconnect")


class Closed(Exception):
    pass


class Connection:
    def __init__(self, server: LoginServer, stream: Stream) -> None:
        self.server = server
        self.cfg = server.cfg
        self.stream = stream
        self.peer = stream.peer
        self.parser = CommandReader(prelogin.LIMITS_BEFORE_LOGIN, pause_after=(C.Login,))
        self.events: list[Event] = []
        self.bad = 0
        self.auth_failures = 0
        self.deadline = asyncio.get_running_loop().time() + self.cfg.limits.login_timeout
        self.busy = False
        self.handed = False  # the connection is the mail process's now
        self.log = log.get().bind(client=self.peer)

    @property
    def plaintext_ok(self) -> bool:
        """Whether a password may be sent on this connection."""
        return self.stream.secure or (self.cfg.imap.plaintext_on_loopback
                                      and is_loopback(self.peer))

    def capabilities(self) -> list[str]:
        return prelogin.capabilities_before_login(self.stream.secure, self.plaintext_ok)

    # -- the wire ----------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        self.stream.write(data)
        try:
            await self.stream.drain()
        except ConnectionError:
            raise Closed from None

    async def _read(self) -> bytes:
        timeout, expired = READ_TIMEOUT, R.bye("Autologout; idle for too long")
        left = self.deadline - asyncio.get_running_loop().time()
        if left < timeout:
            timeout, expired = max(0.0, left), R.bye("Login timeout")
        try:
            async with asyncio.timeout(timeout):
                data = await self.stream.read()
        except TimeoutError:
            self.stream.write(expired)
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

    def resume(self) -> None:
        self.events.extend(self.parser.resume())

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.write(R.ok(None, "mailpair IMAP ready",
                                  R.code("CAPABILITY", *self.capabilities())))
            while not self.handed:
                ev = await self.next_event()
                self.busy = True
                if isinstance(ev, C.Command):
                    await self.command(ev)
                else:
                    await self.refuse(ev)
                self.busy = False
                if self.server.stopping and not self.handed:
                    await self.write(SHUTDOWN)
                    raise Closed
        except Closed:
            pass
        except asyncio.CancelledError:
            if not self.handed:
                with contextlib.suppress(Exception):
                    self.stream.write(SHUTDOWN)
            raise
        finally:
            if not self.handed:
                self.stream.close()

    async def refuse(self, ev: Event) -> None:
        if isinstance(ev, NeedContinuation):
            # Within the limits: the reader refused any literal over them.
            await self.write(R.continuation("Ready for literal data"))
            self.resume()
        elif isinstance(ev, BadCharset):
            await self.write(R.bad(ev.tag, "Log in first"))
        elif isinstance(ev, LiteralTooLarge):
            replies, close = prelogin.literal_refusal_before_login(ev)
            for out in replies:
                await self.write(out)
            if close:
                raise Closed
        elif isinstance(ev, BadCommand):
            await self.mistake(R.bad(ev.tag, ev.message))

    async def mistake(self, reply: bytes) -> None:
        self.bad += 1
        await self.write(reply)
        if self.bad >= MAX_BAD:
            await self.write(R.bye("Too many bad commands"))
            raise Closed

    async def command(self, cmd: C.Command) -> None:
        if isinstance(cmd, C.Capability):
            await self.write(R.data(b"CAPABILITY", *(c.encode() for c in self.capabilities())))
            await self.write(R.ok(cmd.tag, "CAPABILITY completed"))
        elif isinstance(cmd, C.Noop):
            await self.write(R.ok(cmd.tag, "NOOP completed"))
        elif isinstance(cmd, C.Id):
            await self.write(prelogin.id_response() + R.ok(cmd.tag, "ID completed"))
        elif isinstance(cmd, C.Logout):
            await self.write(R.bye("Logging out") + R.ok(cmd.tag, "LOGOUT completed"))
            raise Closed
        elif isinstance(cmd, C.StartTLS):
            await self.starttls(cmd)
        elif isinstance(cmd, C.Login):
            await self.login(cmd)
        elif isinstance(cmd, C.Authenticate):
            await self.authenticate(cmd)
        else:
            await self.write(R.bad(cmd.tag, "Log in first"))
            # IDLE paused the reader: what follows is commands again. (A pause
            # with events after this one is theirs, a pipelined LOGIN's.)
            if self.parser.paused and not self.events:
                self.resume()

    async def starttls(self, cmd: C.StartTLS) -> None:
        if self.stream.secure:
            await self.write(R.bad(cmd.tag, "TLS is already active"))
            self.resume()
            return
        await self.write(R.ok(cmd.tag, "Begin TLS negotiation now"))
        # Anything sent before the handshake was sent in the clear: never obey it
        # (the stream drops what it buffered, with no await before the upgrade).
        dropped = len(self.parser.take_buffered())
        self.events.clear()
        try:
            dropped += await self.stream.start_tls(self.server.tls_context, HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as e:
            self.log.info("TLS handshake failed", error=str(e))
            raise Closed from None
        if dropped:
            self.log.info("dropped plaintext sent after STARTTLS", octets=dropped)
        self.resume()

    async def login(self, cmd: C.Login) -> None:
        if not self.plaintext_ok:
            await self.write(R.no(cmd.tag, "Use STARTTLS first", R.code("PRIVACYREQUIRED")))
        else:
            await self.check(cmd.tag, cmd.username, cmd.password)
        if not self.handed:
            self.resume()

    async def authenticate(self, cmd: C.Authenticate) -> None:
        try:
            if cmd.mechanism != "PLAIN":
                await self.write(R.no(cmd.tag, "Unsupported mechanism"))
                return
            if not self.plaintext_ok:
                await self.write(R.no(cmd.tag, "Use STARTTLS first", R.code("PRIVACYREQUIRED")))
                return
            blob = cmd.initial_response
            if blob is None:
                await self.write(R.continuation(""))
                self.events.extend(self.parser.expect_line())
                ev = await self.next_event()
                if not isinstance(ev, Line):
                    raise Closed  # the reader promised a line: anything else is a broken client
                if ev.data.strip() == b"*":
                    await self.write(R.bad(cmd.tag, "AUTHENTICATE cancelled"))
                    return
                blob = ev.data.decode("ascii", "replace").strip()
            try:
                authzid, user, password = sasl.parse_plain(sasl.decode(blob))
            except sasl.SASLError as e:
                await self.write(R.bad(cmd.tag, str(e)))
                return
            await self.check(cmd.tag, user, password, authzid)
        finally:
            if not self.handed:
                self.resume()

    async def check(self, tag: str, user: str, password: str, authzid: str = "") -> None:
        """The auth process decides, delays and logs a refusal; this counts
        them per connection and says BYE after auth.failures_per_connection."""
        try:
            reply = await self.server.auth.call("auth", idempotent=True, user=user,
                                                password=password, authzid=authzid,
                                                address=self.peer, service="imap")
        except ipc.IPCError as e:
            self.log.error("authentication lookup failed", error=str(e))
            await self.write(R.no(tag, "Temporary authentication failure", R.code("UNAVAILABLE")))
            return
        if not reply.get("valid"):
            await self.write(R.no(tag, "Authentication failed", R.code("AUTHENTICATIONFAILED")))
            self.auth_failures += 1
            if self.auth_failures >= self.cfg.auth.failures_per_connection:
                await self.write(R.bye("Too many failed authentications"))
                raise Closed
            return
        pending = self.parser.take_buffered()
        out = await handover.hand_over(self.server.mail, self.stream, pending,
                                       token=str(reply.get("token", "")), peer=self.peer, tag=tag)
        if out.handed:
            self.handed = True
            return
        # Refused: the connection is ours again, with what the client sent since.
        self.events.extend(self.parser.feed(pending))
        await self.write(out.reply or R.no(tag, "Temporary failure, try again",
                                           R.code("UNAVAILABLE")))
        if out.close:
            raise Closed


def make(server: LoginServer, stream: Stream) -> Connection:
    return Connection(server, stream)


async def main(ctx: ChildContext) -> None:
    server = LoginServer(ctx.cfg, tls_context(ctx), "imap", REFUSED, NO_DESCRIPTORS, make)
    await serve(ctx, server, "imap", "imaps")


if __name__ == "__main__":
    child.run("mdad", "imap-login", main)
