"""Framed messages between the processes of one daemon.

A frame is a 4-byte big-endian length and a JSON object. A request is
`{"seq": n, "op": name, "args": {...}}`; its answer is `{"seq": n, "ok":
true, "result": {...}}` or `{"seq": n, "ok": false, "error": "..."}`.
Requests on one connection are served concurrently and answered as they
finish. A frame may carry open descriptors (`"fds": n`, sent beside its
bytes, common/unixchan.py): that is how one process hands another a file
it may write or read without any right to the directory it lives in.

The listening sockets are bound by the parent and handed to the serving
child by descriptor, so a client that connects while that child restarts
waits in the backlog instead of failing; a client reconnects by path after
its peer died, so restarting one child never requires restarting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import log, privileges
from common.unixchan import Channel, ChannelError, close_fds

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class IPCError(Exception):
    """The peer is unreachable, answered late, or reported a failure."""


class _Closed(IPCError):
    """The connection closed before the answer came."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise IPCError(f"frame of {len(body)} bytes is over the limit")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Bytes in, messages out; knows nothing of sockets."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out = []
        while len(self._buf) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise IPCError(f"frame of {size} bytes is over the limit")
            if len(self._buf) < _HEADER.size + size:
                break
            body = bytes(self._buf[_HEADER.size : _HEADER.size + size])
            del self._buf[: _HEADER.size + size]
            try:
                msg = json.loads(body)
            except ValueError as e:
                raise IPCError(f"frame is not JSON: {e}") from None
            if not isinstance(msg, dict):
                raise IPCError("frame is not a JSON object")
            out.append(msg)
        return out


def bind_unix(path: Path, mode: int = 0o660, uid: int | None = None,
              gid: int | None = None) -> socket.socket:
    """Bind a listening Unix socket at path, replacing a stale one.

    Connecting needs write permission on the socket file, so owner, group
    and mode say exactly which processes may talk to the one serving it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    privileges.own(path, uid, gid, mode)
    sock.listen(128)
    return sock


class WithFds:
    """A handler's result together with descriptors to send with it; the
    server closes them once sent (they pass to the caller)."""

    def __init__(self, result: dict[str, Any], fds: list[int]) -> None:
        self.result = result
        self.fds = fds


def takes_fds(handler: Callable[[dict[str, Any], list[int]], Awaitable[Any]]) -> Handler:
    """Mark a handler that wants the descriptors sent with its request: it is
    called as handler(args, fds) and owns them (closes what it keeps no use for)."""
    # A wrapper carries the mark, so a bound method (which takes no attributes) can be marked too.
    # (*a: as a decorator in a class body the wrapper becomes the method, called with self.)
    @functools.wraps(handler)
    async def wrapped(*a: Any) -> Any:
        return await handler(*a)
    wrapped._takes_fds = True  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


class Server:
    """Answers requests arriving on a listening socket with the named handlers."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.inflight: set[asyncio.Task] = set()
        self.channels: set[Channel] = set()
        self._accepting: asyncio.Task | None = None
        self._readers: set[asyncio.Task] = set()
        self._paused = asyncio.Event()
        self.log = log.get()

    async def start(self, sock: socket.socket) -> Server:
        sock.setblocking(False)
        self._accepting = asyncio.create_task(self._accept_loop(sock))
        return self

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as e:
                # EMFILE and the like: the peer waits in the backlog meanwhile.
                self.log.warning("ipc accept failed", error=str(e))
                await asyncio.sleep(0.1)
                continue
            t = asyncio.create_task(self._on_client(Channel(conn)))
            self._readers.add(t)
            t.add_done_callback(self._readers.discard)

    async def _run_one(self, msg: dict[str, Any], fds: list[int], chan: Channel) -> None:
        handler = self.handlers.get(str(msg.get("op")))
        args = msg.get("args")
        reply: dict[str, Any]
        out_fds: list[int] = []
        if handler is None or not isinstance(args, dict):
            close_fds(fds)
            reply = {"ok": False, "error": f"bad request for op {msg.get('op')!r}"}
        else:
            try:
                if getattr(handler, "_takes_fds", False):
                    result = await handler(args, fds)  # type: ignore[call-arg]
                else:
                    close_fds(fds)
                    result = await handler(args)
                if isinstance(result, WithFds):
                    result, out_fds = result.result, result.fds
                reply = {"ok": True, "result": result}
            except Exception as e:  # a failing request must not take the server down
                self.log.exception("ipc request failed", op=msg.get("op"))
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        reply["seq"] = msg.get("seq")
        if out_fds:
            reply["fds"] = len(out_fds)
        try:
            if not chan.closed:
                await chan.send(encode(reply), out_fds)
        except (OSError, IPCError) as e:
            self.log.warning("ipc answer not sent", op=msg.get("op"), error=str(e))
        finally:
            close_fds(out_fds)

    async def _on_client(self, chan: Channel) -> None:
        decoder = FrameDecoder()
        self.channels.add(chan)
        try:
            while not self._paused.is_set() and (data := await chan.recv()):
                for msg in decoder.feed(data):
                    fds = chan.take_fds(int(msg.pop("fds", 0) or 0))
                    t = asyncio.create_task(self._run_one(msg, fds, chan))
                    self.inflight.add(t)
                    t.add_done_callback(self.inflight.discard)
        except (IPCError, OSError, ValueError) as e:
            self.log.warning("ipc connection dropped", error=str(e))
        except asyncio.CancelledError:
            pass  # the process is ending
        finally:
            self.channels.discard(chan)
            if not self._paused.is_set():
                chan.close()

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()

    async def wait_closed(self) -> None:
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting

    async def drain(self, grace: float = 10.0) -> None:
        """Stop for good without losing an answer: no new connection, no new
        request read; what is being served is answered, then connections close
        (a client then reconnects, to the process that replaced this one)."""
        self.close()
        self._paused.set()
        channels = list(self.channels)
        for t in list(self._readers):
            t.cancel()
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=grace)
        for chan in channels:
            chan.close()


