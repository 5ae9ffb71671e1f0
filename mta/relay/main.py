"""mtad's relay process: carries queued messages to the next hop.

Local domains go over LMTP to the MDA; other domains over SMTP to their MX
hosts (or the smarthost). The queue asks once per message and route, and
for SMTP once per destination domain; the answer is a reply per recipient.
The message comes as a read-only descriptor with the request: the relay
runs as its own user, with no right to the spool.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from common import child, ipc, log
from common.child import ChildContext
from common.unixchan import close_fds
from mta.queue import spool
from mta.queue.envelope import LMTP
from mta.relay.delivered import Delivered
from mta.relay.lmtp import LMTPPool
from mta.relay.outbound import Outbound
from mta.relay.signing import Signer


class Relay:
    def __init__(self, ctx: ChildContext) -> None:
        self.cfg = ctx.cfg
        self.lmtp = LMTPPool(str(ctx.cfg.lmtp_socket), ctx.cfg.hostname)
        self.outbound = Outbound(ctx.cfg)
        self.delivered = Delivered()
        self.signer = Signer(ctx.cfg.mta.dkim_keys)
        self.log = log.get()

    @ipc.takes_fds
    async def op_deliver(self, req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        try:
            if len(fds) != 1:
                raise ValueError(f"deliver needs the message's descriptor, {len(fds)} came")
            qid = str(req["id"])
            if not spool.valid_id(qid):
                raise ValueError(f"bad queue id {qid!r}")
            message = await asyncio.to_thread(read_all, fds[0])
        finally:
            close_fds(fds)
        recipients = [str(r) for r in req["recipients"]]
        # A message's groups (LMTP, each SMTP domain) have recipients of their
        # own and go in parallel; only a group asked for twice waits.
        group = f"{qid}/{req.get('route')}/{req.get('domain') or ''}"
        async with self.delivered.one_at_a_time(group):
            known = self.delivered.known(qid, recipients)
            for rcpt in known:
                self.log.info("delivered before, not sent again", queue_id=qid, rcpt=rcpt)
            todo = [r for r in recipients if r not in known]
            out = await self._deliver(qid, todo, req, message) if todo else {"replies": {}}
            self.delivered.remember(qid, out["replies"], out.get("remote", {}))
        for rcpt, (reply, host) in known.items():
            out["replies"][rcpt] = reply
            if host:
                out.setdefault("remote", {})[rcpt] = host
        return out

    async def _deliver(self, qid: str, recipients: list[str], req: dict[str, Any],
                       message: bytes) -> dict[str, Any]:
        body_8bit, smtputf8 = bool(req.get("body_8bit")), bool(req.get("smtputf8"))
        if req.get("route") != LMTP:
            domain = str(req.get("domain") or recipients[0].rpartition("@")[2]).lower()
            log = self.log.bind(queue_id=qid)
            if req.get("sign"):
                # Off the event loop: an RSA signature takes milliseconds, and key files are read.
                message = await asyncio.to_thread(self.signer.sign, message, log)
            out = await self.outbound.deliver(
                domain, str(req["sender"]), recipients, message, body_8bit, smtputf8, log)
            for rcpt, reply in out.replies.items():
                self.log.debug("smtp reply", queue_id=qid, rcpt=rcpt, reply=reply,
                               host=out.remote.get(rcpt))
            return {"replies": out.replies, "remote": out.remote}
        replies = await self.lmtp.deliver(str(req["sender"]), recipients, message,
                                          body_8bit=body_8bit, smtputf8=smtputf8)
        for rcpt, reply in replies.items():
            self.log.debug("lmtp reply", queue_id=qid, rcpt=rcpt, reply=reply)
        return {"replies": replies}

    async def op_probe(self, req: dict[str, Any]) -> dict[str, Any]:
        """Whether the MDA answers on the LMTP socket (the queue asks while it waits)."""
        problem = await self.lmtp.probe()
        return {"up": problem is None, "error": problem}


def read_all(fd: int) -> bytes:
    """The whole message, from the start whatever the descriptor's offset."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


async def main(ctx: ChildContext) -> None:
    relay = Relay(ctx)
    (sock,) = ctx.sockets["ipc"]
    server = await ipc.serve(sock, {"deliver": relay.op_deliver, "probe": relay.op_probe})
    log.get().info("ready", lmtp=str(ctx.cfg.lmtp_socket),
                   smarthost=ctx.cfg.relay.smarthost or None)
    await ctx.stopping.wait()
    # A hand-over in progress finishes and its answers reach the queue.
    await server.drain(grace=60)


if __name__ == "__main__":
    child.run("mtad", "relay", main)
