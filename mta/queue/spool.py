"""The spool on the filesystem: one file for the message, one for the envelope.

    incoming/<id>.msg             created by the queue process, written by smtp
    incoming/<id>.env             written by the queue process at commit
    queue/<id>.msg, <id>.env      renamed in by the queue process (commit)

The spool belongs to the queue's user alone. The smtp process never opens
a path in it: it asks the queue to create a message file (`create_incoming`)
and is handed a write-only descriptor of it (mta/queue/intake.py), into which
it streams our Received header and then the client's bytes as DATA arrives,
so no session holds a whole message in memory. At the end of DATA the queue
fsyncs the .msg, writes and fsyncs the .env (`seal_incoming`), and commits;
a transaction that fails (too big, refused, a full disk, the client gone)
removes both instead. The relay is handed a read-only descriptor of a
queued .msg (`open_message`) and never opens a spool path either.

A message is committed when its envelope is in queue/ and the directory is
fsynced; only then may the client hear 250. The .msg file is renamed first,
so an .env in queue/ always has its message beside it, and a .msg with no
.env was never acknowledged and may go.

Crash cases: a process that dies in the middle of DATA, or between writing
and commit, leaves files in incoming/ that were never acknowledged: the
queue removes those it finds untouched for a while (a file being written is
touched at least once a minute while its client sends). A commit cut short
leaves a .msg in queue/ without its .env, which load() removes; an .env in
queue/ is always complete (written, fsynced, renamed).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import threading
import time
from pathlib import Path

from common.fsutil import fsync_dir
from mta.queue.envelope import Envelope

INCOMING, QUEUE, CORRUPT = "incoming", "queue", "corrupt"
SUBDIRS = (INCOMING, QUEUE, CORRUPT)


async def lock_exclusive(root: Path, timeout: float) -> object:
    """Hold the spool's lock for as long as the returned file stays open."""
    f = open(root / "queue.lock", "a+")  # noqa: SIM115 - held for the process's life
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if asyncio.get_running_loop().time() > deadline:
                f.close()
                raise RuntimeError("another queue process holds the spool lock") from None
            await asyncio.sleep(0.2)


def create_dirs(root: Path) -> None:
    for sub in SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


def give_to(root: Path, uid: int, gid: int) -> int:
    """Chown what is in the spool to the queue's user (a spool from a release
    whose queue ran as the smtp user); returns how many entries were changed."""
    changed = 0
    for d in (root, *(root / sub for sub in SUBDIRS)):
        with os.scandir(d) as entries:
            for e in entries:
                with contextlib.suppress(FileNotFoundError):
                    st = e.stat(follow_symlinks=False)
                    if (st.st_uid, st.st_gid) != (uid, gid) and not e.is_symlink():
                        os.chown(e.path, uid, gid, follow_symlinks=False)
                        changed += 1
    return changed


def new_id() -> str:
    """Time-ordered and unique: 11 hex digits of microseconds, 6 random."""
    return f"{time.time_ns() // 1000 & 0xFFFFFFFFFFF:011X}{secrets.token_hex(3).upper()}"


def valid_id(qid: str) -> bool:
    return len(qid) == 17 and all(c in "0123456789ABCDEF" for c in qid)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class IncomingFile:
    """One message being written into incoming/: open, write..., then finish or discard.

    Blocking; callable from any thread. A lock keeps the calls in order, so
    a discard that comes while a write runs in another thread waits for it
    (and never closes a descriptor that the write still uses).
    """

    def __init__(self, root: Path, qid: str) -> None:
        self.root = root
        self.qid = qid
        self.size = 0
        self._fd: int | None = None
        self._gone = False
        self._lock = threading.Lock()

    def open(self) -> None:
        with self._lock:
            if self._gone:
                return
            path = self.root / INCOMING / f"{self.qid}.msg"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise ValueError(f"{self.qid}: not open")
            _write_all(self._fd, data)
            self.size += len(data)

    def finish(self, env: Envelope) -> None:
        """fsync the message, then write and fsync its envelope; OSError propagates."""
        with self._lock:
            if self._fd is None:
                raise ValueError(f"{self.qid}: not open")
            try:
                os.fsync(self._fd)
                self._close()
                _write_synced(self.root / INCOMING / f"{self.qid}.env", env.to_bytes())
            except BaseException:
                self._discard()
                raise

    def discard(self) -> None:
        with self._lock:
            self._discard()

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _discard(self) -> None:
        self._gone = True
        with contextlib.suppress(OSError):
            self._close()
        discard_incoming(self.root, self.qid)


def write_incoming(root: Path, env: Envelope, message: bytes) -> None:
    """Write both files into incoming/ and fsync them; OSError (ENOSPC...) propagates."""
    f = IncomingFile(root, env.id)
    try:
        f.open()
        f.write(message)
    except BaseException:
        f.discard()
        raise
    f.finish(env)


