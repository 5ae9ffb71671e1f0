"""A server connection's bytes, for protocols that switch to TLS mid-session.

asyncio's StreamReader keeps what it had buffered when StreamWriter.start_tls()
upgrades the transport. Bytes that arrive in the clear after a client's
STARTTLS (or STLS) and before the handshake (a man in the middle's command
injection, CVE-2011-0411 in Postfix) would then be read as if they had come
over TLS. This stream owns its buffer and drops it at the moment the
transport changes hands, with no await in between, so nothing sent in the
clear is ever read after the handshake.

    server = await loop.create_server(lambda: Stream(on_connect), sock=sock, ssl=ctx)
    # on_connect(stream) starts the session's task; it then uses
    # await stream.read(), stream.write(), await stream.drain(),
    # await stream.start_tls(ctx), stream.close()
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

# Stop reading the socket while this much waits unread (a client pipelining
# faster than we answer); resume once the session took it.
READ_HIGH_WATER = 256 * 1024


class Stream(asyncio.Protocol):
    def __init__(self, on_connect: Callable[[Stream], None]) -> None:
        self._on_connect = on_connect
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.secure = False

    # -- the protocol side (called by the event loop) -----------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # With ssl= on the server, this comes after the handshake.
        self.secure = transport.get_extra_info("sslcontext") is not None
        self._on_connect(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._wake()
        if len(self._buf) > READ_HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        self._wake()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _wake(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    # -- the session side -----------------------------------------------------------

    @property
    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if isinstance(peer, tuple) else "local"

    async def read(self) -> bytes:
        """Whatever has arrived (waiting for at least one byte); b"" at the end."""
        while not self._buf and not self._eof:
            self._readable = asyncio.get_running_loop().create_future()
            try:
                await self._readable
            finally:
                self._readable = None
        data = bytes(self._buf)
        self._buf.clear()
        if self._reading_paused and self.transport is not None and not self._lost:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def buffered_out(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport else 0

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("connection lost")
        await self._writable.wait()
        if self._lost:
            raise ConnectionResetError("connection lost")

    async def start_tls(self, context: ssl.SSLContext,
                        handshake_timeout: float | None = None) -> int:
        """Turn the connection into a TLS server; the plaintext bytes dropped.

        Raises ssl.SSLError, ConnectionError or TimeoutError when the
        handshake fails (the transport is closed then).
        """
        await self.drain()
        # From here to the transport's hand-over there is no await: nothing
        # can arrive in between and be taken for TLS data.
        dropped = len(self._buf)
        self._buf.clear()
        self._reading_paused = False  # start_tls resumes reading itself
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self.transport, self, context, server_side=True,
                                         ssl_handshake_timeout=handshake_timeout)
        if transport is None:
            raise ConnectionResetError("connection lost during the TLS handshake")
        self.transport = transport
        self.secure = True
        return dropped

    def hold(self) -> bytes:
        """Stop reading the socket, and hand back what arrived unread: another
        process is about to read it (mdad's login hands connections over)."""
        if self.transport is not None and not self._lost:
            self.transport.pause_reading()
            self._reading_paused = True
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def release(self) -> None:
        """Read again after hold(): the connection came back."""
        if self._reading_paused and self.transport is not None and not self._lost:
            self._reading_paused = False
            self.transport.resume_reading()

    def abandon(self) -> None:
        """After hold() and a hand-over: close this process's descriptor, at once
        and without a shutdown, so the connection lives on in the other one."""
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