async def serve(sock: socket.socket, handlers: dict[str, Handler]) -> Server:
    return await Server(handlers).start(sock)


class Client:
    """Calls a peer by socket path; connects lazily and again after a failure."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._chan: Channel | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._reader_task: asyncio.Task | None = None

    async def _connect(self) -> Channel:
        async with self._lock:
            if self._chan is not None and not self._chan.closed:
                return self._chan
            try:
                chan = await asyncio.wait_for(Channel.connect(self.path), self.timeout)
            except (OSError, TimeoutError) as e:
                raise IPCError(f"cannot reach {self.path}: {e}") from None
            self._chan = chan
            self._reader_task = asyncio.create_task(self._read_loop(chan))
            return chan

    async def _read_loop(self, chan: Channel) -> None:
        decoder = FrameDecoder()
        try:
            while data := await chan.recv():
                for msg in decoder.feed(data):
                    fds = chan.take_fds(int(msg.pop("fds", 0) or 0))
                    fut = self._pending.pop(msg.get("seq"), None)
                    if fut is None or fut.done():
                        close_fds(fds)  # an answer no one waits for any more
                    else:
                        fut.set_result((msg, fds))
        except (IPCError, OSError, ValueError):
            pass
        finally:
            chan.close()
            if self._chan is chan:
                self._chan = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(_Closed(f"{self.path} closed the connection"))
            self._pending.clear()

    async def call(self, op: str, timeout: float | None = None, idempotent: bool = False,
                   **args: Any) -> dict[str, Any]:
        """Send one request and return its result; IPCError when none comes.

        An idempotent request whose connection closed before its answer (the
        peer was replaced by a reload) is sent once more on a new connection.
        """
        result, fds = await self.call_fds(op, timeout=timeout, idempotent=idempotent, **args)
        close_fds(fds)
        return result

    async def call_fds(self, op: str, fds: list[int] | tuple[int, ...] = (),
                       timeout: float | None = None, idempotent: bool = False,
                       **args: Any) -> tuple[dict[str, Any], list[int]]:
        """call(), sending fds with the request (the caller keeps them) and
        returning the descriptors that came with the answer (the caller's to close)."""
        try:
            return await self._call(op, timeout, args, fds)
        except _Closed:
            if not idempotent:
                raise
            return await self._call(op, timeout, args, fds)

    async def _call(self, op: str, timeout: float | None, args: dict[str, Any],
                    fds: list[int] | tuple[int, ...]) -> tuple[dict[str, Any], list[int]]:
        chan = await self._connect()
        seq = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        frame: dict[str, Any] = {"seq": seq, "op": op, "args": args}
        if fds:
            frame["fds"] = len(fds)
        try:
            await chan.send(encode(frame), fds)
            reply, got = await asyncio.wait_for(fut, timeout or self.timeout)
        except (ConnectionError, ChannelError) as e:
            self._pending.pop(seq, None)
            # A send that failed (EPIPE: the peer was replaced by a reload) can come
            # before the read loop sees the close: drop the channel here, so a retry
            # connects anew instead of writing to the dead one again.
            chan.close()
            if self._chan is chan:
                self._chan = None
            raise _Closed(f"{op} to {self.path}: {e}") from None
        except TimeoutError:
            self._pending.pop(seq, None)
            raise IPCError(f"{op} to {self.path}: timed out") from None
        if not reply.get("ok"):
            close_fds(got)
            raise IPCError(f"{op} to {self.path} failed: {reply.get('error')}")
        return reply.get("result") or {}, got

    async def close(self) -> None:
        if self._chan is not None:
            self._chan.close()
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
