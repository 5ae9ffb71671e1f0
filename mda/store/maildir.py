"""Delivery into Maildir: where a user's mail lives and how a message gets there.

A message is written to tmp/, fsynced, linked into new/ under the same
unique name and new/ is fsynced; only then is it ours. Nothing here knows a
protocol, and any other Maildir program (or a `cp` into new/) stays valid.
Everything blocks: callers on an event loop run it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common.fsutil import fsync_dir
from mda.store import names, subscriptions

SUBDIRS = ("cur", "new", "tmp")
DIR_MODE = 0o700
FILE_MODE = 0o600
# Names are unique per process by the counter; a clash means a reused pid
# and a clock that went back, so a few fresh names are plenty.
_ATTEMPTS = 5
# Filesystems without hard links answer link() with one of these.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}

_deliveries = itertools.count(1)


def _check_component(part: str, what: str) -> None:
    # The address becomes two path components; none may climb out of the
    # mail root or hide as a dot-file (Maildir++ folders start with a dot).
    if not part:
        raise ValueError(f"empty {what}")
    if part.startswith("."):
        raise ValueError(f"{what} {part!r} starts with a dot")
    if "/" in part or any(ord(c) < 0x20 or ord(c) == 0x7F for c in part):
        raise ValueError(f"{what} {part!r} contains '/' or a control character")


def maildir_path(mail_root: Path, address: str) -> Path:
    """<mail_root>/<domain>/<local part>/Maildir for a canonical address."""
    local, at, domain = address.rpartition("@")
    if not at:
        raise ValueError(f"{address!r} has no domain")
    _check_component(local, "local part")
    _check_component(domain, "domain")
    return mail_root / domain / local / "Maildir"


def unique_name(size: int) -> str:
    """A standard Maildir base name; S= is the stored size, as Dovecot writes it."""
    usecs = time.time_ns() // 1000
    secs, usec = divmod(usecs, 1_000_000)
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    return f"{secs}.M{usec}P{os.getpid()}Q{next(_deliveries)}.{host},S={size}"


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _makedirs(path: Path) -> None:
    """mkdir -p with our mode, fsyncing each parent so a new user's tree survives a crash."""
    if path.is_dir():
        return
    _makedirs(path.parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if path.is_dir():
            return  # made by a concurrent delivery
        raise
    fsync_dir(path.parent)


def _write_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        with memoryview(data) as view:
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    try:
        os.close(fd)
    except OSError:
        _unlink_quietly(path)  # NFS reports a late write error on close
        raise


def _build(path: Path, folders: Sequence[str]) -> None:
    for sub in SUBDIRS:
        os.mkdir(path / sub, DIR_MODE)
    for name in folders:
        # Non-ASCII names in modified UTF-7, as Dovecot and the store expect.
        folder = path / names.dirname(name)
        os.mkdir(folder, DIR_MODE)
        for sub in SUBDIRS:
            os.mkdir(folder / sub, DIR_MODE)
        _write_new_file(folder / "maildirfolder", b"")
        fsync_dir(folder)
    _write_new_file(path / "subscriptions", subscriptions.serialize(list(folders)))
    fsync_dir(path)


def ensure_maildir(path: Path, folders: Sequence[str]) -> bool:
    """Make path a Maildir with the given Maildir++ folders; True if it was created.

    A new Maildir is built under a temporary name and renamed into place, so
    a concurrent delivery or IMAP login sees either none or a whole one.
    Folders and subscriptions come only with a new Maildir: a folder the
    user deleted later is not brought back.
    """
    if all((path / sub).is_dir() for sub in SUBDIRS):
        return False
    for name in folders:
        if not name or name.startswith(".") or "/" in name:
            raise ValueError(f"folder name {name!r} cannot be a Maildir++ folder")
        names.dirname(name)  # InvalidName (a ValueError) for the rest: ".", control chars
    _makedirs(path.parent)
    if path.is_dir():
        # Made by hand or by another tool: complete it, add nothing else.
        for sub in SUBDIRS:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path / sub, DIR_MODE)
        return False
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _build(staging, folders)
        os.rename(staging, path)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and path.is_dir():
            return False  # another process created it first
        raise
    fsync_dir(path.parent)
    return True


def _link(tmp: Path, new: Path) -> bool:
    """Publish tmp as new without replacing anything; False if new exists."""
    try:
        os.link(tmp, new)
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
        # No hard links here: rename, which would replace, after a check.
        if new.exists():
            return False
        os.rename(tmp, new)
    return True


def write_tmp(maildir: Path, data: bytes, *, extra: str = "",
              mtime: float | None = None) -> tuple[Path, str]:
    """Write data as it is to maildir/tmp under a new unique base name, fsynced.

    extra is appended to the name (the store adds ",W=<CRLF size>"); mtime,
    if given, becomes the file's modification time (IMAP's internal date).
    Returns (path, base name); the caller publishes it with `publish` and
    removes the tmp file.
    """
    for _ in range(_ATTEMPTS):
        name = unique_name(len(data)) + extra
        tmp = maildir / "tmp" / name
        try:
            _write_new_file(tmp, data)
        except FileExistsError:
            continue
        if mtime is not None:
            try:
                os.utime(tmp, (mtime, mtime))
            except BaseException:
                _unlink_quietly(tmp)
                raise
        return tmp, name
    raise FileExistsError(errno.EEXIST, "no unused Maildir name found", str(maildir))


def publish(tmp: Path, dest: Path) -> bool:
    """Give a written file its place in new/ or cur/ without replacing anything.

    False if dest exists. The caller fsyncs dest's directory.
    """
    return _link(tmp, dest)


def deliver(maildir: Path, data: bytes) -> str:
    """Store a message (CRLF lines from the wire) in maildir/new; returns its base name.

    When this returns, the file and its directory entry are on disk.
    """
    body = data.replace(b"\r\n", b"\n")
    for _ in range(_ATTEMPTS):
        name = unique_name(len(body))
        tmp, new = maildir / "tmp" / name, maildir / "new" / name
        try:
            _write_new_file(tmp, body)
        except FileExistsError:
            continue
        try:
            linked = _link(tmp, new)
        finally:
            _unlink_quietly(tmp)
        if not linked:
            continue
        try:
            fsync_dir(new.parent)
        except BaseException:
            # Not durable, so not delivered: the sender will try again, and
            # a copy left here would then be a duplicate.
            _unlink_quietly(new)
            raise
        return name
    raise FileExistsError(errno.EEXIST, "no unused Maildir name found", str(maildir))
