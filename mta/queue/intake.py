"""How a message enters the queue: queue.sock's open, commit and discard.

The smtp process has no right to the spool. For each DATA it asks `open`:
the queue creates incoming/<id>.msg and hands back the id and a write-only
descriptor of that file (common/ipc.py passes it), into which smtp streams
the message. At the end of DATA smtp sends `commit` with the envelope
fields; the queue checks the size (the smtp process might not tell the
truth), fsyncs the file, writes and fsyncs the envelope, renames both into
queue/, fsyncs the directory and only then answers, so smtp's 250 follows a
durable commit (mta/queue/spool.py). `discard` removes what a failed
transaction left. That is one round trip per message more than a drop
directory would need, and the message never passes through the queue.

The queue trusts nothing in a commit but the recipients' addresses and
routes and the fields it logs: the state of each recipient, the attempts
and the size are its own. A refusal is an answer, not an error:
{"reply": "452 ..."}, which smtp passes to its client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common import ipc, log
from common.config import Config
from mta.queue import space, spool
from mta.queue.envelope import LMTP, SMTP, Envelope, Recipient

# Room for what we add in front of the client's data (our Received header,
# and on submission Message-ID and Date), which SMTP's SIZE limit does not count.
OWN_HEADER_ROOM = 64 * 1024
# A file in incoming/ is touched at least once a minute while its client
# sends (mta/smtp_incoming.py); one untouched for this long (or twice the
# session timeout) was left by a process that died.
STALE_INCOMING = 600.0

TOO_BIG_REPLY = "552 5.3.4 Message size exceeds fixed maximum message size"
LOCAL_ERROR_REPLY = "451 4.3.0 Local error in processing, try again later"


def storage_reply(error: OSError) -> str:
    return space.NO_ROOM_REPLY if error.errno in (errno.ENOSPC, errno.EDQUOT) \
        else LOCAL_ERROR_REPLY


def size_limit(max_message_size: int) -> int:
    return max_message_size + OWN_HEADER_ROOM


def _text(fields: dict[str, Any], key: str) -> str:
    value = fields.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key}: not a string")
    return value


def envelope_from(qid: str, fields: dict[str, Any], size: int) -> Envelope:
    """The envelope of a message smtp hands over, from the fields a commit carries."""
    raw = fields.get("recipients")
    if not isinstance(raw, list) or not raw:
        raise ValueError("recipients: a non-empty list is needed")
    recipients = []
    for r in raw:
        if not isinstance(r, dict):
            raise ValueError("recipients: each one is an object")
        route = _text(r, "route")
        if route not in (LMTP, SMTP):
            raise ValueError(f"recipients: unknown route {route!r}")
        address = _text(r, "address")
        if "@" not in address:
            raise ValueError(f"recipients: {address!r} is not an address")
        recipients.append(Recipient(address=address, original=_text(r, "original") or address,
                                    route=route))
    auth_user = fields.get("auth_user")
    if auth_user is not None and not isinstance(auth_user, str):
        raise ValueError("auth_user: not a string")
    created = fields.get("created")
    return Envelope(
        id=qid, sender=_text(fields, "sender"), recipients=recipients,
        created=float(created) if isinstance(created, (int, float)) else time.time(),
        size=size, helo=_text(fields, "helo"), client=_text(fields, "client"),
        auth_user=auth_user, body_8bit=bool(fields.get("body_8bit")),
        smtputf8=bool(fields.get("smtputf8")),
    )


class Intake:
    """queue.sock's handlers; on_commit schedules what was committed."""

    def __init__(self, cfg: Config, on_commit: Callable[[Envelope], Awaitable[None]]) -> None:
        self.cfg = cfg
        self.root = cfg.paths.spool
        self.on_commit = on_commit
        self.log = log.get()

    async def open(self, req: dict[str, Any]) -> dict[str, Any] | ipc.WithFds:
        if not space.fits(self.root, self.cfg.mta.max_message_size):
            self.log.warning("spool below its free-space reserve: new mail refused",
                             free=space.free_bytes(self.root),
                             reserve=space.reserve(self.cfg.mta.max_message_size))
            return {"reply": space.NO_ROOM_REPLY}
        qid = spool.new_id()
        try:
            fd = await asyncio.to_thread(spool.create_incoming, self.root, qid)
        except OSError as e:
            self.log.error("spooling failed", queue_id=qid, error=str(e))
            return {"reply": storage_reply(e)}
        return ipc.WithFds({"id": qid}, [fd])

    async def commit(self, req: dict[str, Any]) -> dict[str, Any]:
        qid = str(req.get("id", ""))
        if not spool.valid_id(qid):
            raise ValueError(f"bad queue id {qid!r}")
        fields = req.get("envelope")
        if not isinstance(fields, dict):
            raise ValueError("commit without an envelope")
        reply = await asyncio.to_thread(self._commit, qid, fields)
        if isinstance(reply, Envelope):
            await self.on_commit(reply)
            return {}
        return {"reply": reply}

    def _commit(self, qid: str, fields: dict[str, Any]) -> Envelope | str:
        """The committed envelope, or the reply that refuses the message (its files gone)."""
        if spool.is_committed(self.root, qid):
            # Sent again after a reload replaced this process before it answered.
            return spool.commit(self.root, qid)
        try:
            size = spool.incoming_size(self.root, qid)
        except FileNotFoundError:
            self.log.error("commit of a message that is not in incoming/", queue_id=qid)
            return LOCAL_ERROR_REPLY
        limit = size_limit(self.cfg.mta.max_message_size)
        if size > limit:
            self.log.warning("message over the size limit at commit", queue_id=qid,
                             size=size, limit=limit)
            spool.discard_incoming(self.root, qid)
            return TOO_BIG_REPLY
        try:
            env = envelope_from(qid, fields, size)
            spool.seal_incoming(self.root, env)
            return spool.commit(self.root, qid)
        except (ValueError, TypeError) as e:
            spool.discard_incoming(self.root, qid)
            raise ValueError(f"{qid}: bad envelope: {e}") from None
        except OSError as e:
            self.log.error("spooling failed", queue_id=qid, error=str(e))
            spool.discard_incoming(self.root, qid)
            return storage_reply(e)

    async def discard(self, req: dict[str, Any]) -> dict[str, Any]:
        qid = str(req.get("id", ""))
        if not spool.valid_id(qid):
            raise ValueError(f"bad queue id {qid!r}")
        # Only incoming/ is touched: a committed message is not smtp's to remove.
        await asyncio.to_thread(spool.discard_incoming, self.root, qid)
        return {}

    def handlers(self) -> dict[str, ipc.Handler]:
        return {"open": self.open, "commit": self.commit, "discard": self.discard}

    # -- what dead smtp processes left ------------------------------------------

    def clean(self) -> None:
        """Files in incoming/ left by a process that died were never acknowledged."""
        inc = self.root / spool.INCOMING
        now = time.time()
        stale = max(STALE_INCOMING, 2 * self.cfg.mta.session_timeout)
        for name in os.listdir(inc):
            with contextlib.suppress(FileNotFoundError):
                if now - (inc / name).stat().st_mtime < stale:
                    continue
                qid = name.partition(".")[0]
                spool.discard_incoming(self.root, qid)
                self.log.info("discarded an unacknowledged message", queue_id=qid)

    async def clean_now_and_then(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.clean)
            except OSError as e:
                self.log.warning("clean-up of incoming/ failed", error=str(e))
            await asyncio.sleep(STALE_INCOMING / 2)
