"""mdad's pop3-login process: POP3's AUTHORIZATION state on 110 (STLS) and
995 (implicit TLS).

The same session rules (mda/pop3/session.py) and wire (mda/pop3/server.py's
Connection) as the pop3 process, with a `handover` in place of the maildrop:
after a good USER/PASS or AUTH PLAIN the connection goes to the pop3 process
(handover.py), which answers the +OK. The reader pauses after PASS, so what
a client pipelined behind it goes there unread.
"""

from __future__ import annotations

from common import child, ipc
from common.child import ChildContext
from common.clientaddr import is_loopback
from common.tlsstream import Stream
from mda.login import handover
from mda.login.service import LoginServer, serve, tls_context
from mda.pop3 import parser as P
from mda.pop3.server import REFUSED, Connection
from mda.pop3.session import AuthUnavailable, Session, err

NO_DESCRIPTORS = err("Server too busy, try again later.", "SYS/TEMP")


class LoginAuth:
    """Passwords are checked by mdad's auth process; a success's token is kept
    for the hand-over (one of these per connection)."""

    def __init__(self, client: ipc.Client, failures_per_connection: int) -> None:
        self.client = client
        self.failures_per_connection = failures_per_connection
        self.token = ""

    async def check(self, user: str, password: str, *, authzid: str = "",
                    address: str = "") -> str | None:
        try:
            reply = await self.client.call("auth", idempotent=True, user=user,
                                           password=password, authzid=authzid,
                                           address=address, service="pop3")
        except ipc.IPCError as e:
            raise AuthUnavailable(str(e)) from None
        if not reply.get("valid"):
            return None
        self.token = str(reply.get("token", ""))
        return str(reply["user"])


def make(server: LoginServer, stream: Stream) -> Connection:
    cfg = server.cfg
    auth = LoginAuth(server.auth, cfg.auth.failures_per_connection)
    conn: Connection

    async def hand(account: str) -> bytes:
        pending = conn.parser.take_buffered()
        out = await handover.hand_over(server.mail, conn.stream, pending, token=auth.token,
                                       peer=conn.peer)
        if out.handed:
            conn.session.closing = True  # this process is done with it
            return b""
        # Refused: the connection is ours again, with what the client sent since.
        conn.events.extend(conn.parser.feed(pending))
        if out.close:
            conn.session.closing = True
        return out.reply or err("Temporary failure, try again later.", "SYS/TEMP")

    loopback_ok = cfg.pop3.plaintext_on_loopback and is_loopback(stream.peer)
    session = Session(auth, None, secure=stream.secure, plaintext_anyway=loopback_ok,
                      peer=stream.peer, handover=hand)
    conn = Connection(server, stream, session, stream.peer, tls_context=server.tls_context,
                      pause_after=(P.Pass,))
    return conn


async def main(ctx: ChildContext) -> None:
    server = LoginServer(ctx.cfg, tls_context(ctx), "pop3", REFUSED, NO_DESCRIPTORS, make)
    await serve(ctx, server, "pop3", "pop3s")


if __name__ == "__main__":
    child.run("mdad", "pop3-login", main)
