"""Framed messages between the processes of one daemon.

A frame is a 4-byte big-endian length and a JSON object. A request is
`{"seq": n, "op": name, "args": {...}}`; its answer is `{"seq": n, "ok":
true, "result": {...}}` or `{"seq": n, "ok": false, "error": "..."}`.
Requests on one connection are served concurrently and answered as they
finish.

The listening sockets are bound by the parent and handed to the serving
child by descriptor, so a client that connects while that child restarts
waits in the backlog instead of failing; a client reconnects by path after
its peer died, so restarting one child never requires restarting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import log, privileges

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


class Server:
    """Answers requests arriving on a listening socket with the named handlers."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.inflight: set[asyncio.Task] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.log = log.get()

    async def start(self, sock: socket.socket) -> Server:
        sock.setblocking(False)
        self._server = await asyncio.start_unix_server(self._on_client, sock=sock)
        return self

    async def _run_one(self, msg: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        handler = self.handlers.get(str(msg.get("op")))
        args = msg.get("args")
        reply: dict[str, Any]
        if handler is None or not isinstance(args, dict):
            reply = {"ok": False, "error": f"bad request for op {msg.get('op')!r}"}
        else:
            try:
                reply = {"ok": True, "result": await handler(args)}
            except Exception as e:  # a failing request must not take the server down
                self.log.exception("ipc request failed", op=msg.get("op"))
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        reply["seq"] = msg.get("seq")
        if not writer.is_closing():
            writer.write(encode(reply))

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        self.writers.add(writer)
        try:
            while data := await reader.read(65536):
                for msg in decoder.feed(data):
                    t = asyncio.create_task(self._run_one(msg, writer))
                    self.inflight.add(t)
                    t.add_done_callback(self.inflight.discard)
                await writer.drain()
        except (IPCError, ConnectionError) as e:
            self.log.warning("ipc connection dropped", error=str(e))
        except asyncio.CancelledError:
            pass  # the process is ending
        finally:
            self.writers.discard(writer)
            writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    async def drain(self, grace: float = 10.0) -> None:
        """Stop for good without losing an answer: no new connection, no new
        request read; what is being served is answered, then connections close
        (a client then reconnects, to the process that replaced this one)."""
        self.close()
        for w in self.writers:
            w.transport.pause_reading()
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=grace)
        for w in list(self.writers):
            w.close()


async def serve(sock: socket.socket, handlers: dict[str, Handler]) -> Server:
    return await Server(handlers).start(sock)


class Client:
    """Calls a peer by socket path; connects lazily and again after a failure."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._reader_task: asyncio.Task | None = None

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(self.path), self.timeout
                )
            except (OSError, TimeoutError) as e:
                raise IPCError(f"cannot reach {self.path}: {e}") from None
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_loop(reader, writer))
            return writer

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        decoder = FrameDecoder()
        try:
            while data := await reader.read(65536):
                for msg in decoder.feed(data):
                    fut = self._pending.pop(msg.get("seq"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except (IPCError, ConnectionError):
            pass
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
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
        try:
            return await self._call(op, timeout, args)
        except _Closed:
            if not idempotent:
                raise
            return await self._call(op, timeout, args)

    async def _call(self, op: str, timeout: float | None, args: dict[str, Any]) -> dict[str, Any]:
        writer = await self._connect()
        seq = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        writer.write(encode({"seq": seq, "op": op, "args": args}))
        try:
            await writer.drain()
            reply = await asyncio.wait_for(fut, timeout or self.timeout)
        except ConnectionError as e:
            self._pending.pop(seq, None)
            raise _Closed(f"{op} to {self.path}: {e}") from None
        except TimeoutError:
            self._pending.pop(seq, None)
            raise IPCError(f"{op} to {self.path}: timed out") from None
        if not reply.get("ok"):
            raise IPCError(f"{op} to {self.path} failed: {reply.get('error')}")
        return reply.get("result") or {}

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
