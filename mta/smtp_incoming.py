"""One message arriving over SMTP, written into the spool as its DATA comes.

`Incoming` is the `MessageSink` (common/smtpdata.py) that the session's
handler opens before the 354: it creates the spool file and writes our
Received header, takes the client's header (refusing a message that has
travelled too far, adding Message-ID and Date on submission) and body in
pieces, and at the end makes the message ours exactly as a whole one was:
the message and its envelope fsynced, then the queue's commit, then 250.

Writes go to a worker thread in pieces of up to `FLUSH_SIZE`, so a session
holds at most that much of its body. A full disk (or quota) while writing is
remembered, the rest of the data is read and dropped, and the reply is
452 4.3.1 with the partial file removed.
"""

from __future__ import annotations

import asyncio
import errno
import time
from email.utils import formatdate
from pathlib import Path

from common import ipc, log
from common.msgheader import Header
from mta.queue import spool
from mta.queue.envelope import Envelope

FLUSH_SIZE = 64 * 1024
# A file in incoming/ is touched at least this often while its client sends,
# so the smtp process's cleaner can tell it from one left by a dead process.
FLUSH_INTERVAL = 60.0

NO_ROOM_REPLY = "452 4.3.1 Insufficient system storage, try again later"
LOCAL_ERROR_REPLY = "451 4.3.0 Local error in processing, try again later"
HOPS_REPLY = "554 5.4.6 Too many hops"


def storage_reply(error: OSError) -> str:
    return NO_ROOM_REPLY if error.errno in (errno.ENOSPC, errno.EDQUOT) else LOCAL_ERROR_REPLY


def missing_fields(header: Header, qid: str, hostname: str) -> bytes:
    """Message-ID and Date for a submitted message that has none (RFC 6409 8.3, 8.4)."""
    added = b""
    if not header.has("message-id"):
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        added += f"Message-ID: <{stamp}.{qid}@{hostname}>\r\n".encode("ascii", "replace")
    if not header.has("date"):
        added += f"Date: {formatdate(localtime=True)}\r\n".encode("ascii")
    return added


class Incoming:
    def __init__(self, root: Path, env: Envelope, queue: ipc.Client, *, rcpts: list[str],
                 hop_limit: int, complete_for: str | None, listener: str) -> None:
        """`complete_for`: our hostname, on submission, for the fields it adds."""
        self.env = env
        self.rcpts = rcpts
        self.queue = queue
        self.hop_limit = hop_limit
        self.complete_for = complete_for
        self.listener = listener
        self.file = spool.IncomingFile(root, env.id)
        self.log = log.get().bind(queue_id=env.id)
        self._buf = bytearray()
        self._flushed = time.monotonic()
        self._error: OSError | None = None
        self._committing = False
        self._note: dict[str, object] = {}

    async def open(self, received: bytes) -> str | None:
        """Create the file and write our Received header; a reply if that fails."""
        try:
            await asyncio.to_thread(self.file.open)
        except OSError as e:
            self.log.error("spooling failed", error=str(e))
            return storage_reply(e)
        self._buf += received
        return None

    async def header(self, header: Header) -> str | None:
        hops = header.count("received", "delivered-to")
        if hops > self.hop_limit:
            self._note["hops"] = hops  # for the log line of discard()
            return HOPS_REPLY
        self._buf += header.raw
        if self.complete_for is not None:
            self._buf += missing_fields(header, self.env.id, self.complete_for)
        await self._maybe_flush()
        return None

    async def write(self, data: bytes) -> None:
        if self._error is None:
            self._buf += data
            await self._maybe_flush()

    async def _maybe_flush(self) -> None:
        if len(self._buf) >= FLUSH_SIZE or time.monotonic() - self._flushed > FLUSH_INTERVAL:
            await self._flush()

    async def _flush(self) -> None:
        data, self._buf = bytes(self._buf), bytearray()
        self._flushed = time.monotonic()
        if self._error is not None or not data:
            return
        try:
            await asyncio.to_thread(self.file.write, data)
        except OSError as e:
            # Read on to the end of the data; the reply comes then (RFC 5321 4.2.5).
            self._error = e

    def _write_last(self, data: bytes) -> None:
        """The rest of the message, then the fsyncs: one trip to a thread, not two."""
        if data:
            self.file.write(data)
        self.env.size = self.file.size
        self.file.finish(self.env)

    async def finish(self) -> str:
        data, self._buf = bytes(self._buf), bytearray()
        if self._error is None:
            try:
                await asyncio.to_thread(self._write_last, data)
            except OSError as e:
                self._error = e
        if self._error is not None:
            self.log.error("spooling failed", error=str(self._error))
            await self.drop("spooling failed")
            return storage_reply(self._error)
        try:
            self._committing = True
            # Sent again if a reload replaced the queue process before it answered.
            await self.queue.call("commit", idempotent=True, id=self.env.id)
        except ipc.IPCError as e:
            self.log.error("commit failed", error=str(e))
            self._committing = False
            await self.drop("commit failed")
            return "451 4.3.0 Queue unavailable, try again later"
        env = self.env
        self.log.info("accepted", sender=env.sender, size=env.size,
                      rcpts=self.rcpts, client=env.client,
                      listener=self.listener)
        return f"250 2.0.0 Ok: queued as {env.id}"

    async def drop(self, reason: str) -> None:
        """A refused message's file is gone before the client hears the refusal."""
        if self._committing:
            return  # the queue may have it: what it did not take, the cleaner removes
        self._buf = bytearray()
        self._log_not_taken(reason)
        await asyncio.to_thread(self.file.discard)

    def _log_not_taken(self, reason: str) -> None:
        self.log.info("message not taken", reason=reason, client=self.env.client,
                      listener=self.listener, **self._note)

    def discard(self, reason: str) -> None:
        """For a transaction that ends without a reply (lost connection, a
        refusal at the header): the file goes in a thread, not awaited."""
        self._buf = bytearray()
        if self._committing:
            # The queue may have the message already; what it did not take,
            # the cleaner of incoming/ removes.
            return
        self._log_not_taken(reason)
        # In a thread, after any write still running there (the file's lock).
        try:
            asyncio.get_running_loop().run_in_executor(None, self.file.discard)
        except RuntimeError:  # the loop is closing: no thread to ask
            self.file.discard()
