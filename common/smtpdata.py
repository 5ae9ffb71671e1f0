"""SMTP DATA handed to the handler as it arrives, instead of as one joined message.

aiosmtpd's `smtp_DATA` keeps every line of a message in a list and joins
them, so each session holds its message (and more) in memory until the end.
`StreamingDataMixin.smtp_DATA` reads the same bytes from the same stream,
runs them through `DataReader` (the end, dot-unstuffing, bare CR and LF,
the size) and `HeaderReader` (the header section and its limits), and gives
them to a `MessageSink` that the handler's `handle_DATA_STREAM` hook opened
before the 354: only the header section is held, up to its limit.

A handler without that hook gets aiosmtpd's DATA unchanged.

Every reply comes after the end of the data, as RFC 5321 4.2.5 wants even
for a message that is refused: the client never reads a reply while it is
still sending. A client that goes silent in the middle of DATA is cut off
after the session timeout; one that keeps sending keeps it alive.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP

from common import log
from common.datareader import DataReader
from common.msgheader import TOO_LARGE, TOO_MANY_FIELDS, Header, HeaderReader

__all__ = ["MessageSink", "StreamingDataMixin"]

# How often, at most, reading DATA restarts the session timeout (seconds).
_TIMEOUT_RESTART = 1.0

TOO_BIG_REPLY = "552 5.3.4 Message too big"
LINE_TOO_LONG_REPLY = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
HEADER_REPLIES = {
    TOO_LARGE: "552 5.3.4 Message header too large",
    TOO_MANY_FIELDS: "552 5.3.4 Message header has too many header fields",
}


class MessageSink(Protocol):
    """Where one message goes while it arrives (the handler's, one per DATA)."""

    async def header(self, header: Header) -> str | None:
        """The header section, whole, to write (with whatever the sink adds to it);
        or a reply that refuses the message, given at the end of the data."""

    async def write(self, data: bytes) -> None:
        """More of the message after its header, in order."""

    async def finish(self) -> str:
        """The end of the data: make the message ours, or not; the reply."""

    async def drop(self, reason: str) -> None:
        """The message is refused at the end of its data: it is gone before
        the client hears the refusal."""

    def discard(self, reason: str) -> None:
        """The message is not taken because the client went away (or a bug
        ended the session): nothing waits for the clean-up."""


class StreamingDataMixin:
    """For an aiosmtpd SMTP subclass: limits on the header section, and DATA streamed."""

    def __init__(self, handler: Any, *, header_size_limit: int | None = None,
                 header_fields_limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)  # type: ignore[call-arg]
        self.header_size_limit = header_size_limit
        self.header_fields_limit = header_fields_limit

    @functools.wraps(SMTP.smtp_DATA)
    async def smtp_DATA(self, arg: str) -> None:
        smtp: Any = self  # aiosmtpd's SMTP, which this is mixed into
        if "DATA_STREAM" not in smtp._handle_hooks:
            await super().smtp_DATA(arg)  # type: ignore[misc]
            return
        # aiosmtpd's checks, in aiosmtpd's order and words.
        if await smtp.check_helo_needed() or await smtp.check_auth_needed("DATA"):
            return
        if not smtp.envelope.rcpt_tos:
            await smtp.push("503 Error: need RCPT command")
            return
        if arg:
            await smtp.push("501 Syntax: DATA")
            return
        opened = await smtp._call_handler_hook("DATA_STREAM")
        if isinstance(opened, str):  # refused before the 354 (no room to write it, say)
            smtp._set_post_data_state()
            await smtp.push(opened)
            return
        sink: MessageSink = opened
        try:
            reply = await self._receive(sink)
        except asyncio.CancelledError:
            # The connection was lost or timed out. Nothing was promised.
            sink.discard("connection lost during DATA")
            raise
        except Exception:
            # Where the data ends is not known here: reading on for commands
            # could run what the client sent as data. Close instead.
            log.get().exception("error during DATA", client=str(smtp.session.peer))
            sink.discard("error during DATA")
            self._close()
            return
        if reply is None:
            sink.discard("connection closed during DATA")
            self._close()
            return
        smtp._set_post_data_state()
        await smtp.push(reply)

    def _close(self) -> None:
        transport = self.transport  # type: ignore[attr-defined]
        if transport is not None:
            transport.close()

    async def _receive(self, sink: MessageSink) -> str | None:
        """The reply once the data has ended; None if the stream ended first."""
        smtp: Any = self
        await smtp.push("354 End data with <CR><LF>.<CR><LF>")
        data = DataReader(smtp.data_size_limit, smtp.line_length_limit)
        head = HeaderReader(self.header_size_limit, self.header_fields_limit)
        refused: str | None = None
        loop = asyncio.get_running_loop()
        restarted = loop.time()
        while not data.done:
            piece = await self._read_piece()
            if piece is None:
                return None
            if loop.time() - restarted > _TIMEOUT_RESTART:
                smtp._reset_timeout()  # the client is sending: not idle
                restarted = loop.time()
            out = data.feed(piece)
            if refused or data.too_big or data.line_too_long or head.error:
                continue  # read on to the end, keep nothing
            if not head.done:
                out = head.feed(out)
                if head.error:
                    continue
                if not head.done and not data.done:
                    continue
                header = head.finish()
                refused = await sink.header(header)
                if refused:
                    continue
            if out:
                await sink.write(out)
        # The end of DATA reads no further than its last LF (see _read_piece).
        assert not data.unused
        problem = None
        if data.too_big:
            problem = TOO_BIG_REPLY
        elif data.line_too_long:
            problem = LINE_TOO_LONG_REPLY
        elif head.error:
            problem = HEADER_REPLIES[head.error]
        elif refused:
            problem = refused
        if problem:
            await sink.drop(problem)
            return problem
        return await sink.finish()

    async def _read_piece(self) -> bytes | None:
        """The client's next bytes, up to and with an LF: never past the end of
        DATA, whose last byte is an LF, so a pipelined command stays in the
        stream for aiosmtpd to read. None at the end of the stream."""
        reader: asyncio.StreamReader = self._reader  # type: ignore[attr-defined]
        try:
            return await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as e:
            # No LF in the buffer's limit: take what is there, the reader keeps state.
            return await reader.read(e.consumed)
        except asyncio.IncompleteReadError as e:
            return e.partial or None
