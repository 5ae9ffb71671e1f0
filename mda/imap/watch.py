"""Notice changes to a folder made by other processes, for IDLE and NOOP.

The LMTP process delivers, other IMAP sessions and POP3 change flags and
expunge, and any Maildir tool may `cp` a file into new/: all of them show
as a changed mtime of new/ or cur/ (a rename or a new file changes its
directory), or of the UID list. One poller per folder, however many
sessions watch it, keeps 500 idle clients on one INBOX cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

POLL = 0.25  # a delivery reaches a client in IDLE well within a second


def stamp(folder: Path) -> tuple:
    out = []
    for name in ("new", "cur", "dovecot-uidlist"):
        try:
            st = os.stat(folder / name)
            out.append((st.st_mtime_ns, st.st_ino, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


class Watchers:
    def __init__(self, poll: float = POLL) -> None:
        self.poll = poll
        self._subs: dict[Path, set[Callable[[], None]]] = {}
        self._tasks: dict[Path, asyncio.Task] = {}

    def subscribe(self, folder: Path, callback: Callable[[], None]) -> Callable[[], None]:
        """callback() runs (in the loop) after each change; returns the unsubscribe function."""
        subs = self._subs.setdefault(folder, set())
        subs.add(callback)
        if folder not in self._tasks:
            self._tasks[folder] = asyncio.create_task(self._run(folder))

        def unsubscribe() -> None:
            subs.discard(callback)
            if not subs:
                self._subs.pop(folder, None)
                task = self._tasks.pop(folder, None)
                if task is not None:
                    task.cancel()
        return unsubscribe

    async def _run(self, folder: Path) -> None:
        last = stamp(folder)
        while True:
            await asyncio.sleep(self.poll)
            now = stamp(folder)
            if now != last:
                last = now
                for cb in list(self._subs.get(folder, ())):
                    with contextlib.suppress(Exception):
                        cb()

    def close(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        self._tasks.clear()
        self._subs.clear()
