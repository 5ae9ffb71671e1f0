"""mtad's smtp process: SMTP on 25, submission on 587 and 465, from inherited sockets.

Port 25 takes mail for local recipients only and offers no AUTH. Port 587
offers STARTTLS and, only once it is done, AUTH; nothing is accepted before
AUTH. Port 465 is the same with TLS from the first byte (RFC 8314).
"""

from __future__ import annotations

import asyncio
import os
import ssl

from common import child, ipc, log, tls
from common.child import ChildContext
from common.config import Config
from common.smtpserver import MailSMTP
from mta.queue import spool
from mta.smtp_session import MX, SUBMISSION, SUBMISSIONS, Handler, SubmissionHandler

STOP_GRACE = 30.0


def factory(cfg: Config, kind: str, handler: Handler, context: ssl.SSLContext):
    common = dict(
        data_size_limit=cfg.mta.max_message_size,
        enable_SMTPUTF8=True,
        hostname=cfg.hostname,
        ident="ESMTP mailpair",
        timeout=cfg.mta.session_timeout,
    )
    if kind == MX:
        # No AUTH on the MX port: it takes mail for us, it relays for no one.
        return lambda: MailSMTP(handler, tls_context=context,
                                auth_exclude_mechanism=["PLAIN", "LOGIN"], **common)
    if kind == SUBMISSION:
        return lambda: MailSMTP(handler, tls_context=context, require_starttls=True,
                                auth_required=True, auth_require_tls=True, **common)
    # Implicit TLS: the whole connection is encrypted before the first command,
    # which aiosmtpd does not see as STARTTLS, so its TLS-before-AUTH rule is moot.
    return lambda: MailSMTP(handler, auth_required=True, auth_require_tls=False, **common)


def clean_incoming(cfg: Config) -> None:
    """Whatever a previous smtp process left in incoming/ was never acknowledged."""
    inc = cfg.paths.spool / spool.INCOMING
    for name in os.listdir(inc):
        qid = name.partition(".")[0]
        spool.discard_incoming(cfg.paths.spool, qid)
        log.get().info("discarded an unacknowledged message", queue_id=qid)


async def main(ctx: ChildContext) -> None:
    cfg = ctx.cfg
    clean_incoming(cfg)
    context = tls.server_context(cfg.tls.cert, cfg.tls.key)
    run = cfg.paths.run / "mta"
    lookup = ipc.Client(run / "lookup.sock", timeout=30)
    queue = ipc.Client(run / "queue.sock", timeout=60)
    loop = asyncio.get_running_loop()
    servers = []
    for kind in (MX, SUBMISSION, SUBMISSIONS):
        cls = Handler if kind == MX else SubmissionHandler
        handler = cls(cfg, kind, lookup, queue)
        make = factory(cfg, kind, handler, context)
        for sock in ctx.sockets.get(kind, []):
            sock.setblocking(False)
            servers.append(await loop.create_server(
                make, sock=sock, ssl=context if kind == SUBMISSIONS else None))
    log.get().info("ready", listeners=len(servers))
    await ctx.stopping.wait()
    for s in servers:
        s.close()
    # Sessions in the middle of DATA get time to finish before we go.
    await asyncio.wait([asyncio.create_task(s.wait_closed()) for s in servers],
                       timeout=STOP_GRACE)


if __name__ == "__main__":
    child.run("mtad", "smtp", main)
