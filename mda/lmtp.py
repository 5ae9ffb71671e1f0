"""mdad's lmtp process: takes mail from the MTA over LMTP and stores it in Maildirs.

aiosmtpd speaks the protocol; `Delivery` holds our rules (who is a
recipient, one reply per recipient after DATA), `LMTPServer` the socket and
a graceful stop. A recipient's 250 goes out only once its copy is on disk.
A message that already carries the Delivered-To we would add for a
recipient has come round to it again: that recipient refuses it (554
5.4.6, as Postfix's local delivery does), the others still get it.
"""

from __future__ import annotations

import asyncio
import errno
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.smtp import Envelope

from common import child, ipc, log
from common.child import ChildContext
from common.config import Config
from common.msgheader import Header
from common.smtpserver import GracefulLMTP, Sessions
from common.users import SUBADDRESS_DELIMITER
from mda.store import maildir

STOP_GRACE = 10.0
# The queue id is in the topmost Received header, well inside the first 64 KiB.
_HEADER_SCAN = 64 * 1024
_RECEIVED_ID = re.compile(rb"(?:^|\s)id\s+<?([A-Za-z0-9][A-Za-z0-9._-]*)>?", re.IGNORECASE)


def queue_id_from(message: bytes) -> str | None:
    """The MTA's queue id from `... id <QUEUEID>` in the first Received header."""
    head = message[:_HEADER_SCAN].replace(b"\r\n", b"\n")
    head = head.split(b"\n\n", 1)[0]
    lines = head.split(b"\n")
    for i, line in enumerate(lines):
        if line[:9].lower() != b"received:":
            continue
        field = [line[9:]]
        for cont in lines[i + 1 :]:  # folded continuation lines
            if cont[:1] not in (b" ", b"\t"):
                break
            field.append(cont)
        m = _RECEIVED_ID.search(b" ".join(field))
        return m.group(1).decode("ascii") if m else None
    return None


def local_queue_id() -> str:
    """For a message that came without one, so its log lines still belong together."""
    return "L" + secrets.token_hex(6).upper()


@dataclass(frozen=True)
class Recipient:
    rcpt: str  # as the MTA sent it, +detail included
    mailbox: str  # the user's canonical address
    maildir: Path


def _recipients(envelope: Envelope) -> list[Recipient]:
    # aiosmtpd makes a fresh Envelope after DATA and RSET, so what we keep on
    # it cannot leak into the next transaction.
    if not hasattr(envelope, "mailpair_recipients"):
        envelope.mailpair_recipients = []  # type: ignore[attr-defined]
    return envelope.mailpair_recipients  # type: ignore[attr-defined]


def _failure_reply(rcpt: str, error: BaseException) -> str:
    code = getattr(error, "errno", None)
    # A filesystem quota is the vmail user's, shared by every virtual mailbox:
    # hitting it is the store being full (RFC 3463 4.3.1), not this user's
    # mailbox, so it is as temporary as a full disk and the MTA keeps the mail.
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"452 4.3.1 <{rcpt}> insufficient system storage, try again later"
    return f"451 4.3.0 <{rcpt}> temporary delivery failure, try again later"


