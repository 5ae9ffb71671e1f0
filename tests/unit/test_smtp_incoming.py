"""Incoming: one message streamed into a file the queue opened, then committed or discarded.

The queue's side is the real one (mta/queue/intake.py) over a fake channel:
the descriptor it hands over is the one smtp writes into.
"""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from common import ipc
from common.msgheader import Header
from mta import smtp_incoming
from mta.queue import intake, space, spool
from mta.queue.envelope import LMTP, Envelope, Recipient
from tests.conftest import wait_for


class FakeQueue:
    """The queue's intake handlers called directly, as queue.sock would."""

    def __init__(self, root: Path, fail: bool = False, max_size: int = 10 << 20) -> None:
        cfg = SimpleNamespace(paths=SimpleNamespace(spool=root),
                              mta=SimpleNamespace(max_message_size=max_size, session_timeout=60))
        self.committed: list[Envelope] = []

        async def on_commit(env: Envelope) -> None:
            self.committed.append(env)
        self.intake = intake.Intake(cfg, on_commit)  # type: ignore[arg-type]
        self.fail = fail
        self.calls: list[str] = []

    async def call_fds(self, method: str, fds=(), idempotent: bool = False, **kw):
        self.calls.append(method)
        if self.fail and method == "commit":
            raise ipc.IPCError("queue gone")
        result = await self.intake.handlers()[method](kw)
        if isinstance(result, ipc.WithFds):
            return result.result, result.fds
        return result, []

    async def call(self, method: str, idempotent: bool = False, **kw):
        result, fds = await self.call_fds(method, idempotent=idempotent, **kw)
        assert fds == []
        return result


@pytest.fixture
def root(tmp_path: Path) -> Path:
    spool.create_dirs(tmp_path)
    return tmp_path


def make(root: Path, queue: FakeQueue, complete: bool = False) -> smtp_incoming.Incoming:
    env = Envelope(id="", sender="s@example.net", created=time.time(),
                   recipients=[Recipient(address="a@example.org", original="a@example.org",
                                         route=LMTP)])
    return smtp_incoming.Incoming(env, queue, rcpts=["a@example.org"], hop_limit=3,
                                  complete_for="mx.example.org" if complete else None,
                                  listener="smtp", authserv="mx.example.org")


HEADER = b"Received: one\r\nSubject: s\r\n"


async def receive(inc: smtp_incoming.Incoming, header: bytes, body: list[bytes]) -> str:
    assert await inc.open(lambda env: b"Received: ours\r\n") is None
    refused = await inc.header(Header(header))
    if refused:
        inc.discard(refused)
        await smtp_incoming.settle()
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
    assert [a.address for a in committed.recipients] == ["a@example.org"]
    assert q.calls == ["open", "commit"]  # one round trip more than a drop directory
    assert q.committed[0].id == inc.env.id
    assert listing(root, "incoming") == []


def test_a_full_disk_mid_message_answers_452_after_the_end_and_leaves_nothing(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = smtp_incoming.DropFile.write
    writes = []

    def filling(self, data: bytes) -> None:
        writes.append(len(data))
        if len(writes) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, data)

    monkeypatch.setattr(smtp_incoming.DropFile, "write", filling)
    q = FakeQueue(root)
    inc = make(root, q)

    async def scenario() -> str:
        reply = await receive(inc, HEADER, [b"x" * 1000 + b"\r\n"] * 500)
        await asyncio.sleep(0)
        return reply

    assert asyncio.run(scenario()) == "452 4.3.1 Insufficient system storage, try again later"
    assert len(writes) == 3  # after the first failure nothing more is tried
    assert q.calls == ["open", "discard"]  # never committed
    wait_for(lambda: listing(root, "incoming") == [], 60, "the partial file to go")
    assert listing(root, "queue") == []


def test_too_many_hops_refuses_and_leaves_nothing(root: Path) -> None:
    inc = make(root, FakeQueue(root))
    header = b"Received: a\r\nDelivered-To: b@x\r\nReceived: c\r\nRECEIVED: d\r\n"
    assert asyncio.run(receive(inc, header, [b"\r\nbody\r\n"])) == "554 5.4.6 Too many hops"
    wait_for(lambda: listing(root, "incoming") == [], 60, "the file to go")


def test_a_queue_that_does_not_answer_gives_451_and_the_files_go(root: Path) -> None:
    q = FakeQueue(root, fail=True)
    inc = make(root, q)
    reply = asyncio.run(receive(inc, HEADER, [b"\r\nbody\r\n"]))
    assert reply.startswith("451 4.3.0")
    wait_for(lambda: listing(root, "incoming") == [], 60, "the files to go")


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


def test_below_the_reserve_the_queue_opens_no_file(root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    q = FakeQueue(root, max_size=1000)
    monkeypatch.setattr(space, "free_bytes", lambda path: 1499)
    inc = make(root, q)
    assert asyncio.run(inc.open(lambda env: b"")) == space.NO_ROOM_REPLY
    assert listing(root, "incoming") == []
    monkeypatch.setattr(space, "free_bytes", lambda path: 1500)
    assert asyncio.run(receive(make(root, q), HEADER, [b"\r\nbody\r\n"])).startswith("250")


def test_the_queue_refuses_a_file_over_the_limit_whatever_smtp_says(root: Path) -> None:
    q = FakeQueue(root, max_size=1000)
    inc = make(root, q)
    body = [b"\r\n", b"x" * (1000 + intake.OWN_HEADER_ROOM)]
    assert asyncio.run(receive(inc, HEADER, body)) == intake.TOO_BIG_REPLY
    assert listing(root, "incoming") == [] and listing(root, "queue") == []


def test_the_queue_keeps_its_own_states_whatever_the_commit_says(root: Path) -> None:
    env = intake.envelope_from("0" * 17, {
        "sender": "s@example.net", "helo": "h", "client": "192.0.2.1", "auth_user": None,
        "recipients": [{"address": "a@example.org", "original": "a@example.org",
                        "route": LMTP, "state": "delivered", "attempts": 9}],
        "held": True, "attempts": 7, "size": 1}, size=123)
    assert env.size == 123 and not env.held and env.attempts == 0
    assert [(r.state, r.attempts) for r in env.recipients] == [("pending", 0)]
    for bad in ({"recipients": []}, {"recipients": [{"address": "x", "route": LMTP}]},
                {"recipients": [{"address": "a@b", "route": "file"}]},
                {"sender": 3, "recipients": [{"address": "a@b", "route": LMTP}]}):
        with pytest.raises(ValueError):
            intake.envelope_from("0" * 17, bad, size=1)


def test_a_commit_sent_twice_is_answered_twice(root: Path) -> None:
    q = FakeQueue(root)
    inc = make(root, q)
    assert asyncio.run(receive(inc, HEADER, [b"\r\nbody\r\n"])).startswith("250")
    again = asyncio.run(q.call("commit", id=inc.env.id,
                               envelope=smtp_incoming.commit_fields(inc.env)))
    assert again == {}
    assert listing(root, "queue") == [f"{inc.env.id}.env", f"{inc.env.id}.msg"]
