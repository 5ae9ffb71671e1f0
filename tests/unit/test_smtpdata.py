"""StreamingDataMixin over aiosmtpd, in-process on a real socket, with a fake sink."""

from __future__ import annotations

import asyncio
import contextlib

from aiosmtpd.smtp import SMTP

from common.msgheader import Header
from common.smtpdata import StreamingDataMixin


class Server(StreamingDataMixin, SMTP):
    pass


class Sink:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.data = bytearray()

    async def header(self, header: Header) -> str | None:
        if header.has("x-refuse"):
            return "554 5.7.1 Refused by the sink"
        self.data += header.raw
        return None

    async def write(self, data: bytes) -> None:
        if b"BOOM" in data:
            raise ValueError("a bug in the sink")
        self.data += data

    async def finish(self) -> str:
        self.handler.finished.append(bytes(self.data))
        return "250 2.0.0 stored"

    async def drop(self, reason: str) -> None:
        self.handler.discarded.append(reason)

    def discard(self, reason: str) -> None:
        self.handler.discarded.append(reason)


class Handler:
    def __init__(self) -> None:
        self.finished: list[bytes] = []
        self.discarded: list[str] = []

    async def handle_DATA_STREAM(self, server, session, envelope):
        return Sink(self)


class PlainHandler:
    """No streaming hook: aiosmtpd's own DATA."""

    def __init__(self) -> None:
        self.content: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.content.append(envelope.original_content)
        return "250 OK plain"


async def session(handler, data: bytes, **limits) -> bytes:
    """HELO, MAIL, RCPT, DATA, then `data` in one write; all the server says until it closes."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Server(handler, hostname="t.test", loop=loop, **limits), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HELO c.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        head = b""
        while b"354 " not in head:
            head += await asyncio.wait_for(reader.readline(), 10)
        writer.write(data)
        out = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return out
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


def replies(out: bytes) -> list[bytes]:
    return out.splitlines()


def test_the_message_reaches_the_sink_and_a_pipelined_command_still_runs():
    h = Handler()
    out = asyncio.run(session(h, b"Subject: x\r\n\r\nhi\n.\r\n..dot\r\n.\r\nQUIT\r\n"))
    assert replies(out) == [b"250 2.0.0 stored", b"221 Bye"]
    assert h.finished == [b"Subject: x\r\n\r\nhi\r\n.\r\n.dot\r\n"]


def test_a_refusal_comes_after_the_end_of_the_data():
    h = Handler()
    out = asyncio.run(session(h, b"X-Refuse: 1\r\n\r\nRSET\r\nQUIT\r\n.\r\nQUIT\r\n"))
    # The lines inside the data were data: one reply for DATA, then QUIT's.
    assert replies(out) == [b"554 5.7.1 Refused by the sink", b"221 Bye"]
    assert h.discarded == ["554 5.7.1 Refused by the sink"] and h.finished == []


def test_limits_answer_after_the_end_and_keep_nothing():
    h = Handler()
    out = asyncio.run(session(h, b"Subject: x" + b"\r\n\t" .join([b"x" * 500] * 4)
                              + b"\r\n\r\nb\r\n.\r\nQUIT\r\n",
                              header_size_limit=1024))
    assert replies(out) == [b"552 5.3.4 Message header too large", b"221 Bye"]
    h = Handler()
    out = asyncio.run(session(h, b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nb\r\n.\r\nQUIT\r\n",
                              header_fields_limit=2))
    assert replies(out)[0] == b"552 5.3.4 Message header has too many header fields"
    h = Handler()
    out = asyncio.run(session(h, b"S: x\r\n\r\n" + b"y" * 500 + b"\r\n.\r\nQUIT\r\n",
                              data_size_limit=100))
    assert replies(out) == [b"552 5.3.4 Message too big", b"221 Bye"]
    assert h.finished == []


def test_an_error_in_the_sink_closes_the_connection_instead_of_reading_data_as_commands():
    h = Handler()
    out = asyncio.run(session(h, b"Subject: x\r\n\r\nBOOM\r\nRSET\r\nNOOP\r\n.\r\nQUIT\r\n"))
    assert out == b""  # no 250 for the NOOP that was data, nothing at all
    assert h.discarded == ["error during DATA"] and h.finished == []


def test_a_handler_without_the_hook_gets_aiosmtpds_data():
    h = PlainHandler()
    out = asyncio.run(session(h, b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"))
    assert replies(out) == [b"250 OK plain", b"221 Bye"]
    assert h.content == [b"Subject: x\r\n\r\nhi\r\n"]


def test_a_client_that_goes_away_mid_data_has_its_message_discarded():
    h = Handler()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Server(h, hostname="t.test", loop=loop), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HELO c.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
                     b"Subject: x\r\n\r\nhalf of it\r\n")
        head = b""
        while b"354 " not in head:
            head += await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        for _ in range(500):
            if h.discarded:
                break
            await asyncio.sleep(0.01)
        server.close()

    asyncio.run(scenario())
    assert h.discarded and "during DATA" in h.discarded[0]
    assert h.finished == []
