"""Small durable file helpers for the store's own files (uidlist, keywords, subscriptions)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from common.fsutil import fsync_dir

FILE_MODE = 0o600


def write_all(fd: int, data: bytes) -> None:
    with memoryview(data) as view:
        while view:
            view = view[os.write(fd, view) :]


def replace_file(path: Path, data: bytes) -> None:
    """Write data to a temporary file beside path, fsync it and rename it over path.

    Readers see the old or the new file, never a part of one.
    """
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
