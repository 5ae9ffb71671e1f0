"""`mda-ctl reindex`: throw the per-user index away and build it again.

The index is a cache (mda/store/index.py): UIDs come from dovecot-uidlist
and flags from the file names, so rebuilding changes neither. Running
sessions notice the replaced file and follow it. The work runs in a child
process as the Maildir's owner, so whatever it writes stays the MDA's.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mda.store import index as store_index
from mda.store.mailstore import MailStore


def _rebuild(maildir: Path, default_folders: list[str]) -> dict[str, int]:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (maildir / (store_index.FILE + suffix)).unlink()
    counts: dict[str, int] = {}
    with MailStore(maildir, default_folders=default_folders) as store:
        for info in store.list_folders():
            if info.selectable:
                counts[info.name] = store.status(info.name).messages
    return counts


def reindex(maildir: Path, default_folders: list[str]) -> dict[str, int]:
    """Messages per folder after the rebuild."""
    st = maildir.stat()
    if os.geteuid() != 0 or st.st_uid == 0:
        return _rebuild(maildir, default_folders)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the Maildir's owner, rebuild, report
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(st.st_gid)
            os.setuid(st.st_uid)
            counts = _rebuild(maildir, default_folders)
            os.write(write, "\n".join(f"{n}\t{c}" for n, c in counts.items()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rebuilding the index of {maildir} failed")
    return {n: int(c) for n, _, c in (line.partition("\t") for line in out.splitlines() if line)}