class Delivery:
    """aiosmtpd handler: recipients checked with the auth process, DATA stored per recipient."""

    def __init__(self, cfg: Config, auth: ipc.Client) -> None:
        self.cfg = cfg
        self.auth = auth
        self.log = log.get()

    async def lookup(self, address: str) -> str | None:
        """The mailbox for a recipient: the user, or the user without +detail."""
        reply = await self.auth.call("user", idempotent=True, address=address)
        if reply.get("exists"):
            return str(reply["address"])
        local, _, domain = address.rpartition("@")
        base = local.split(SUBADDRESS_DELIMITER, 1)[0]
        if base and base != local:
            reply = await self.auth.call("user", idempotent=True, address=f"{base}@{domain}")
            if reply.get("exists"):
                return str(reply["address"])
        return None

    async def handle_EHLO(self, server, session, envelope, hostname: str, responses):
        # RFC 2033 4.1: an LMTP server must offer both; aiosmtpd lists neither.
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_RCPT(self, server, session, envelope, address: str, options) -> str:
        try:
            mailbox = await self.lookup(address)
        except ipc.IPCError as e:
            self.log.warning("recipient check failed", rcpt=address, error=str(e))
            return f"451 4.3.0 <{address}>: cannot check the recipient now, try again later"
        if mailbox is None:
            self.log.info("recipient rejected", rcpt=address, reason="user unknown")
            return f"550 5.1.1 <{address}>: user unknown"
        try:
            path = maildir.maildir_path(self.cfg.paths.mail, mailbox)
        except ValueError as e:
            # The users file holds a name we cannot store: the admin must fix it.
            self.log.error("mailbox name not usable", rcpt=address, mailbox=mailbox, error=str(e))
            return f"451 4.3.5 <{address}>: mailbox not available, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        _recipients(envelope).append(Recipient(address, mailbox, path))
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        content: bytes = envelope.original_content or b""
        queue_id = queue_id_from(content) or local_queue_id()
        sender = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        recipients = _recipients(envelope)
        # Those we stored it for already: the Delivered-To that _deliver_one writes.
        seen = {v.decode("utf-8", "surrogateescape").lower()
                for v in Header.of(content).values("delivered-to")}
        # RFC 2033: one reply per accepted recipient, in RCPT order; aiosmtpd
        # sends what we return, so all but the last are pushed here.
        for i, r in enumerate(recipients):
            if r.rcpt.lower() in seen:
                self.log.info("delivery refused", queue_id=queue_id, rcpt=r.rcpt,
                              mailbox=r.mailbox, reason="mail forwarding loop")
                reply = f"554 5.4.6 <{r.rcpt}> mail forwarding loop"
            else:
                reply = await self._deliver_one(r, sender, content, queue_id)
            if i == len(recipients) - 1:
                return reply
            await server.push(reply)
        raise AssertionError("DATA with no recipient")  # aiosmtpd answers 503 before

    async def _deliver_one(self, r: Recipient, sender: str, content: bytes, qid: str) -> str:
        head = f"Return-Path: <{sender}>\r\nDelivered-To: {r.rcpt}\r\n"
        header = head.encode("utf-8", "surrogateescape")
        try:
            name = await asyncio.to_thread(self._store, r.maildir, header, content)
        except Exception as e:  # one recipient's failure must not touch the others
            reply = _failure_reply(r.rcpt, e)
            level = self.log.warning if isinstance(e, OSError) else self.log.exception
            level("delivery failed", queue_id=qid, rcpt=r.rcpt, mailbox=r.mailbox,
                  error=str(e), result=reply)
            return reply
        self.log.info("delivered", queue_id=qid, rcpt=r.rcpt, mailbox=r.mailbox,
                      file=name, result="250")
        return f"250 2.0.0 <{r.rcpt}> delivered"

    def _store(self, path: Path, header: bytes, content: bytes) -> str:
        maildir.ensure_maildir(path, self.cfg.mda.folders)
        return maildir.deliver(path, header + content)


class LMTPServer:
    """Serves LMTP on a listening Unix socket; stops without cutting a transaction short."""

    def __init__(self, cfg: Config, handler: Delivery) -> None:
        self.cfg = cfg
        self.handler = handler
        self.sessions = Sessions()

    @property
    def open(self) -> set:
        return self.sessions.open

    def _session(self) -> GracefulLMTP:
        return GracefulLMTP(
            self.handler,
            sessions=self.sessions,
            hostname=self.cfg.hostname,
            ident="LMTP mailpair",
            enable_SMTPUTF8=True,
            # The MTA's Received header and dot-stuffing make a message a
            # little larger than what it accepted.
            data_size_limit=self.cfg.mta.max_message_size + 64 * 1024,
            loop=asyncio.get_running_loop(),
        )

    async def start(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self.sessions.add_server(await loop.create_unix_server(self._session, sock=sock))

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Accept no more; close idle sessions now, busy ones when done or after grace."""
        await self.sessions.stop(grace)


async def main(ctx: ChildContext) -> None:
    cfg = ctx.cfg
    auth = ipc.Client(cfg.paths.run / "mda" / "auth.sock", timeout=10.0)
    server = LMTPServer(cfg, Delivery(cfg, auth))
    await server.start(ctx.sockets["lmtp"][0])
    log.get().info("ready", mail=str(cfg.paths.mail))
    await ctx.stopping.wait()
    await server.stop()
    await auth.close()
    log.get().info("stopped")


if __name__ == "__main__":
    child.run("mdad", "lmtp", main)
