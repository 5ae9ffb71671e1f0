"""mtad's autoconfig process: the set-up documents and the MTA-STS policy over HTTPS.

It runs as its own user (autoconfig.user), which can read no mail, no spool
and no users file: it needs only the configuration and the certificate the
parent hands over. It lives in mtad because the MTA-STS policy is the MTA's
(mta.dnsrecords builds it, and the published _mta-sts id is its hash), and
the client documents need only the configuration both daemons read.

One request per connection, each within REQUEST_TIMEOUT; connections are
counted per client like the mail listeners' (limits.connections*).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from common import child, connlimits, log, tls
from common.child import ChildContext
from common.config import Config
from common.supervisor import LISTEN_BACKLOG
from mta.autoconfig import routes
from mta.autoconfig.request import MAX_HEAD, BadRequest, parse_head, response

REQUEST_TIMEOUT = 30.0
STOP_GRACE = 10.0


async def read_request(reader: asyncio.StreamReader):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "request head too large") from None
    req = parse_head(head[:-4])
    if req.body_length:
        req.body = await reader.readexactly(req.body_length)
    return req


async def handle(cfg: Config, gate: connlimits.Gate, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername") or ("", 0)
    logger = log.get().bind(client=peer[0])
    try:
        slot = gate.admit(peer[0])
    except connlimits.Refused:
        writer.close()
        return
    try:
        try:
            req = await asyncio.wait_for(read_request(reader), REQUEST_TIMEOUT)
            status, ctype, body = routes.answer(cfg, req)
            logger.info("request", method=req.method, path=req.path, status=status,
                        host=req.headers.get("host", ""))
            writer.write(response(status, ctype, body, head_only=req.method == "HEAD"))
        except BadRequest as e:
            logger.info("bad request", status=e.status, reason=str(e))
            writer.write(response(e.status, routes.TEXT, f"{e}\n".encode()))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
    except TimeoutError:
        pass
    finally:
        slot.release()
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def main(ctx: ChildContext) -> None:
    cfg = ctx.cfg
    assert ctx.tls_pem is not None, "the parent hands the autoconfig process its certificate"
    context = tls.context_from_pem(ctx.tls_pem)
    gate = connlimits.connections(cfg.limits)
    # Our own count of the requests being answered: Server.wait_closed (3.11) does not
    # wait for them, and a reload must not cut a client off mid-answer.
    inflight: set[asyncio.Task] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        inflight.add(task)
        try:
            await handle(cfg, gate, reader, writer)
        finally:
            inflight.discard(task)
    servers = []
    for sock in ctx.sockets.get("autoconfig", []):
        sock.setblocking(False)
        servers.append(await asyncio.start_server(
            serve, sock=sock, ssl=context, backlog=LISTEN_BACKLOG, limit=MAX_HEAD + 4))
    log.get().info("ready", listeners=len(servers))
    await ctx.stopping.wait()
    for s in servers:
        s.close()
    if inflight:
        await asyncio.wait(list(inflight), timeout=STOP_GRACE)
    log.get().info("stopped")


if __name__ == "__main__":
    child.run("mtad", "autoconfig", main)
