"""A damaged index: how it is recognised, set aside and rebuilt, and which calls retry.

The index (index.py) is a cache of the Maildir, so damage costs nothing but
a rebuild: UIDs and UIDVALIDITY come from dovecot-uidlist and flags from
the file names, so the rebuilt index gives every message the UID it had.

- Recognised: SQLite says SQLITE_CORRUPT ("database disk image is
  malformed") or SQLITE_NOTADB ("file is not a database"), on opening or
  on any later query; and when a process first opens a given index file,
  `PRAGMA quick_check` must say "ok" (it reads every page; once per
  process and file, so a long-lived process pays it once).
- Set aside, not deleted: `mailpair-index.sqlite` and its -wal and -shm
  become `mailpair-index.sqlite.damaged-<UTC time>` (plus -wal, -shm), a
  set that sqlite3 can still open for a post-mortem. The Maildir directory
  is flocked meanwhile and the file moved only if it is still the inode that
  failed, so when several sessions or processes find the same damage, one
  moves it and logs it, and the others just follow the new file (each
  Index reopens a replaced file, as after `mda-ctl reindex`).
- Logged once, by whoever moved the file: a warning "index damaged" with
  the user, the path, where it went and SQLite's message.
- Calls: a store method that met the damage recovers and, if the method
  is safe to run twice (it reads, or sets state: flags, expunge, status,
  select), runs once more, so the session that found the damage goes on.
  A method that adds mail (append, copy, move) or changes folders is not
  run again, since its first run may have placed a file before the index
  failed: it raises the original error after the recovery, the client is
  told to try again (IMAP: NO [UNAVAILABLE]) and its next try finds a
  healthy index.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from common import log

DAMAGED = ".damaged-"
_SIDE_FILES = ("", "-wal", "-shm")
# Index files this process has found whole: (device, inode).
_checked: set[tuple[int, int]] = set()
_checked_guard = threading.Lock()
# How deep the current thread is in store calls: only the outermost one retries.
_calls = threading.local()


def is_damage(e: BaseException) -> bool:
    """Whether e is SQLite saying the file is damaged (not busy, not full, not gone)."""
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(e)
    return "malformed" in text or "not a database" in text


def check_once(conn: sqlite3.Connection, path: Path) -> str | None:
    """None if the file is whole (or this process already found it so), else
    what quick_check found wrong."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    with _checked_guard:
        if key in _checked:
            return None
    rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    problems = [str(r[0]) for r in rows]
    if problems == ["ok"]:
        with _checked_guard:
            _checked.add(key)
        return None
    return "; ".join(problems)


@contextlib.contextmanager
def maildir_locked(root: Path) -> Iterator[None]:
    """flock on the Maildir directory itself: one repair at a time across threads
    and processes (flock locks belong to the open file, so threads exclude too)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def move_aside(path: Path, failed_ino: int | None, *, user: str | None, error: str) -> bool:
    """Set the index at path aside if it is still the file that failed (failed_ino;
    None: whatever is there); True if it was moved here, and logged."""
    with maildir_locked(path.parent):
        return _move_aside(path, failed_ino, user=user, error=error)


def _move_aside(path: Path, failed_ino: int | None, *, user: str | None, error: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if failed_ino is not None and st.st_ino != failed_ino:
        return False  # someone else set it aside already and made a new one
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}{DAMAGED}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{DAMAGED}{stamp}.{n}")
    for suffix in _SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{path}{suffix}", f"{target}{suffix}")
    log.get().warning("index damaged", user=user, path=str(path), moved_to=str(target),
                      error=error)
    return True


class Repairable(Protocol):
    generation: int

    def recover(self, error: BaseException, generation: int) -> bool: ...


T = TypeVar("T", bound=Callable[..., Any])


def recovering(index_of: Callable[[Any], Repairable], *, again: bool = True) -> Callable[[T], T]:
    """Decorate a store method: on damage, recover the index and (again=True) run once more.

    Only the outermost store call of a thread acts, outside any transaction;
    inner calls let the error through to it.
    """
    def decorate(method: T) -> T:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(_calls, "depth", 0)
            _calls.depth = depth + 1
            try:
                if depth:
                    return method(self, *args, **kwargs)
                index = index_of(self)
                generation = index.generation
                try:
                    return method(self, *args, **kwargs)
                except sqlite3.DatabaseError as e:
                    if not is_damage(e) or not index.recover(e, generation):
                        raise
                    if not again:
                        raise
                return method(self, *args, **kwargs)
            finally:
                _calls.depth = depth
        return call  # type: ignore[return-value]
    return decorate
