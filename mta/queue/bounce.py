"""Telling a sender what became of a message: DSNs made and queued by the queue process.

One DSN per message per round: every recipient that failed in that round
(a 5xx, or the end of the queue lifetime) is in the same report. A DSN
goes back through the spool like any other mail, to the sender's
mailbox here (LMTP) or to the sender's domain (SMTP). A message with
the null sender (a DSN itself) never gets one: that is only logged.
"""

from __future__ import annotations

import asyncio
import time

from common import ipc, log
from common.config import Config
from mta.queue import dsn, spool
from mta.queue.envelope import LMTP, SMTP, Envelope, Recipient

EXPIRED = "4.4.7 delivery time expired; last reply: "
# Enough of the original message for its whole header, almost always.
HEADER_BYTES = 256 * 1024


def report_for(r: Recipient, action: str) -> dsn.RecipientReport:
    reply = r.last_reply or "4.0.0 not tried yet"
    status = dsn.status_of(reply)
    if reply.startswith(EXPIRED):
        status, reply = "4.4.7", reply[len(EXPIRED):] or "delivery time expired"
    return dsn.RecipientReport(address=r.address, original=r.original, action=action,
                               status=status, diagnostic=reply, remote_mta=r.remote_mta)


class Bounces:
    def __init__(self, cfg: Config, lookup: ipc.Client) -> None:
        self.cfg = cfg
        self.root = cfg.paths.spool
        self.lookup = lookup
        self.log = log.get()

    async def failed(self, env: Envelope, recipients: list[Recipient]) -> Envelope | None:
        return await self._report(env, dsn.FAILED, recipients)

    async def delayed(self, env: Envelope, recipients: list[Recipient]) -> Envelope | None:
        until = env.created + self.cfg.mta.queue_lifetime
        return await self._report(env, dsn.DELAYED, recipients, until)

    async def _report(self, env: Envelope, action: str, recipients: list[Recipient],
                      retry_until: float | None = None) -> Envelope | None:
        if not recipients:
            return None
        if not env.sender:
            for r in recipients:
                self.log.warning("no DSN for a message with the null sender", queue_id=env.id,
                                 rcpt=r.address, action=action, reply=r.last_reply)
            return None
        path = spool.message_path(self.root, env.id)

        def head() -> bytes:
            with open(path, "rb") as f:
                return f.read(HEADER_BYTES)
        original = await asyncio.to_thread(head)
        now = time.time()
        qid = spool.new_id()
        data = dsn.build(action, hostname=self.cfg.hostname, queue_id=env.id, dsn_id=qid,
                         sender=env.sender, arrival=env.created,
                         reports=[report_for(r, action) for r in recipients],
                         original=original, now=now, retry_until=retry_until)
        bounce = Envelope(id=qid, sender="", recipients=await self._route(env.sender),
                          created=now, size=len(data), helo=self.cfg.hostname,
                          client="127.0.0.1", dsn_for=env.id, body_8bit=not data.isascii(),
                          smtputf8=not env.sender.isascii())
        await asyncio.to_thread(spool.inject, self.root, bounce, data)
        self.log.info("DSN queued", queue_id=env.id, dsn_id=qid, action=action,
                      to=env.sender, rcpts=[r.address for r in recipients])
        self.log.info("queued", queue_id=qid, sender="", size=len(data), dsn_for=env.id,
                      nrcpt=len(bounce.recipients))
        return bounce

    async def _route(self, address: str) -> list[Recipient]:
        """The sender as a recipient: aliases expanded, as the smtp process does."""
        targets = [address]
        try:
            found = await self.lookup.call("resolve", idempotent=True, address=address)
            if found["kind"] != "unknown":
                targets = [str(t) for t in found["targets"]] or targets
        except (ipc.IPCError, KeyError) as e:
            self.log.warning("sender lookup failed; routing by domain", address=address,
                             error=str(e))
        return [Recipient(address=t, original=address,
                          route=LMTP if self.cfg.is_local_domain(t.rpartition("@")[2]) else SMTP)
                for t in targets]
