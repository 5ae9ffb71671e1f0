"""dovecot-uidlist.lock takeover by Dovecot's rule (lib/file-dotlock.c): a live local
owner keeps its lock for ever, a dead one loses it at once, and a lock we cannot
trace to a process is stale after 120 s without a change to it or to the file it
protects. Time is a fake clock handed to DotLock, and file times set with os.utime."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mda.store import lock
from mda.store.errors import LockTimeout
from mda.store.lock import DotLock, _Watch

HOST = socket.gethostname()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "dovecot-uidlist"
    t.write_bytes(b"3 V1 N1 G00\n")
    return t


@pytest.fixture
def live_pid() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: no process has this pid now (until it is reused)
    return proc.pid


def left_lock(target: Path, text: str) -> Path:
    path = target.with_name(target.name + ".lock")
    path.write_text(text)
    return path


def test_our_lock_file_says_who_holds_it_as_dovecot_reads_it(target: Path) -> None:
    with DotLock(target) as held:
        text = held.path.read_text()
        assert text == f"{os.getpid()}:{HOST}\n"
        assert lock.local_pid(text) == os.getpid()


@pytest.mark.parametrize(("text", "pid"), [
    (f"123:{HOST}\n", 123),
    (f"123:{HOST}", 123),  # Dovecot writes no newline
    ("123:otherhost\n", None),
    (f"abc:{HOST}\n", None),
    (f"0:{HOST}\n", None),
    (f"-5:{HOST}\n", None),
    ("123\n", None),
    ("", None),
])
def test_local_pid(text: str, pid: int | None) -> None:
    assert lock.local_pid(text) == pid


def test_a_lock_from_another_host_is_stale_after_120_s_without_change(target: Path) -> None:
    path = left_lock(target, "4242:otherhost\n")
    clock = Clock()
    lk = DotLock(target, clock=clock, timeout=0.2)
    watch = _Watch()
    clock.now += 119
    assert not lk.is_stale(watch)
    with pytest.raises(LockTimeout):
        lk.acquire()
    assert path.read_text() == "4242:otherhost\n"
    clock.now += 2
    assert lk.is_stale(watch)
    with lk:
        assert path.read_text() == f"{os.getpid()}:{HOST}\n"


def test_the_old_30_s_rule_no_longer_takes_a_lock_over(target: Path) -> None:
    path = left_lock(target, "junk without a pid\n")
    clock = Clock()
    clock.now += 31
    with pytest.raises(LockTimeout):
        DotLock(target, clock=clock, timeout=0.2).acquire()
    assert path.read_text() == "junk without a pid\n"


def test_the_lock_changing_restarts_the_120_s(target: Path) -> None:
    path = left_lock(target, "1:otherhost\n")
    clock = Clock()
    lk = DotLock(target, clock=clock)
    watch = _Watch()
    clock.now += 100
    assert not lk.is_stale(watch)
    path.write_text("1:otherhost\nx\n")  # its holder is busy: the size changed
    clock.now += 100  # 200 s after it was made: the change is seen now
    assert not lk.is_stale(watch)
    clock.now += 120
    assert not lk.is_stale(watch)
    clock.now += 1.5
    assert lk.is_stale(watch)


def test_a_change_to_the_protected_file_keeps_the_lock(target: Path) -> None:
    """The holder rewrote dovecot-uidlist 110 s after taking the lock: alive then."""
    left_lock(target, "1:otherhost\n")
    clock = Clock()
    start = clock.now
    os.utime(target, (start + 110, start + 110))
    lk = DotLock(target, clock=clock)
    clock.now = start + 121
    assert not lk.is_stale()
    clock.now = start + 231
    assert lk.is_stale()


def test_mtime_alone_does_not_make_a_lock_old(target: Path) -> None:
    """A file's mtime can be set back (os.utime), its ctime not: Dovecot trusts
    the ctime then, and so do we."""
    path = left_lock(target, "1:otherhost\n")
    old = time.time() - 1000
    os.utime(path, (old, old))
    os.utime(target, (old, old))
    assert not DotLock(target).is_stale()
    clock = Clock()
    clock.now += 121
    assert DotLock(target, clock=clock).is_stale()


def test_a_live_local_owner_keeps_its_lock_however_old(target: Path, live_pid: int) -> None:
    path = left_lock(target, f"{live_pid}:{HOST}")
    old = time.time() - 100000
    os.utime(path, (old, old))
    clock = Clock()
    clock.now += 100000
    lk = DotLock(target, clock=clock, timeout=0.3)
    assert not lk.is_stale()
    with pytest.raises(LockTimeout):
        lk.acquire()
    assert path.read_text() == f"{live_pid}:{HOST}"


def test_an_owner_we_may_not_signal_is_alive(target: Path, monkeypatch) -> None:
    left_lock(target, f"4242:{HOST}\n")

    def eperm(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(lock.os, "kill", eperm)
    clock = Clock()
    clock.now += 100000
    assert not DotLock(target, clock=clock).is_stale()


def test_a_dead_local_owner_loses_its_lock_at_once(target: Path) -> None:
    pid = dead_pid()
    path = left_lock(target, f"{pid}:{HOST}\n")
    lk = DotLock(target, timeout=5)
    assert lk.is_stale()
    with lk:
        assert path.read_text() == f"{os.getpid()}:{HOST}\n"


def test_the_owner_dying_frees_the_lock_for_a_waiter(target: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        path = left_lock(target, f"{proc.pid}:{HOST}\n")
        got = threading.Event()

        def wait() -> None:
            with DotLock(target, timeout=60):
                got.set()
        t = threading.Thread(target=wait)
        t.start()
        assert not got.wait(0.3)  # alive: it waits
        proc.stdin.close()
        proc.wait(60)
        t.join(60)
        assert got.is_set()
        assert not path.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_pid_on_another_host_means_nothing_here(target: Path) -> None:
    left_lock(target, f"{dead_pid()}:otherhost\n")
    clock = Clock()
    assert not DotLock(target, clock=clock).is_stale()
    clock.now += 121
    assert DotLock(target, clock=clock).is_stale()


def test_our_pid_is_another_threads_lock_or_an_earlier_process_s(target: Path) -> None:
    clock = Clock()
    clock.now += 100000
    with DotLock(target) as held:
        # Another thread of this process holds it: wait, however old it looks.
        assert not DotLock(target, clock=clock).is_stale()
        with pytest.raises(LockTimeout):
            DotLock(target, timeout=0.2).acquire()
        assert held.path.exists()
    # The same text left by an earlier process that had our pid: taken over at once.
    path = left_lock(target, f"{os.getpid()}:{HOST}\n")
    assert DotLock(target).is_stale()
    with DotLock(target, timeout=5):
        assert path.exists()
