"""Dot-locks: `<file>.lock` made with O_EXCL, as Dovecot locks dovecot-uidlist.

Dovecot and other Maildir tools honour the same files, so a lock taken
here keeps them out too, and theirs keep us out. The holder writes
`<pid>:<hostname>` into the file (Dovecot's form, which its
file-dotlock.c reads back; we end it with a newline, which it strips).
Holders keep locks for milliseconds (one file read and rewritten); a
waiter polls with a short, growing pause.

When is a lock left behind, and taken over? Dovecot's rule
(lib/file-dotlock.c, check_lock), so that each side judges the other's
lock as the other would:

- The file names a pid on this host (the hostname after ":" is ours):
  if that process is alive (kill(pid, 0) succeeds, or fails with EPERM:
  it exists, as another user), the lock is never taken over, however
  old. If no such process exists, its holder is gone and the lock is
  taken over at once. A file naming our own pid is ours if this process
  holds it (another thread: wait) and else a leftover of an earlier
  process that had our pid (taken over; Dovecot, single-threaded, always
  takes its own pid's lock).
- Otherwise (another host, no pid yet, unreadable): the lock is stale
  once neither it nor the file it protects has changed for
  `stale_after` seconds, 120 s as Dovecot's dovecot-uidlist lock
  (MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT). A change is a new inode, size,
  mtime or ctime; before the waiter saw one, the file's own ctime (or
  its mtime, if later and not in the future) is when it last changed.

Taking over removes the very file judged stale (same inode and times),
never a fresh one that another waiter made in the meantime.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mda.store.errors import LockTimeout

STALE_AFTER = 120.0
TIMEOUT = 60.0
_FIRST_PAUSE = 0.002
_MAX_PAUSE = 0.1

# Lock files this process holds (by path), so that a file naming our pid
# tells another thread's lock (wait) from an earlier process's (take over).
_held: set[str] = set()
_held_guard = threading.Lock()


def owner_text() -> str:
    """What a holder writes into its lock file."""
    return f"{os.getpid()}:{socket.gethostname()}\n"


def local_pid(text: str, hostname: str | None = None) -> int | None:
    """The pid a lock file's text names on this host, or None (another host, no pid)."""
    line = text.split("\n", 1)[0]
    pid, sep, host = line.partition(":")
    if not sep or host != (hostname if hostname is not None else socket.gethostname()):
        return None
    if not pid.isascii() or not pid.isdigit() or int(pid) <= 0:
        return None
    return int(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as someone else
    return True


def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Watch:
    """What one waiter has seen of a lock and of the file it protects."""

    last_change: float = 0.0
    lock_seen: tuple[int, int, int, int, int] | None = None
    file_seen: tuple[int, int, int, int, int] | None = None

    def saw(self, st: os.stat_result, now: float, *, is_lock: bool) -> bool:
        """Note st (of the lock, or of the file it protects); True if it changed."""
        sig = _signature(st)
        seen = self.lock_seen if is_lock else self.file_seen
        if sig == seen:
            return False
        if seen is None:
            # Not seen changing yet: its own times say when it last did.
            when = st.st_mtime if st.st_ctime < st.st_mtime <= now else st.st_ctime
        else:
            when = now
        self.last_change = max(self.last_change, when)
        if is_lock:
            self.lock_seen = sig
        else:
            self.file_seen = sig
        return True


class DotLock:
    """`with DotLock(path):` holds `<path>.lock`. Not reentrant: a second
    acquire by the same holder would wait for itself."""

    def __init__(self, target: Path, *, stale_after: float = STALE_AFTER,
                 timeout: float = TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        self.target = target
        self.path = target.with_name(target.name + ".lock")
        self.stale_after = stale_after
        self.timeout = timeout
        self.clock = clock  # wall-clock time, as file times are: tests move it
        # Held open while we hold the lock, so its inode cannot be reused by
        # another lock file: the inode then tells ours apart.
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        pause = _FIRST_PAUSE
        watch = _Watch()
        while True:
            if self._try_create():
                return
            self._break_if_stale(watch)
            if self._try_create():
                return
            if time.monotonic() > deadline:
                raise LockTimeout(f"{self.path} is held by another process")
            time.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE)

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        try:
            os.write(fd, owner_text().encode())
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            raise
        self._fd = fd
        with _held_guard:
            _held.add(str(self.path))
        return True

    def is_stale(self, watch: _Watch | None = None) -> bool:
        """Whether the lock file there now is left behind (see the module docstring)."""
        watch = watch if watch is not None else _Watch()
        return self._judge(watch) is not None

    def _judge(self, watch: _Watch) -> os.stat_result | None:
        """The stat of the lock file if it is stale, else None."""
        now = self.clock()
        try:
            st = os.stat(self.path)
            with open(self.path, "rb") as f:
                text = f.read(512).decode("ascii", "replace")
        except FileNotFoundError:
            return None
        watch.saw(st, now, is_lock=True)
        pid = local_pid(text)
        if pid is not None:
            if pid == os.getpid():
                with _held_guard:
                    mine = str(self.path) in _held
                return None if mine else st
            return None if pid_alive(pid) else st
        if now <= watch.last_change + self.stale_after:
            return None
        # Possibly stale: a holder busy rewriting the protected file is alive.
        with contextlib.suppress(FileNotFoundError):
            watch.saw(os.stat(self.target), now, is_lock=False)
        return st if now > watch.last_change + self.stale_after else None

    def _break_if_stale(self, watch: _Watch) -> None:
        st = self._judge(watch)
        if st is None:
            return
        # Only remove the very file we judged stale, not a fresh one that
        # another waiter put there in the meantime.
        with contextlib.suppress(FileNotFoundError):
            if _signature(os.stat(self.path)) == _signature(st):
                os.unlink(self.path)

    def touch(self) -> None:
        """Keep the lock fresh during a long hold, so nobody takes it over."""
        if self._fd is not None:
            os.utime(self._fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                # If it was taken over (we were too slow), it is not ours to remove.
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    os.unlink(self.path)
        finally:
            # Only now: until the file is gone, a thread of ours that finds
            # our pid in it must wait, not take it over.
            with _held_guard:
                _held.discard(str(self.path))
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DotLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
