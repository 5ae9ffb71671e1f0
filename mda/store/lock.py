"""Dot-locks: `<file>.lock` made with O_EXCL, as Dovecot locks dovecot-uidlist.

Dovecot and other Maildir tools honour the same files, so a lock taken
here keeps them out too. A lock whose file has not been touched for
`stale_after` seconds belongs to a process that died: it is taken over.
Waiting is polling with a short, growing pause; holders keep locks for
milliseconds (one file read and rewritten).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from mda.store.errors import LockTimeout

STALE_AFTER = 30.0
TIMEOUT = 60.0
_FIRST_PAUSE = 0.002
_MAX_PAUSE = 0.1


class DotLock:
    """`with DotLock(path):` holds `<path>.lock`. Not reentrant: a second
    acquire by the same holder would wait for itself."""

    def __init__(self, target: Path, *, stale_after: float = STALE_AFTER,
                 timeout: float = TIMEOUT) -> None:
        self.path = target.with_name(target.name + ".lock")
        self.stale_after = stale_after
        self.timeout = timeout
        # Held open while we hold the lock, so its inode cannot be reused by
        # another lock file: the inode then tells ours apart.
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        pause = _FIRST_PAUSE
        while True:
            if self._try_create():
                return
            self._break_if_stale()
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
            # Who holds it, in the pid:host form Dovecot writes, for a person looking.
            os.write(fd, f"{os.getpid()}:{socket.gethostname()}\n".encode())
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            raise
        self._fd = fd
        return True

    def _break_if_stale(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if time.time() - st.st_mtime <= self.stale_after:
            return
        # Only remove the very file we judged stale, not a fresh one that
        # another waiter put there in the meantime.
        with contextlib.suppress(FileNotFoundError):
            again = os.stat(self.path)
            if (again.st_ino, again.st_mtime_ns) == (st.st_ino, st.st_mtime_ns):
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
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DotLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
