"""The spool on disk: ids, the incoming -> queue commit, saves, removal, load()."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import time
from pathlib import Path

import pytest

from mta.queue import spool
from mta.queue.envelope import DELIVERED, LMTP, SMTP, Envelope, Recipient


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "spool"
    spool.create_dirs(r)
    return r


def make_env(qid: str | None = None) -> Envelope:
    return Envelope(
        id=qid or spool.new_id(),
        sender="s@remote.test",
        recipients=[Recipient("alice@example.test", "postmaster@example.test", LMTP),
                    Recipient("x@far.test", "x@far.test", SMTP)],
        created=1700000000.5,
        size=42,
        helo="client.remote.test",
        client="192.0.2.1",
        auth_user=None,
        body_8bit=True,
        smtputf8=False,
    )


def files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def committed(root: Path, env: Envelope, message: bytes = b"Subject: x\r\n\r\nhi\r\n") -> Envelope:
    spool.write_incoming(root, env, message)
    return spool.commit(root, env.id)


# -- ids ----------------------------------------------------------------------------


def test_new_id_is_17_uppercase_hex_and_valid():
    qid = spool.new_id()
    assert re.fullmatch(r"[0-9A-F]{17}", qid), qid
    assert spool.valid_id(qid)


def test_new_id_unique_over_many_calls():
    ids = [spool.new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9A-F]{17}", i) for i in ids)


@pytest.mark.parametrize("bad", [
    "../x", "", "0123456789abcdef0", "0123456789ABCDEF", "0123456789ABCDEF01",
    "0123456789ABCDEG0", "../../../etc/pw", "0123456789ABCDE/0", "0123456789ABCDEF0\n",
    " 123456789ABCDEF0",
])
def test_valid_id_rejects_others(bad):
    assert not spool.valid_id(bad)


def test_valid_id_rejects_lowercase_of_a_real_id():
    assert not spool.valid_id(spool.new_id().lower().replace("0", "a"))


# -- write_incoming + commit -------------------------------------------------------------


def test_write_incoming_then_commit_moves_both_files(root):
    env = make_env()
    message = b"Subject: x\r\n\r\nhello\r\n.dot\r\n"
    spool.write_incoming(root, env, message)
    assert files(root / spool.INCOMING) == [f"{env.id}.env", f"{env.id}.msg"]
    assert files(root / spool.QUEUE) == []
    got = spool.commit(root, env.id)
    assert got == env
    assert files(root / spool.INCOMING) == []
    assert files(root / spool.QUEUE) == [f"{env.id}.env", f"{env.id}.msg"]
    assert spool.message_path(root, env.id).read_bytes() == message
    assert Envelope.from_bytes((root / spool.QUEUE / f"{env.id}.env").read_bytes()) == env


def test_commit_sent_again_finishes_or_confirms_the_first(root):
    # A reload may replace the queue process before its answer: the smtp
    # process sends the commit again, to the new one.
    env = make_env()
    spool.write_incoming(root, env, b"x\r\n")
    assert spool.commit(root, env.id) == env
    assert spool.commit(root, env.id) == env  # done already: confirmed
    other = make_env()
    spool.write_incoming(root, other, b"y\r\n")
    os.rename(root / spool.INCOMING / f"{other.id}.msg", root / spool.QUEUE / f"{other.id}.msg")
    assert spool.commit(root, other.id) == other  # half done: finished
    assert files(root / spool.INCOMING) == []
    assert files(root / spool.QUEUE) == sorted(
        f"{e.id}.{x}" for e in (env, other) for x in ("env", "msg"))
    with pytest.raises(FileNotFoundError):
        spool.commit(root, make_env().id)  # never written


def test_write_incoming_failing_on_the_envelope_leaves_nothing(root, monkeypatch):
    calls = []

    def full(path, data):
        calls.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool, "_write_synced", full)  # only the envelope is written whole
    env = make_env()
    with pytest.raises(OSError) as ei:
        spool.write_incoming(root, env, b"Subject: x\r\n\r\nbody\r\n")
    assert ei.value.errno == errno.ENOSPC
    assert [p.name for p in calls] == [f"{env.id}.env"]
    assert files(root / spool.INCOMING) == []
    assert files(root / spool.QUEUE) == []


def test_write_incoming_failing_on_the_message_leaves_nothing(root, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool, "_write_all", full)
    with pytest.raises(OSError):
        spool.write_incoming(root, make_env(), b"x\r\n")
    assert files(root / spool.INCOMING) == []


# -- IncomingFile: a message written as it arrives ------------------------------------------


def test_incoming_file_written_in_pieces_then_finished_and_committed(root):
    env = make_env()
    f = spool.IncomingFile(root, env.id)
    f.open()
    for piece in (b"Received: x\r\n", b"Subject: s\r\n\r\n", b"body\r\n" * 1000):
        f.write(piece)
    assert f.size == 13 + 14 + 6000
    # Until finished there is no envelope: nothing that commit could take.
    assert files(root / spool.INCOMING) == [f"{env.id}.msg"]
    f.finish(env)
    assert files(root / spool.INCOMING) == [f"{env.id}.env", f"{env.id}.msg"]
    assert spool.commit(root, env.id) == env
    data = spool.message_path(root, env.id).read_bytes()
    assert data == b"Received: x\r\nSubject: s\r\n\r\n" + b"body\r\n" * 1000


def test_incoming_file_discarded_mid_way_leaves_nothing_and_refuses_more(root):
    f = spool.IncomingFile(root, spool.new_id())
    f.open()
    f.write(b"half a mess")
    f.discard()
    assert files(root / spool.INCOMING) == []
    with pytest.raises(ValueError):
        f.write(b"age")
    f.open()  # a discard that came first wins over an open still queued
    assert files(root / spool.INCOMING) == []


def test_incoming_file_failing_fsync_at_finish_leaves_nothing(root, monkeypatch):
    env = make_env()
    f = spool.IncomingFile(root, env.id)
    f.open()
    f.write(b"x\r\n")

    def no_room(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(spool.os, "fsync", no_room)
    with pytest.raises(OSError):
        f.finish(env)
    assert files(root / spool.INCOMING) == []


# -- save, remove -------------------------------------------------------------------------


def test_save_replaces_the_envelope_atomically(root):
    env = committed(root, make_env())
    inode_before = (root / spool.QUEUE / f"{env.id}.env").stat().st_ino
    env.recipients[0].state = DELIVERED
    env.recipients[0].attempts = 1
    env.recipients[0].last_reply = "250 2.0.0 ok"
    env.attempts = 1
    env.next_try = 1700000100.0
    spool.save(root, env)
    assert files(root / spool.QUEUE) == [f"{env.id}.env", f"{env.id}.msg"]
    path = root / spool.QUEUE / f"{env.id}.env"
    assert Envelope.from_bytes(path.read_bytes()) == env
    # Replaced by a rename, not rewritten in place.
    assert path.stat().st_ino != inode_before


def test_save_over_a_leftover_tmp(root):
    env = committed(root, make_env())
    (root / spool.QUEUE / f"{env.id}.env.tmp").write_bytes(b"half a")
    env.attempts = 3
    spool.save(root, env)
    assert files(root / spool.QUEUE) == [f"{env.id}.env", f"{env.id}.msg"]
    loaded, _ = spool.load(root)
    assert loaded == [env]


def test_save_on_a_full_disk_keeps_the_old_envelope_and_leaves_no_tmp(root, monkeypatch):
    env = committed(root, make_env())
    before = (root / spool.QUEUE / f"{env.id}.env").read_bytes()

    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(spool, "_write_all", full)
    env.attempts = 5
    with pytest.raises(OSError):
        spool.save(root, env)
    assert files(root / spool.QUEUE) == [f"{env.id}.env", f"{env.id}.msg"]
    assert (root / spool.QUEUE / f"{env.id}.env").read_bytes() == before


def test_seal_and_commit_a_message_another_process_wrote(root):
    env = make_env()
    fd = spool.create_incoming(root, env.id)
    try:
        os.write(fd, b"Subject: x\r\n\r\nbody\r\n")
    finally:
        os.close(fd)
    assert spool.incoming_size(root, env.id) == 20
    assert not spool.is_committed(root, env.id)
    spool.seal_incoming(root, env)
    assert spool.commit(root, env.id) == env
    assert spool.is_committed(root, env.id)
    assert files(root / spool.INCOMING) == []
    fd = spool.open_message(root, env.id)
    try:
        assert os.read(fd, 100) == b"Subject: x\r\n\r\nbody\r\n"
        with pytest.raises(OSError):
            os.write(fd, b"x")  # read-only: the relay cannot change it
    finally:
        os.close(fd)


def test_remove_deletes_both_files(root):
    keep = committed(root, make_env())
    env = committed(root, make_env())
    spool.remove(root, env.id)
    assert files(root / spool.QUEUE) == [f"{keep.id}.env", f"{keep.id}.msg"]
    spool.remove(root, env.id)  # twice is harmless


# -- load ---------------------------------------------------------------------------------


def test_load_returns_committed_envelopes(root):
    a = committed(root, make_env())
    b = committed(root, make_env())
    envelopes, notes = spool.load(root)
    assert sorted(envelopes, key=lambda e: e.id) == sorted([a, b], key=lambda e: e.id)
    assert notes == []


def test_load_ignores_incoming(root):
    spool.write_incoming(root, make_env(), b"x\r\n")
    envelopes, notes = spool.load(root)
    assert envelopes == [] and notes == []


def test_load_removes_a_message_without_envelope(root):
    good = committed(root, make_env())
    orphan = "0000000000000ABCD"
    (root / spool.QUEUE / f"{orphan}.msg").write_bytes(b"never acknowledged\r\n")
    envelopes, notes = spool.load(root)
    assert envelopes == [good]
    assert not (root / spool.QUEUE / f"{orphan}.msg").exists()
    assert len(notes) == 1 and orphan in notes[0]
    assert files(root / spool.QUEUE) == [f"{good.id}.env", f"{good.id}.msg"]


def test_load_removes_stale_env_tmp(root):
    good = committed(root, make_env())
    (root / spool.QUEUE / f"{good.id}.env.tmp").write_bytes(b'{"half":')
    (root / spool.QUEUE / "0000000000000ABCD.env.tmp").write_bytes(b"")
    envelopes, _ = spool.load(root)
    assert envelopes == [good]
    assert files(root / spool.QUEUE) == [f"{good.id}.env", f"{good.id}.msg"]


@pytest.mark.parametrize("content", [b"not json", b"{}", b'{"id": "X"}', b"\xff\xfe",
                                     b'{"id":"X","recipients":[{"bogus":1}]}'])
def test_load_sets_an_unreadable_envelope_aside_and_reports_it(root, content):
    good = committed(root, make_env())
    bad = "0000000000000BAD0"
    (root / spool.QUEUE / f"{bad}.msg").write_bytes(b"x\r\n")
    (root / spool.QUEUE / f"{bad}.env").write_bytes(content)
    envelopes, notes = spool.load(root)
    assert envelopes == [good]
    # Nothing is thrown away: both files wait in corrupt/ for the administrator.
    assert (root / spool.CORRUPT / f"{bad}.env").read_bytes() == content
    assert (root / spool.CORRUPT / f"{bad}.msg").read_bytes() == b"x\r\n"
    assert not (root / spool.QUEUE / f"{bad}.env").exists()
    assert len(notes) == 1 and bad in notes[0] and "unreadable" in notes[0]


def test_load_survives_an_envelope_it_cannot_read_at_all(root):
    good = committed(root, make_env())
    bad = "0000000000000BAD1"
    (root / spool.QUEUE / f"{bad}.msg").write_bytes(b"x\r\n")
    (root / spool.QUEUE / f"{bad}.env").mkdir()  # EISDIR: an OSError, not a parse error
    envelopes, notes = spool.load(root)
    assert envelopes == [good]
    assert len(notes) == 1 and bad in notes[0]


def test_load_sets_aside_an_envelope_whose_message_is_missing(root):
    env = make_env()
    committed(root, env)
    (root / spool.QUEUE / f"{env.id}.msg").unlink()
    envelopes, notes = spool.load(root)
    assert envelopes == []
    assert (root / spool.CORRUPT / f"{env.id}.env").exists()
    assert len(notes) == 1 and "message file is missing" in notes[0]


# -- the lock ------------------------------------------------------------------------------


def test_lock_exclusive_second_holder_times_out(root):
    async def go():
        first = await spool.lock_exclusive(root, timeout=1.0)
        try:
            t0 = time.monotonic()
            with pytest.raises(RuntimeError):
                await spool.lock_exclusive(root, timeout=0.3)
            elapsed = time.monotonic() - t0
        finally:
            first.close()
        # Released: a new holder gets it at once.
        again = await spool.lock_exclusive(root, timeout=0.3)
        again.close()
        return elapsed

    elapsed = asyncio.run(go())
    assert 0.3 <= elapsed < 5.0


def test_lock_exclusive_waits_for_release(root):
    async def go():
        first = await spool.lock_exclusive(root, timeout=1.0)
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, first.close)
        second = await spool.lock_exclusive(root, timeout=5.0)
        second.close()

    asyncio.run(go())
