"""The lmtp process's rules, served in-process on a real Unix socket.

A fake auth process answers "user" over the real IPC module; the client
speaks raw LMTP, so what is checked is exactly what the MTA would read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from common import config, ipc
from common.config import Config
from mda import lmtp
from mda.store import maildir

USERS = {"alice@example.org", "bob@example.org", "carol@example.org"}
MESSAGE = (
    b"Received: from mx.example.net (mx.example.net [192.0.2.1])\r\n"
    b"\tby mx.test with ESMTP id Q7K2M9ZX; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"From: sender@example.net\r\n"
    b"Subject: test\r\n"
    b"\r\n"
    b"..a line that starts with a dot\r\n"
    b"body\r\n"
)


def make_config(tmp_path: Path) -> Config:
    return config.from_dict(
        {
            "hostname": "mda.test",
            "domains": ["example.org"],
            "paths": {
                "spool": str(tmp_path / "spool"),
                "mail": str(tmp_path / "mail"),
                "run": str(tmp_path / "run"),
                "users": str(tmp_path / "users"),
                "aliases": str(tmp_path / "aliases"),
            },
        },
        "test",
    )


async def fake_user(req: dict[str, Any]) -> dict[str, Any]:
    address = str(req.get("address", "")).lower()
    if address in USERS:
        return {"exists": True, "address": address, "fields": {}}
    return {"exists": False}


@dataclass
class LMTPClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def reply(self) -> str:
        """One reply; a multi-line one is returned with its lines joined by newlines."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line.endswith(b"\r\n"), f"connection closed after {lines!r}"
            lines.append(line[:-2].decode())
            if line[3:4] == b" ":
                return "\n".join(lines)

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def transaction(self, sender: str, rcpts: list[str], params: str = "") -> list[str]:
        """MAIL and RCPTs in one write, as the MTA pipelines them."""
        lines = [f"MAIL FROM:<{sender}>{params}"] + [f"RCPT TO:<{r}>" for r in rcpts]
        self.writer.write("".join(line + "\r\n" for line in lines).encode())
        assert (await self.reply()).startswith("250")
        return [await self.reply() for _ in rcpts]

    async def data(self, message: bytes) -> None:
        assert (await self.command("DATA")).startswith("354")
        self.writer.write(message + b".\r\n")

    async def rest(self) -> bytes:
        """Everything the server still sends, to the end of the connection."""
        return await asyncio.wait_for(self.reader.read(), 10)


@dataclass
class Setup:
    cfg: Config
    server: lmtp.LMTPServer
    socket: Path
    clients: list[LMTPClient] = field(default_factory=list)

    async def connect(self) -> LMTPClient:
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        client = LMTPClient(reader, writer)
        self.clients.append(client)
        assert (await client.reply()).startswith("220 mda.test LMTP")
        lhlo = (await client.command("LHLO mx.test")).splitlines()
        assert lhlo[0] == "250-mda.test"
        assert {"250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-SMTPUTF8"} <= set(lhlo)
        return client


@contextlib.asynccontextmanager
async def lmtp_server(tmp_path: Path, with_auth: bool = True) -> AsyncIterator[Setup]:
    cfg = make_config(tmp_path)
    auth_path = cfg.paths.run / "mda" / "auth.sock"
    auth_server = None
    if with_auth:
        auth_server = await ipc.serve(ipc.bind_unix(auth_path), {"user": fake_user})
    auth = ipc.Client(auth_path, timeout=5)
    server = lmtp.LMTPServer(cfg, lmtp.Delivery(cfg, auth))
    sock_path = cfg.paths.run / "lmtp.sock"
    await server.start(ipc.bind_unix(sock_path))
    setup = Setup(cfg, server, sock_path)
    try:
        yield setup
    finally:
        # A client left in a transaction would hold stop() for its grace.
        for c in setup.clients:
            c.writer.close()
        await server.stop(grace=5)
        await auth.close()
        if auth_server is not None:
            auth_server.close()


def stored(cfg: Config, address: str) -> list[bytes]:
    local, _, domain = address.partition("@")
    new = cfg.paths.mail / domain / local / "Maildir" / "new"
    return [(new / name).read_bytes() for name in sorted(os.listdir(new))]


