"""mtad's smtp process: SMTP on 25, submission on 587 and 465, from inherited sockets.

Port 25 takes mail for local recipients only and offers no AUTH. Port 587
offers STARTTLS and, only once it is done, AUTH; nothing is accepted before
AUTH. Port 465 is the same with TLS from the first byte (RFC 8314).
"""

from __future__ import annotations

import asyncio
import ssl

from common import child, connlimits, descriptors, ipc, log, tls
from common.child import ChildContext
from common.config import Config
from common.smtpguard import Guard, GuardedSMTP
from common.smtpserver import Sessions
from common.supervisor import LISTEN_BACKLOG
from mta.smtp_session import MX, SUBMISSION, SUBMISSIONS, Handler, SubmissionHandler

STOP_GRACE = 30.0
# A connection that could not be accepted for want of descriptors.
NO_DESCRIPTORS = b"421 4.3.2 Server too busy, try again later\r\n"


def factory(cfg: Config, kind: str, handler: Handler, context: ssl.SSLContext,
            sessions: Sessions, gate: connlimits.Gate):
    # Submission: AUTH within limits.login_timeout; port 25 has no login to wait for.
    guard = Guard(gate, cfg.hostname, kind, cfg.limits.junk_commands,
                  None if kind == MX else cfg.limits.login_timeout)
    common = dict(
        guard=guard,
        sessions=sessions,
        data_size_limit=cfg.mta.max_message_size,
        header_size_limit=cfg.limits.header_size,
        header_fields_limit=cfg.limits.header_fields,
        enable_SMTPUTF8=True,
        hostname=cfg.hostname,
        ident="ESMTP mailpair",
        timeout=cfg.mta.session_timeout,
    )
    if kind == MX:
        # No AUTH on the MX port: it takes mail for us, it relays for no one.
        return lambda: GuardedSMTP(handler, tls_context=context,
                                   auth_exclude_mechanism=["PLAIN", "LOGIN"], **common)
    if kind == SUBMISSION:
        return lambda: GuardedSMTP(handler, tls_context=context, require_starttls=True,
                                   auth_required=True, auth_require_tls=True, **common)
    # Implicit TLS: the whole connection is encrypted before the first command,
    # which aiosmtpd does not see as STARTTLS, so its TLS-before-AUTH rule is moot.
    return lambda: GuardedSMTP(handler, auth_required=True, auth_require_tls=False, **common)


async def main(ctx: ChildContext) -> None:
    cfg = ctx.cfg
    assert ctx.tls_pem is not None, "the parent hands the smtp process its certificate"
    context = tls.context_from_pem(ctx.tls_pem)
    sessions = Sessions()
    run = cfg.paths.run / "mta"
    lookup = ipc.Client(run / "lookup.sock", timeout=30)
    queue = ipc.Client(run / "queue.sock", timeout=60)
    loop = asyncio.get_running_loop()
    count = 0
    gate = connlimits.connections(cfg.limits)  # one count for all three listeners
    for kind in (MX, SUBMISSION, SUBMISSIONS):
        cls = Handler if kind == MX else SubmissionHandler
        handler = cls(cfg, kind, lookup, queue)
        make = factory(cfg, kind, handler, context, sessions, gate)
        for sock in ctx.sockets.get(kind, []):
            sock.setblocking(False)
            descriptors.answer_when_out(sock, None if kind == SUBMISSIONS else NO_DESCRIPTORS)
            sessions.add_server(await loop.create_server(
                make, sock=sock, ssl=context if kind == SUBMISSIONS else None,
                backlog=LISTEN_BACKLOG))
            count += 1
    log.get().info("ready", listeners=count)
    await ctx.stopping.wait()
    # Transactions in flight finish (their 250 means the message is ours);
    # idle sessions are told 421 and closed.
    await sessions.stop(STOP_GRACE, drain=ctx.retiring)
    log.get().info("stopped")


if __name__ == "__main__":
    child.run("mtad", "smtp", main)
