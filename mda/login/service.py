"""What mdad's login processes (imap-login, pop3-login) share: the listeners,
TLS, the connection caps, the stop.

A login process runs as `mda.login_user`, a user with no access to any mail
or to the users file. It holds the protocol's ports and the TLS key, speaks
everything before authentication (greeting, capabilities, STARTTLS/STLS and
TLS itself, the password, checked by the auth process), and then hands the
connection to the protocol's mail process (handover.py), which runs as the
virtual-mail user and never sees a stranger's bytes before a login.

The caps on connections (limits.connections, connections_per_client) and
the timeouts before login are enforced here; the mail process counts its
sessions again after the hand-over, with the per-user cap.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
from collections.abc import Callable
from typing import Protocol

from common import connections, connlimits, descriptors, ipc, log, tls
from common.child import ChildContext
from common.config import Config
from common.supervisor import LISTEN_BACKLOG
from common.tlsstream import Stream

HANDSHAKE_TIMEOUT = 30.0
STOP_GRACE = 10.0

# asyncio's SSLProtocol reads into a 256 KiB buffer per connection (and keeps
# it): with hundreds of idle logged-in TLS clients proxied by this process
# that is most of its memory. IMAP and POP3 lines are short and a large
# FETCH streams fine in 32 KiB reads, so this process asks for less
# (`make bench`, imap_login, 200 idle TLS clients: 298 kB of PSS per
# connection over all of mdad with 256 KiB, 79 kB with 32 KiB). A private
# attribute of CPython 3.11+; without it, only the memory changes.
if hasattr(asyncio.sslproto, "SSLProtocol"):
    asyncio.sslproto.SSLProtocol.max_size = 32 * 1024  # type: ignore[attr-defined]


class LoginConnection(Protocol):
    busy: bool  # a command is being answered (or a proxy runs): a stop lets it finish

    async def run(self) -> None: ...


class LoginServer:
    """The listeners of one protocol; `make(server, stream)` builds a connection."""

    def __init__(self, cfg: Config, context: ssl.SSLContext, service: str,
                 refused: dict[str, bytes], no_descriptors: bytes,
                 make: Callable[[LoginServer, Stream], LoginConnection]) -> None:
        self.cfg = cfg
        self.tls_context = context
        self.service = service
        self.refused = refused
        self.no_descriptors = no_descriptors
        self.make = make
        run = cfg.paths.run
        self.auth = ipc.Client(run / "mda-login" / "auth.sock", timeout=30)
        self.mail = ipc.Client(run / "mda-login" / f"{service}-mail.sock", timeout=30)
        self.servers: list[asyncio.Server] = []
        self.connections: dict[asyncio.Task, LoginConnection] = {}
        self.stopping = False
        self.gate = connlimits.connections(cfg.limits)

    async def start(self, plain: list, implicit: list) -> None:
        loop = asyncio.get_running_loop()
        for sock in plain + implicit:
            sock.setblocking(False)
            secure = sock in implicit
            descriptors.answer_when_out(sock, None if secure else self.no_descriptors)
            self.servers.append(await loop.create_server(
                lambda: Stream(self._accept), sock=sock,
                ssl=self.tls_context if secure else None,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if secure else None,
                backlog=LISTEN_BACKLOG))

    def _accept(self, stream: Stream) -> None:
        try:
            slot = self.gate.admit(stream.peer, service=self.service)
        except connlimits.Refused as e:
            stream.write(self.refused[e.reason])
            stream.close()
            return
        conn = self.make(self, stream)
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self.connections[task] = conn

        def done(t: asyncio.Task) -> None:
            self.connections.pop(t, None)
            slot.release()
        task.add_done_callback(done)

    async def _serve(self, conn: LoginConnection) -> None:
        try:
            await conn.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.get().exception(f"{self.service} login connection failed")

    async def stop(self, retiring: bool) -> None:
        """As the mail processes: retiring lets every connection (and proxy) run
        to its end; stopping ends those before login now, proxies within the grace."""
        self.stopping = not retiring
        await connections.end_all(self.servers, self.connections, retiring=retiring,
                                  grace=STOP_GRACE, after_cancel=1)
        await self.auth.close()
        await self.mail.close()


async def serve(ctx: ChildContext, server: LoginServer, plain: str, implicit: str) -> None:
    await server.start(ctx.sockets.get(plain, []), ctx.sockets.get(implicit, []))
    log.get().info("ready")
    await ctx.stopping.wait()
    await server.stop(retiring=ctx.retiring)
    log.get().info("stopped")


def tls_context(ctx: ChildContext) -> ssl.SSLContext:
    assert ctx.tls_pem is not None, "the parent hands the login process its certificate"
    return tls.context_from_pem(ctx.tls_pem)
