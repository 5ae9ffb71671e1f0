"""Incoming: one message written into incoming/ as it arrives, then committed or discarded."""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import pytest

from common import ipc
from common.msgheader import Header
from mta import smtp_incoming
from mta.queue import spool
from mta.queue.envelope import LMTP, Envelope, Recipient
from tests.conftest import wait_for


class FakeQueue:
    def __init__(self, root: Path, fail: bool = False) -> None:
        self.root = root
        self.fail = fail
        self.calls: list[str] = []

    async def call(self, method: str, idempotent: bool = False, **kw):
        self.calls.append(method)
        if self.fail:
            raise ipc.IPCError("queue gone")
        spool.commit(self.root, kw["id"])
        return {}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    spool.create_dirs(tmp_path)
    return tmp_path


def make(root: Path, queue: FakeQueue, complete: bool = False) -> smtp_incoming.Incoming:
    env = Envelope(id=spool.new_id(), sender="s@example.net", created=time.time(),
                   recipients=[Recipient(address="a@example.org", original="a@example.org",
                                         route=LMTP)])
    return smtp_incoming.Incoming(root, env, queue, rcpts=["a@example.org"], hop_limit=3,
                                  complete_for="mx.example.org" if complete else None,
                                  listener="smtp")


HEADER = b"Received: one\r\nSubject: s\r\n"


async def receive(inc: smtp_incoming.Incoming, header: bytes, body: list[bytes]) -> str:
    assert await inc.open(b"Received: ours\r\n") is None
    refused = await inc.header(Header(header))
    if refused:
        inc.discard(refused)
        return refused
    for piece in body:
        await inc.write(piece)
    return await inc.finish()


def listing(root: Path, sub: str) -> list[str]:
    return sorted(p.name for p in (root / sub).iterdir())


def test_a_message_in_pieces_is_committed_whole(root: Path) -> None:
    q = FakeQueue(root)
    inc = make(root, q)
    body = [b"\r\n"] + [b"line %d\r\n" % i for i in range(20000)]
    reply = asyncio.run(receive(inc, HEADER, body))
    assert reply == f"250 2.0.0 Ok: queued as {inc.env.id}"
    data = spool.message_path(root, inc.env.id).read_bytes()
    assert data == b"Received: ours\r\n" + HEADER + b"".join(body)
    committed = Envelope.from_bytes((root / "queue" / f"{inc.env.id}.env").read_bytes())
    assert committed.size == len(data)
    assert listing(root, "incoming") == []


def test_a_full_disk_mid_message_answers_452_after_the_end_and_leaves_nothing(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = spool._write_all
    writes = []

    def filling(fd: int, data: bytes) -> None:
        writes.append(len(data))
        if len(writes) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(spool, "_write_all", filling)
    q = FakeQueue(root)
    inc = make(root, q)

    async def scenario() -> str:
        reply = await receive(inc, HEADER, [b"x" * 1000 + b"\r\n"] * 500)
        await asyncio.sleep(0)
        return reply

    assert asyncio.run(scenario()) == "452 4.3.1 Insufficient system storage, try again later"
    assert len(writes) == 3  # after the first failure nothing more is tried
    assert q.calls == []  # never committed
    wait_for(lambda: listing(root, "incoming") == [], 10, "the partial file to go")
    assert listing(root, "queue") == []


def test_too_many_hops_refuses_and_leaves_nothing(root: Path) -> None:
    inc = make(root, FakeQueue(root))
    header = b"Received: a\r\nDelivered-To: b@x\r\nReceived: c\r\nRECEIVED: d\r\n"
    assert asyncio.run(receive(inc, header, [b"\r\nbody\r\n"])) == "554 5.4.6 Too many hops"
    wait_for(lambda: listing(root, "incoming") == [], 10, "the file to go")


def test_a_queue_that_does_not_answer_gives_451_and_the_files_go(root: Path) -> None:
    q = FakeQueue(root, fail=True)
    inc = make(root, q)
    reply = asyncio.run(receive(inc, HEADER, [b"\r\nbody\r\n"]))
    assert reply.startswith("451 4.3.0")
    wait_for(lambda: listing(root, "incoming") == [], 10, "the files to go")


def test_submission_adds_the_missing_fields_at_the_end_of_the_header(root: Path) -> None:
    inc = make(root, FakeQueue(root), complete=True)
    reply = asyncio.run(receive(inc, b"Subject: s\r\n", [b"\r\nbody\r\n"]))
    assert reply.startswith("250")
    data = spool.message_path(root, inc.env.id).read_bytes()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[:2] == [b"Received: ours", b"Subject: s"]
    assert lines[2].startswith(b"Message-ID: <") and lines[2].endswith(
        f".{inc.env.id}@mx.example.org>".encode())
    assert lines[3].startswith(b"Date: ") and len(lines) == 4
    assert body == b"body\r\n"
