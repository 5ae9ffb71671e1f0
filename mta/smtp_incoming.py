"""One message arriving over SMTP, streamed into the queue as its DATA comes.

`Incoming` is the `MessageSink` (common/smtpdata.py) that the session's
handler opens before the 354: it asks the queue for a message file (the
queue's `open`, mta/queue/intake.py: an id and a write-only descriptor; this
process has no right to the spool), writes our Received header, takes the
client's header (refusing a message that has travelled too far, adding
Message-ID and Date on submission) and body in pieces, and at the end hands
the envelope over with the queue's `commit`, which makes the message durable
before it answers; only then does the client hear 250.

Writes go to a worker thread in pieces of up to `FLUSH_SIZE`, so a session
holds at most that much of its body. A full disk (or quota) while writing is
remembered, the rest of the data is read and dropped, and the reply is
452 4.3.1 with the partial file removed (the queue's `discard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from email.utils import formatdate

from common import ipc, log
from common.msgheader import Header
from common.unixchan import close_fds
from mta.checks.authresults import remove_claiming
from mta.queue.envelope import Envelope
from mta.queue.intake import storage_reply

FLUSH_SIZE = 64 * 1024
# A file in incoming/ is touched at least this often while its client sends,
# so the queue's cleaner can tell it from one left by a dead process.
FLUSH_INTERVAL = 60.0

QUEUE_DOWN_REPLY = "451 4.3.0 Queue unavailable, try again later"
HOPS_REPLY = "554 5.4.6 Too many hops"
# What a commit may carry: the queue keeps its own counts and states.
ENVELOPE_FIELDS = ("sender", "created", "helo", "client", "auth_user", "body_8bit", "smtputf8")

# Discards sent from synchronous code, kept until they are done.
_background: set[asyncio.Task] = set()


async def settle() -> None:
    """Wait for the discards sent in the background (at shutdown, and in tests)."""
    if _background:
        await asyncio.wait(set(_background))


def missing_fields(header: Header, qid: str, hostname: str) -> bytes:
    """Message-ID and Date for a submitted message that has none (RFC 6409 8.3, 8.4)."""
    added = b""
    if not header.has("message-id"):
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        added += f"Message-ID: <{stamp}.{qid}@{hostname}>\r\n".encode("ascii", "replace")
    if not header.has("date"):
        added += f"Date: {formatdate(localtime=True)}\r\n".encode("ascii")
    return added


def commit_fields(env: Envelope) -> dict[str, object]:
    fields: dict[str, object] = {k: getattr(env, k) for k in ENVELOPE_FIELDS}
    fields["recipients"] = [{k: v for k, v in asdict(r).items()
                             if k in ("address", "original", "route")} for r in env.recipients]
    return fields


class DropFile:
    """The write-only descriptor the queue handed over: write..., then close.

    Blocking; callable from any thread. A lock keeps the calls in order, so
    a close that comes while a write runs in another thread waits for it
    (and never closes a descriptor that the write still uses).
    """

    def __init__(self, fd: int) -> None:
        self.size = 0
        self._fd: int | None = fd
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise ValueError("the message file is closed")
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            self.size += len(data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                with contextlib.suppress(OSError):
                    os.close(fd)


class Incoming:
    def __init__(self, env: Envelope, queue: ipc.Client, *, rcpts: list[str],
                 hop_limit: int, complete_for: str | None, listener: str,
                 authserv: str) -> None:
        """`complete_for`: our hostname, on submission, for the fields it adds;
        `authserv`: our authserv-id, which no incoming Authentication-Results may claim."""
        self.env = env
        self.rcpts = rcpts
        self.queue = queue
        self.hop_limit = hop_limit
        self.complete_for = complete_for
        self.listener = listener
        self.authserv = authserv
        self.file: DropFile | None = None
        self.log = log.get()
        self._buf = bytearray()
        self._flushed = time.monotonic()
        self._error: OSError | None = None
        self._committing = False
        self._note: dict[str, object] = {}

    async def open(self, received: Callable[[Envelope], bytes]) -> str | None:
        """Get the message file from the queue and start it with our Received
        header (made by received() once the id is known); a reply if that fails."""
        try:
            result, fds = await self.queue.call_fds("open")
        except ipc.IPCError as e:
            self.log.error("queue unavailable", error=str(e))
            return QUEUE_DOWN_REPLY
        if "reply" in result or len(fds) != 1 or "id" not in result:
            close_fds(fds)
            return str(result.get("reply") or QUEUE_DOWN_REPLY)
        self.env.id = str(result["id"])
        self.file = DropFile(fds[0])
        self.log = self.log.bind(queue_id=self.env.id)
        self._buf += received(self.env)
        return None

    async def header(self, header: Header) -> str | None:
        hops = header.count("received", "delivered-to")
        if hops > self.hop_limit:
            self._note["hops"] = hops  # for the log line of discard()
            return HOPS_REPLY
        raw = header.raw
        if header.has("authentication-results"):
            # RFC 8601 5: a field from outside claiming our authserv-id would
            # pass for our own verdict in the user's filters; it goes.
            raw = remove_claiming(raw, self.authserv)
            if len(raw) != len(header.raw):
                self.log.info("removed Authentication-Results claiming our authserv-id")
        self._buf += raw
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
        if self._error is not None or not data or self.file is None:
            return
        try:
            await asyncio.to_thread(self.file.write, data)
        except OSError as e:
            # Read on to the end of the data; the reply comes then (RFC 5321 4.2.5).
            self._error = e

    def _write_last(self, data: bytes) -> None:
        """The rest of the message and the close: one trip to a thread, not two."""
        assert self.file is not None
        try:
            if data:
                self.file.write(data)
        finally:
            self.file.close()
        self.env.size = self.file.size

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
            result = await self.queue.call("commit", idempotent=True, id=self.env.id,
                                           envelope=commit_fields(self.env))
        except ipc.IPCError as e:
            self.log.error("commit failed", error=str(e))
            self._committing = False
            await self.drop("commit failed")
            return QUEUE_DOWN_REPLY
        if "reply" in result:  # refused by the queue, which removed the file
            self._log_not_taken(str(result["reply"]))
            return str(result["reply"])
        env = self.env
        self.log.info("accepted", sender=env.sender, size=env.size,
                      rcpts=self.rcpts, client=env.client,
                      listener=self.listener)
        return f"250 2.0.0 Ok: queued as {env.id}"

    async def drop(self, reason: str) -> None:
        """A refused message's file is gone before the client hears the refusal."""
        if self._committing:
            return  # the queue may have it: what it did not take, its cleaner removes
        self._buf = bytearray()
        self._log_not_taken(reason)
        await self._discard()

    async def _discard(self) -> None:
        if self.file is None:
            return
        await asyncio.to_thread(self.file.close)  # after any write still running
        try:
            await self.queue.call("discard", idempotent=True, id=self.env.id)
        except ipc.IPCError as e:  # what is left, the queue's cleaner removes
            self.log.warning("discard failed", error=str(e))

    def _log_not_taken(self, reason: str) -> None:
        self.log.info("message not taken", reason=reason, client=self.env.client,
                      listener=self.listener, **self._note)

    def discard(self, reason: str) -> None:
        """For a transaction that ends without a reply (lost connection, a
        refusal at the header): the file goes in the background, not awaited."""
        self._buf = bytearray()
        if self._committing:
            # The queue may have the message already; what it did not take,
            # its cleaner of incoming/ removes.
            return
        self._log_not_taken(reason)
        try:
            task = asyncio.get_running_loop().create_task(self._discard())
        except RuntimeError:  # the loop is closing: the queue's cleaner removes it
            if self.file is not None:
                self.file.close()
            return
        _background.add(task)
        task.add_done_callback(_background.discard)