def discard_incoming(root: Path, qid: str) -> None:
    for suffix in (".msg", ".env"):
        with contextlib.suppress(FileNotFoundError):
            (root / INCOMING / (qid + suffix)).unlink()


def create_incoming(root: Path, qid: str) -> int:
    """A new, empty message file in incoming/, open write-only: the descriptor smtp gets."""
    return os.open(root / INCOMING / f"{qid}.msg", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def incoming_size(root: Path, qid: str) -> int:
    """The size of an uncommitted message file; FileNotFoundError if there is none."""
    return os.stat(root / INCOMING / f"{qid}.msg").st_size


def is_committed(root: Path, qid: str) -> bool:
    return (root / QUEUE / f"{qid}.env").exists()


def seal_incoming(root: Path, env: Envelope) -> None:
    """fsync a message another process wrote, then write and fsync its envelope beside it.

    fsync through a descriptor of our own: it flushes the file, whoever wrote it.
    """
    fd = os.open(root / INCOMING / f"{env.id}.msg", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    path = root / INCOMING / f"{env.id}.env"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a commit cut short: written again whole
    try:
        _write_synced(path, env.to_bytes())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def commit(root: Path, qid: str) -> Envelope:
    """Move a message from incoming/ into the queue, durably.

    Committing a message again finishes what the first commit did or left
    undone: the request may be sent twice when a reload replaced the queue
    process before its answer came (ipc.Client.call, idempotent).
    """
    src, dst = root / INCOMING / qid, root / QUEUE / qid
    for suffix in (".msg", ".env"):  # the .env last: it is what makes it queued
        try:
            os.rename(src.with_suffix(suffix), dst.with_suffix(suffix))
        except FileNotFoundError:
            if not dst.with_suffix(suffix).exists():
                raise
    fsync_dir(root / QUEUE)
    return Envelope.from_bytes(dst.with_suffix(".env").read_bytes())


def inject(root: Path, env: Envelope, message: bytes) -> None:
    """Queue a message made here (a DSN) as durably as one received by SMTP."""
    write_incoming(root, env, message)
    try:
        commit(root, env.id)
    except BaseException:
        discard_incoming(root, env.id)
        raise


def message_path(root: Path, qid: str) -> Path:
    return root / QUEUE / f"{qid}.msg"


def open_message(root: Path, qid: str) -> int:
    """A read-only descriptor of a queued message, to hand to the relay."""
    return os.open(message_path(root, qid), os.O_RDONLY)


def save(root: Path, env: Envelope) -> None:
    """Replace the envelope atomically (the message file never changes)."""
    path = root / QUEUE / f"{env.id}.env"
    tmp = root / QUEUE / f"{env.id}.env.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        _write_synced(tmp, env.to_bytes())
    except BaseException:  # a full disk: the old envelope stays, no partial one beside it
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.replace(tmp, path)
    # Otherwise a crash could bring back the old envelope, and with it
    # recipients that were already delivered.
    fsync_dir(root / QUEUE)


def remove(root: Path, qid: str) -> None:
    """Envelope first: a crash in between leaves a .msg that load() clears."""
    for suffix in (".env", ".msg"):
        with contextlib.suppress(FileNotFoundError):
            (root / QUEUE / (qid + suffix)).unlink()


def load(root: Path) -> tuple[list[Envelope], list[str]]:
    """Every committed envelope, and a list of what was cleared or unreadable."""
    qdir = root / QUEUE
    envelopes, notes = [], []
    names = set(os.listdir(qdir))
    for name in sorted(names):
        qid, _, suffix = name.partition(".")
        if suffix == "env.tmp":
            (qdir / name).unlink()
        elif suffix == "msg" and f"{qid}.env" not in names:
            (qdir / name).unlink()
            notes.append(f"{qid}: removed a message that was never committed")
        elif suffix == "env":
            problem = None
            if f"{qid}.msg" not in names:
                problem = "its message file is missing"
            else:
                try:
                    envelopes.append(Envelope.from_bytes((qdir / name).read_bytes()))
                except (OSError, ValueError, TypeError, KeyError) as e:
                    problem = f"envelope unreadable: {e}"
            if problem:
                # Kept for the administrator, out of the scheduler's way.
                _set_aside(root, qid)
                notes.append(f"{qid}: {problem}; moved to {CORRUPT}/")
    return envelopes, notes


def _set_aside(root: Path, qid: str) -> None:
    (root / CORRUPT).mkdir(exist_ok=True, mode=0o700)
    for suffix in (".env", ".msg"):
        with contextlib.suppress(OSError):
            os.rename(root / QUEUE / (qid + suffix), root / CORRUPT / (qid + suffix))