def test_one_reply_per_recipient_and_one_failure_stays_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lmtp_server(tmp_path) as s:
            # carol's mailbox cannot be made: a file sits where her directory goes
            blocked = s.cfg.paths.mail / "example.org" / "carol"
            blocked.parent.mkdir(parents=True)
            blocked.write_text("in the way")
            c = await s.connect()
            rcpts = ["alice@example.org", "carol@example.org", "bob@example.org"]
            assert all(r.startswith("250") for r in await c.transaction("s@example.net", rcpts))
            await c.data(MESSAGE)
            replies = [await c.reply() for _ in rcpts]
            assert replies[0].startswith("250 2.0.0 <alice@example.org>")
            assert replies[1].startswith("451 4.3.0 <carol@example.org>")
            assert replies[2].startswith("250 2.0.0 <bob@example.org>")
            # nothing more was sent after the three: the next thing read is QUIT's answer
            c.writer.write(b"QUIT\r\n")
            assert (await c.rest()).startswith(b"221") and (await c.rest()) == b""

    asyncio.run(scenario())
    cfg = make_config(tmp_path)
    for user in ("alice@example.org", "bob@example.org"):
        (msg,) = stored(cfg, user)
        assert msg.startswith(
            b"Return-Path: <s@example.net>\nDelivered-To: " + user.encode() + b"\nReceived: "
        )
        assert msg.endswith(b"\n\n.a line that starts with a dot\nbody\n")
        assert b"\r" not in msg


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        (errno.EDQUOT, "452 4.3.1 <bob@example.org>"),
        (errno.ENOSPC, "452 4.3.1 <bob@example.org>"),
        (errno.EIO, "451 4.3.0 <bob@example.org>"),
    ],
)
def test_storage_errors_map_to_replies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, reply: str
) -> None:
    real = maildir.deliver

    def deliver(path: Path, data: bytes) -> str:
        if "/bob/" in str(path):
            raise OSError(code, os.strerror(code))
        return real(path, data)

    monkeypatch.setattr(maildir, "deliver", deliver)

    async def scenario() -> None:
        async with lmtp_server(tmp_path) as s:
            c = await s.connect()
            await c.transaction("s@example.net", ["bob@example.org", "alice@example.org"])
            await c.data(MESSAGE)
            assert (await c.reply()).startswith(reply)
            assert (await c.reply()).startswith("250 2.0.0 <alice@example.org>")

    asyncio.run(scenario())


