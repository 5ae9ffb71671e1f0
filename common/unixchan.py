"""A Unix stream connection that carries descriptors beside its bytes (SCM_RIGHTS).

asyncio's stream transports read with recv() and drop ancillary data, so
the processes of a daemon that hand each other open files (the queue gives
smtp the file a message is written into, and the relay the one it reads
from) speak through this instead: non-blocking sendmsg/recvmsg, woken by
the event loop's reader and writer callbacks.

Descriptors travel with the first byte of the data they are sent with, so
a receiver that reads in order has a frame's descriptors by the time it has
the frame. Received descriptors are the receiver's to close.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import os
import socket

# At most this many descriptors in one sendmsg, and waiting unclaimed: a
# peer that sends more is broken, and the connection is closed.
MAX_FDS = 16
MAX_UNCLAIMED = 64
READ_SIZE = 256 * 1024


class ChannelError(OSError):
    pass


def close_fds(fds) -> None:
    """Close received descriptors that no one will use (a peer's may be anything)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fds: collections.deque[int] = collections.deque()
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._waiters: set[asyncio.Future] = set()

    @classmethod
    async def connect(cls, path: str) -> Channel:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, path)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @property
    def closed(self) -> bool:
        return self._closed

    async def _wait(self, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = self.sock.fileno()
        if fd < 0:
            raise ChannelError("channel closed")

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)
        if writable:
            loop.add_writer(fd, ready)
        else:
            loop.add_reader(fd, ready)
        self._waiters.add(fut)
        try:
            await fut
        finally:
            self._waiters.discard(fut)
            # Once closed, close() removed it, and the number may be another socket's now.
            if not self._closed:
                (loop.remove_writer if writable else loop.remove_reader)(fd)

    async def recv(self) -> bytes:
        """The next bytes (b"" at end of stream); descriptors that came go to self.fds."""
        while True:
            if self._closed:
                return b""
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, READ_SIZE, MAX_FDS)
            except (BlockingIOError, InterruptedError):
                await self._wait(writable=False)
                continue
            except OSError:
                return b""
            self.fds.extend(fds)
            if flags & socket.MSG_CTRUNC or len(self.fds) > MAX_UNCLAIMED:
                self.close()
                raise ChannelError("peer sent more descriptors than a frame may carry")
            return data

    def take_fds(self, n: int) -> list[int]:
        if n > len(self.fds):
            raise ChannelError(f"frame announces {n} descriptors, {len(self.fds)} came")
        return [self.fds.popleft() for _ in range(n)]

    async def send(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
        """Send all of data, the descriptors with its first byte; the caller keeps them."""
        if len(fds) > MAX_FDS:
            raise ChannelError(f"{len(fds)} descriptors in one frame")
        async with self._send_lock:
            view = memoryview(data)
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            while view:
                if self._closed:
                    raise ChannelError("channel closed")
                try:
                    n = self.sock.sendmsg([view], anc)
                except (BlockingIOError, InterruptedError):
                    await self._wait(writable=True)
                    continue
                except OSError as e:
                    raise ConnectionError(str(e)) from None
                view, anc = view[n:], []

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A reader or writer waiting on the socket wakes, sees it closed, returns.
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        fd = self.sock.fileno()
        if fd >= 0:
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                loop = asyncio.get_running_loop()
                loop.remove_reader(fd)
                loop.remove_writer(fd)
        with contextlib.suppress(OSError):
            self.sock.close()
        close_fds(self.fds)
        self.fds.clear()
