"""The MTA's LMTP client against a scripted fake LMTP server on a Unix socket.

The fake speaks raw LMTP: a 220 greeting, a multi-line LHLO reply, one reply
per RCPT, and after DATA one reply per accepted recipient, as RFC 2033 says.
What it received is recorded so the tests can check the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from mta.relay.lmtp import LMTPConnection, LMTPError, LMTPPool

TEST_TIMEOUT = 15.0
MESSAGE = b"From: s@remote.test\r\nSubject: t\r\n\r\nfirst\r\n.x\r\n..y\r\nlast\r\n"
EXTENSIONS = ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES")


class FakeLMTP:
    def __init__(self, path: str) -> None:
        self.path = path
        self.extensions: tuple[str, ...] = EXTENSIONS
        self.mail_reply = "250 2.1.0 ok"
        self.rcpt_replies: dict[str, str] = {}  # address -> reply; default 250
        self.data_replies: dict[str, str] = {}  # address -> reply after DATA; default 250
        self.close_after_data_replies: int | None = None  # close after this many
        self.connections = 0
        self.commands: list[str] = []
        self.bodies: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self.handle, self.path)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.drop_all()
        if self.server is not None:
            await self.server.wait_closed()

    async def drop_all(self, last_words: bytes = b"") -> None:
        """Close every open connection from the server side (an MDA restart, a timeout)."""
        for w in self.writers:
            with contextlib.suppress(Exception):
                if last_words:
                    w.write(last_words)
                    await w.drain()
                w.close()
                await w.wait_closed()
        self.writers.clear()

    @property
    def mail_lines(self) -> list[str]:
        return [c for c in self.commands if c.upper().startswith("MAIL ")]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        accepted: list[str] = []
        try:
            writer.write(b"220 fake.test LMTP ready\r\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("utf-8")
                self.commands.append(cmd)
                verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "LHLO":
                    lines = ["fake.test", *self.extensions]
                    out = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
                    writer.write(out.encode())
                elif verb == "MAIL":
                    accepted = []
                    writer.write(self.mail_reply.encode() + b"\r\n")
                elif verb == "RCPT":
                    m = re.search(r"<([^>]*)>", cmd)
                    addr = m.group(1) if m else ""
                    reply = self.rcpt_replies.get(addr, "250 2.1.5 ok")
                    if reply.startswith("2"):
                        accepted.append(addr)
                    writer.write(reply.encode() + b"\r\n")
                elif verb == "DATA":
                    if not accepted:
                        writer.write(b"503 5.5.1 no valid recipients\r\n")
                        await writer.drain()
                        continue
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    body = bytearray()
                    while True:
                        dl = await reader.readline()
                        if not dl:
                            return
                        if dl == b".\r\n":
                            break
                        body += dl
                    self.bodies.append(bytes(body))
                    for n, addr in enumerate(accepted):
                        if self.close_after_data_replies == n:
                            return
                        reply = self.data_replies.get(addr, f"250 2.0.0 <{addr}> delivered")
                        writer.write(reply.encode() + b"\r\n")
                        await writer.drain()
                    accepted = []
                elif verb == "RSET":
                    accepted = []
                    writer.write(b"250 2.0.0 ok\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"500 5.5.2 what\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@pytest.fixture
def sock_path() -> Iterator[str]:
    # Unix socket paths are limited to 108 bytes: stay short, under /tmp.
    d = tempfile.mkdtemp(prefix="lm", dir="/tmp")
    try:
        yield str(Path(d) / "s")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_with(path: str, body: Callable[[FakeLMTP], Awaitable[object]],
             setup: Callable[[FakeLMTP], None] | None = None) -> tuple[FakeLMTP, object]:
    """Start a fake server, run body against it, stop it; bounded in time."""
    async def go():
        fake = FakeLMTP(path)
        if setup:
            setup(fake)
        await fake.start()
        try:
            return fake, await asyncio.wait_for(body(fake), TEST_TIMEOUT)
        finally:
            await fake.stop()
    return asyncio.run(go())


# -- per-recipient replies ------------------------------------------------------------------


def test_each_recipient_gets_its_own_reply(sock_path):
    def setup(f: FakeLMTP) -> None:
        f.rcpt_replies["bad@x.test"] = "550 5.1.1 <bad@x.test>: user unknown"
        f.data_replies["full@x.test"] = "452 4.2.2 <full@x.test>: mailbox full"

    async def body(f: FakeLMTP):
        pool = LMTPPool(f.path, "mta.test")
        return await pool.deliver("s@remote.test", ["good@x.test", "bad@x.test", "full@x.test"],
                                  MESSAGE)

    fake, replies = run_with(sock_path, body, setup)
    assert set(replies) == {"good@x.test", "bad@x.test", "full@x.test"}
    assert replies["good@x.test"] == "250 2.0.0 <good@x.test> delivered"
    assert replies["bad@x.test"] == "550 5.1.1 <bad@x.test>: user unknown"
    assert replies["full@x.test"] == "452 4.2.2 <full@x.test>: mailbox full"
    assert fake.commands[0] == "LHLO mta.test"
    assert [c for c in fake.commands if c.startswith("RCPT")] == [
        "RCPT TO:<good@x.test>", "RCPT TO:<bad@x.test>", "RCPT TO:<full@x.test>"]
    assert len(fake.bodies) == 1


def test_data_replies_are_matched_in_rcpt_order(sock_path):
    rcpts = [f"u{n}@x.test" for n in range(6)]

    def setup(f: FakeLMTP) -> None:
        f.rcpt_replies["u1@x.test"] = "550 5.1.1 no u1"
        f.rcpt_replies["u4@x.test"] = "450 4.2.1 u4 busy"
        f.data_replies["u2@x.test"] = "552 5.2.2 u2 over quota"
        f.data_replies["u5@x.test"] = "451 4.3.0 u5 later"

    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver("s@remote.test", rcpts, MESSAGE)

    _, replies = run_with(sock_path, body, setup)
    assert replies == {
        "u0@x.test": "250 2.0.0 <u0@x.test> delivered",
        "u1@x.test": "550 5.1.1 no u1",
        "u2@x.test": "552 5.2.2 u2 over quota",
        "u3@x.test": "250 2.0.0 <u3@x.test> delivered",
        "u4@x.test": "450 4.2.1 u4 busy",
        "u5@x.test": "451 4.3.0 u5 later",
    }


def test_all_recipients_refused_sends_no_data(sock_path):
    def setup(f: FakeLMTP) -> None:
        f.rcpt_replies = {"a@x.test": "550 5.1.1 no a", "b@x.test": "550 5.1.1 no b"}

    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver("s@remote.test",
                                                          ["a@x.test", "b@x.test"], MESSAGE)

    fake, replies = run_with(sock_path, body, setup)
    assert replies == {"a@x.test": "550 5.1.1 no a", "b@x.test": "550 5.1.1 no b"}
    assert "DATA" not in fake.commands
    assert fake.bodies == []


def test_mail_refused_answers_every_recipient(sock_path):
    def setup(f: FakeLMTP) -> None:
        f.mail_reply = "552 5.3.4 message too big"

    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver("s@remote.test",
                                                          ["a@x.test", "b@x.test"], MESSAGE)

    fake, replies = run_with(sock_path, body, setup)
    assert replies == {"a@x.test": "552 5.3.4 message too big",
                       "b@x.test": "552 5.3.4 message too big"}
    assert fake.bodies == []


# -- the wire --------------------------------------------------------------------------------


def test_body_is_dot_stuffed_on_the_wire(sock_path):
    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver("s@remote.test", ["a@x.test"],
                                                          b".starts\r\n" + MESSAGE)

    fake, replies = run_with(sock_path, body)
    assert replies["a@x.test"].startswith("250")
    (raw,) = fake.bodies
    lines = raw.split(b"\r\n")
    assert b"..x" in lines and b".x" not in lines
    assert b"...y" in lines
    assert lines[0] == b"..starts"
    assert raw == (b"..starts\r\nFrom: s@remote.test\r\nSubject: t\r\n\r\n"
                   b"first\r\n..x\r\n...y\r\nlast\r\n")


def test_body_without_final_newline_is_terminated(sock_path):
    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver("s@remote.test", ["a@x.test"],
                                                          b"Subject: t\r\n\r\nno newline")

    fake, replies = run_with(sock_path, body)
    assert replies["a@x.test"].startswith("250")
    assert fake.bodies == [b"Subject: t\r\n\r\nno newline\r\n"]


def test_mail_from_params_when_asked_and_offered(sock_path):
    async def body(f: FakeLMTP):
        pool = LMTPPool(f.path, "mta.test")
        await pool.deliver("s@remote.test", ["a@x.test"], MESSAGE)
        await pool.deliver("s@remote.test", ["a@x.test"], MESSAGE, body_8bit=True)
        await pool.deliver("s@remote.test", ["a@x.test"], MESSAGE, smtputf8=True)
        await pool.deliver("s@remote.test", ["a@x.test"], MESSAGE, body_8bit=True,
                           smtputf8=True)

    fake, _ = run_with(sock_path, body)
    assert fake.mail_lines == [
        "MAIL FROM:<s@remote.test>",
        "MAIL FROM:<s@remote.test> BODY=8BITMIME",
        "MAIL FROM:<s@remote.test> SMTPUTF8",
        "MAIL FROM:<s@remote.test> BODY=8BITMIME SMTPUTF8",
    ]


def test_mail_from_params_not_sent_when_not_offered(sock_path):
    def setup(f: FakeLMTP) -> None:
        f.extensions = ("PIPELINING",)

    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver(
            "s@remote.test", ["a@x.test"], MESSAGE, body_8bit=True, smtputf8=True)

    fake, replies = run_with(sock_path, body, setup)
    assert replies["a@x.test"].startswith("250")
    assert fake.mail_lines == ["MAIL FROM:<s@remote.test>"]


def test_null_sender(sock_path):
    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver("", ["a@x.test"], MESSAGE)

    fake, replies = run_with(sock_path, body)
    assert replies["a@x.test"].startswith("250")
    assert fake.mail_lines == ["MAIL FROM:<>"]


def test_utf8_addresses_go_out_as_utf8(sock_path):
    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver(
            "jörg@remote.test", ["zoë@x.test"], MESSAGE, smtputf8=True)

    fake, replies = run_with(sock_path, body)
    assert replies == {"zoë@x.test": "250 2.0.0 <zoë@x.test> delivered"}
    assert fake.mail_lines == ["MAIL FROM:<jörg@remote.test> SMTPUTF8"]
    assert "RCPT TO:<zoë@x.test>" in fake.commands


def test_connection_open_reads_extensions(sock_path):
    async def body(f: FakeLMTP):
        conn = await LMTPConnection.open(f.path, "mta.test")
        try:
            return set(conn.extensions)
        finally:
            conn.close()

    _, ext = run_with(sock_path, body)
    assert {"PIPELINING", "8BITMIME", "SMTPUTF8"} <= ext
    assert "FAKE.TEST" not in ext  # the first LHLO line is the server's name


# -- failures of the connection ----------------------------------------------------------------


def test_server_closing_midway_through_data_replies(sock_path):
    def setup(f: FakeLMTP) -> None:
        f.close_after_data_replies = 1

    async def body(f: FakeLMTP):
        pool = LMTPPool(f.path, "mta.test")
        replies = await pool.deliver("s@remote.test", ["first@x.test", "second@x.test"], MESSAGE)
        return pool, replies

    fake, (pool, replies) = run_with(sock_path, body, setup)
    assert replies["first@x.test"] == "250 2.0.0 <first@x.test> delivered"
    # The connection was lost, not refused: 4.4.2 (RFC 3463), not the MDA being down.
    assert replies["second@x.test"].startswith("451 4.4.2 ")
    assert len(fake.bodies) == 1  # sent once, not retried on another connection
    assert fake.connections == 1
    assert pool.idle == []  # the broken connection is not kept


def test_no_server_listening(sock_path):
    async def go():
        pool = LMTPPool(sock_path, "mta.test")
        return await asyncio.wait_for(
            pool.deliver("s@remote.test", ["a@x.test", "b@x.test"], MESSAGE), TEST_TIMEOUT)

    replies = asyncio.run(go())
    assert set(replies) == {"a@x.test", "b@x.test"}
    for r in replies.values():
        assert r.startswith("451 4.4.1 "), r


def test_stale_socket_file_nobody_listening(sock_path):
    # A socket file left by a dead MDA: connecting is refused.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path)
    s.close()

    async def go():
        return await asyncio.wait_for(
            LMTPPool(sock_path, "mta.test").deliver("s@remote.test", ["a@x.test"], MESSAGE),
            TEST_TIMEOUT)

    replies = asyncio.run(go())
    assert replies["a@x.test"].startswith("451 4.4.1 "), replies


def test_bad_greeting_is_a_temporary_failure(sock_path):
    async def handle(reader, writer):
        writer.write(b"554 5.3.2 not now\r\n")
        await writer.drain()
        writer.close()

    async def go():
        server = await asyncio.start_unix_server(handle, sock_path)
        try:
            pool = LMTPPool(sock_path, "mta.test")
            with pytest.raises(LMTPError):
                await LMTPConnection.open(sock_path, "mta.test")
            return await asyncio.wait_for(
                pool.deliver("s@remote.test", ["a@x.test"], MESSAGE), TEST_TIMEOUT)
        finally:
            server.close()

    replies = asyncio.run(go())
    assert replies["a@x.test"].startswith("451 4.4.1 "), replies


# -- reuse -------------------------------------------------------------------------------------


def test_connection_is_reused(sock_path):
    async def body(f: FakeLMTP):
        pool = LMTPPool(f.path, "mta.test")
        r1 = await pool.deliver("s@remote.test", ["a@x.test"], MESSAGE)
        r2 = await pool.deliver("t@remote.test", ["b@x.test", "c@x.test"], MESSAGE)
        return r1, r2

    fake, (r1, r2) = run_with(sock_path, body)
    assert r1 == {"a@x.test": "250 2.0.0 <a@x.test> delivered"}
    assert r2 == {"b@x.test": "250 2.0.0 <b@x.test> delivered",
                  "c@x.test": "250 2.0.0 <c@x.test> delivered"}
    assert fake.connections == 1
    assert fake.commands.count("LHLO mta.test") == 1
    assert len(fake.bodies) == 2


def test_connection_reused_after_refusals(sock_path):
    def setup(f: FakeLMTP) -> None:
        f.rcpt_replies["bad@x.test"] = "550 5.1.1 no"

    async def body(f: FakeLMTP):
        pool = LMTPPool(f.path, "mta.test")
        r1 = await pool.deliver("s@remote.test", ["bad@x.test"], MESSAGE)
        r2 = await pool.deliver("s@remote.test", ["a@x.test"], MESSAGE)
        return r1, r2

    fake, (r1, r2) = run_with(sock_path, body, setup)
    assert r1 == {"bad@x.test": "550 5.1.1 no"}
    assert r2 == {"a@x.test": "250 2.0.0 <a@x.test> delivered"}
    assert fake.connections == 1


async def _wait_eof(pool: LMTPPool) -> None:
    """Bounded poll until the idle connection has seen the server's close.

    at_eof() stays false while unread data (a 421) is buffered, so this looks
    at the reader's EOF flag itself.
    """
    deadline = time.monotonic() + 5
    while not pool.idle[0].reader._eof:
        if time.monotonic() > deadline:
            raise AssertionError("the client never saw the server close")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("last_words", [b"", b"421 4.4.2 fake.test timeout, closing\r\n"],
                         ids=["silent-close", "421-then-close"])
def test_stale_idle_connection_is_replaced(sock_path, last_words):
    async def body(f: FakeLMTP):
        pool = LMTPPool(f.path, "mta.test")
        r1 = await pool.deliver("s@remote.test", ["a@x.test"], MESSAGE)
        assert len(pool.idle) == 1
        await f.drop_all(last_words)  # the MDA restarted, or timed the session out
        await _wait_eof(pool)
        r2 = await pool.deliver("s@remote.test", ["b@x.test", "c@x.test"], MESSAGE)
        r3 = await pool.deliver("s@remote.test", ["d@x.test"], MESSAGE)
        return pool, r1, r2, r3

    fake, (pool, r1, r2, r3) = run_with(sock_path, body)
    assert r1 == {"a@x.test": "250 2.0.0 <a@x.test> delivered"}
    assert r2 == {"b@x.test": "250 2.0.0 <b@x.test> delivered",
                  "c@x.test": "250 2.0.0 <c@x.test> delivered"}
    assert r3 == {"d@x.test": "250 2.0.0 <d@x.test> delivered"}
    assert fake.connections == 2
    assert len(fake.bodies) == 3
    assert len(pool.idle) == 1


def test_stale_idle_connection_not_yet_noticed(sock_path):
    """The server closed, but the client has not read the EOF yet when it sends."""
    async def body(f: FakeLMTP):
        pool = LMTPPool(f.path, "mta.test")
        await pool.deliver("s@remote.test", ["a@x.test"], MESSAGE)
        await f.drop_all()
        return await pool.deliver("s@remote.test", ["b@x.test"], MESSAGE)

    fake, r2 = run_with(sock_path, body)
    assert r2 == {"b@x.test": "250 2.0.0 <b@x.test> delivered"}
    assert fake.connections == 2


def test_bare_lf_and_cr_go_out_as_crlf_lines_dot_stuffed(sock_path):
    # This fake ends lines at LF, as a lenient server does: before the rule
    # it took "\n.\r\n" for the end of the data.
    message = b"Subject: t\n\nsee\n.\r\nMAIL FROM:<ceo@bank.example>\r\n.\rx"

    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").deliver("s@remote.test", ["a@x.test"], message)

    fake, replies = run_with(sock_path, body)
    assert replies["a@x.test"].startswith("250")
    assert fake.bodies == [b"Subject: t\r\n\r\nsee\r\n..\r\nMAIL FROM:<ceo@bank.example>\r\n"
                           b"..\r\nx\r\n"]


# -- probing the MDA ---------------------------------------------------------------------------


def test_probe_of_an_answering_mda(sock_path):
    async def body(f: FakeLMTP):
        return await LMTPPool(f.path, "mta.test").probe()

    fake, problem = run_with(sock_path, body)
    assert problem is None
    assert [c.split(" ")[0] for c in fake.commands] == ["LHLO", "QUIT"]  # no transaction


def test_probe_of_nobody_listening(sock_path):
    problem = asyncio.run(asyncio.wait_for(LMTPPool(sock_path, "mta.test").probe(), TEST_TIMEOUT))
    assert problem is not None and "cannot connect" in problem