def test_unknown_user_is_rejected_at_rcpt(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lmtp_server(tmp_path) as s:
            c = await s.connect()
            replies = await c.transaction("s@example.net", ["nobody@example.org"])
            assert replies == ["550 5.1.1 <nobody@example.org>: user unknown"]
            assert (await c.command("DATA")).startswith("503")

    asyncio.run(scenario())


def test_subaddress_goes_to_the_base_user(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lmtp_server(tmp_path) as s:
            c = await s.connect()
            rcpts = ["alice+lists@example.org", "nobody+x@example.org"]
            replies = await c.transaction("", rcpts)
            assert replies[0].startswith("250")
            assert replies[1].startswith("550 5.1.1")
            await c.data(MESSAGE)
            assert (await c.reply()).startswith("250 2.0.0 <alice+lists@example.org>")

    asyncio.run(scenario())
    (msg,) = stored(make_config(tmp_path), "alice@example.org")
    assert msg.startswith(b"Return-Path: <>\nDelivered-To: alice+lists@example.org\n")


def test_utf8_sender_and_8bit_body_are_kept(tmp_path: Path) -> None:
    body = "Subject: caf\u00e9\r\n\r\nna\u00efve \u2603\r\n".encode()

    async def scenario() -> None:
        async with lmtp_server(tmp_path) as s:
            c = await s.connect()
            sender = "j\u00f6rg@example.net"
            replies = await c.transaction(sender, ["bob@example.org"], " BODY=8BITMIME SMTPUTF8")
            assert replies[0].startswith("250")
            await c.data(body)
            assert (await c.reply()).startswith("250")

    asyncio.run(scenario())
    (msg,) = stored(make_config(tmp_path), "bob@example.org")
    expected = "Return-Path: <j\u00f6rg@example.net>\nDelivered-To: bob@example.org\n"
    assert msg == expected.encode() + body.replace(b"\r\n", b"\n")


def test_auth_unreachable_is_temporary(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lmtp_server(tmp_path, with_auth=False) as s:
            c = await s.connect()
            (reply,) = await c.transaction("s@example.net", ["alice@example.org"])
            assert reply.startswith("451 4.3.0 <alice@example.org>")

    asyncio.run(scenario())


def test_delivery_is_logged_with_queue_id_and_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lmtp_server(tmp_path) as s:
            c = await s.connect()
            await c.transaction("s@example.net", ["bob@example.org"])
            await c.data(MESSAGE)
            assert (await c.reply()).startswith("250")

    with capture_logs() as logs:
        asyncio.run(scenario())
    (line,) = [e for e in logs if e["event"] == "delivered"]
    (name,) = os.listdir(tmp_path / "mail" / "example.org" / "bob" / "Maildir" / "new")
    assert line["queue_id"] == "Q7K2M9ZX"
    assert line["rcpt"] == "bob@example.org"
    assert line["file"] == name


def test_stop_lets_a_transaction_finish_and_closes_idle_sessions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with lmtp_server(tmp_path) as s:
            busy = await s.connect()
            idle = await s.connect()
            await busy.transaction("s@example.net", ["alice@example.org"])
            stopping = asyncio.create_task(s.server.stop(grace=10))
            await asyncio.sleep(0)  # let stop() begin: it is synchronous up to its wait
            assert s.server.sessions.stopping
            assert (await idle.rest()).startswith(b"421 4.3.2")
            with pytest.raises(OSError):
                await asyncio.open_unix_connection(str(s.socket))
            await busy.data(MESSAGE)
            assert (await busy.reply()).startswith("250 2.0.0")
            assert (await busy.rest()).startswith(b"421 4.3.2")
            await stopping
            assert not s.server.open

    asyncio.run(scenario())
    assert len(stored(make_config(tmp_path), "alice@example.org")) == 1


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (MESSAGE, "Q7K2M9ZX"),
        (b"Received: from a by b id <AB12>; now\r\n\r\nbody", "AB12"),
        (b"received: from a\n by b\n id XYZ\nReceived: by c id OTHER\n\n", "XYZ"),
        (b"Received: from host.id (x) by b; now\r\n\r\n", None),
        (b"Subject: no received\r\n\r\nReceived: by b id BODY\r\n", None),
        (b"Received: by a; now\r\nReceived: by b id SECOND\r\n\r\n", None),
        (b"", None),
    ],
)
def test_queue_id_from_first_received(message: bytes, expected: str | None) -> None:
    assert lmtp.queue_id_from(message) == expected


def test_a_recipient_whose_delivered_to_the_message_carries_refuses_it_alone(
    tmp_path: Path,
) -> None:
    looped = (
        b"Delivered-To: ALICE@example.org\r\n"  # ours for alice, in another case
        b"Delivered-To: carol+x@example.org\r\n"  # ours for carol+x, not for carol
        b"Delivered-To: bob+list@example.org\r\n"  # not bob's: another detail
        + MESSAGE
    )

    async def scenario() -> None:
        async with lmtp_server(tmp_path) as s:
            c = await s.connect()
            rcpts = ["alice@example.org", "bob@example.org", "carol+x@example.org",
                     "carol@example.org"]
            with capture_logs() as logs:
                assert all(r.startswith("250") for r in await c.transaction("s@example.net",
                                                                            rcpts))
                await c.data(looped)
                replies = [await c.reply() for _ in rcpts]
            assert replies == [
                "554 5.4.6 <alice@example.org> mail forwarding loop",
                "250 2.0.0 <bob@example.org> delivered",
                "554 5.4.6 <carol+x@example.org> mail forwarding loop",
                "250 2.0.0 <carol@example.org> delivered",
            ]
            refused = [e for e in logs if e["event"] == "delivery refused"]
            assert [e["rcpt"] for e in refused] == ["alice@example.org", "carol+x@example.org"]
            assert all(e["queue_id"] == "Q7K2M9ZX" for e in refused)

    asyncio.run(scenario())
    cfg = make_config(tmp_path)
    assert len(stored(cfg, "bob@example.org")) == 1
    assert len(stored(cfg, "carol@example.org")) == 1  # carol+x's copy was refused
    assert not (cfg.paths.mail / "example.org" / "alice" / "Maildir" / "new").exists() or \
        stored(cfg, "alice@example.org") == []
