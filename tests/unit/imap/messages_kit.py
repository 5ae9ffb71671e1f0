"""A session over a real MailStore in a temporary Maildir, without a network,
for the tests of the message commands (test_messages_*.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from common import log
from mda.imap import messages
from mda.imap.commands import Command
from mda.imap.session import Session
from mda.store import maildir
from mda.store.mailstore import MailStore
from tests.unit.imap.wire import one


class Box:
    """One user's Maildir, its MailStore and an IMAP session with INBOX selected."""

    def __init__(self, root: Path) -> None:
        self.root = root
        maildir.ensure_maildir(root, ["Archive", "Trash"])
        self.store = MailStore(root)
        self.session = self.open_session()
        self.runs = 0  # worker-thread calls made by the session

    def open_session(self, readonly: bool = False) -> Session:
        s = Session.__new__(Session)  # no server, no auth process: only what handlers use
        s.user = "alice@example.test"
        s.store = self.store
        s.folder = self.store.open_folder("INBOX", readonly=readonly)
        s.readonly = readonly
        s.condstore = False
        s.log = log.get()
        box = self

        async def run(fn, *args, **kwargs):
            box.runs += 1
            return await asyncio.to_thread(fn, *args, **kwargs)

        s.run = run  # type: ignore[method-assign]
        return s

    def deliver(self, data: bytes, folder: str = "") -> str:
        path = self.root / ("." + folder if folder else "")
        return maildir.deliver(path, data.replace(b"\n", b"\r\n"))

    def refresh(self) -> None:
        assert self.session.folder is not None
        self.session.folder.refresh()

    def command(self, line: bytes, session: Session | None = None) -> list[bytes]:
        """Every response of one command, the tagged answer last."""
        cmd = one(line)
        assert isinstance(cmd, Command), cmd
        session = session or self.session

        async def collect() -> list[bytes]:
            handler = messages.HANDLERS[type(cmd)]
            return [out async for out in handler(session, cmd)]

        chunks = asyncio.run(collect())
        # Handlers may send several responses in one write: split them back.
        out: list[bytes] = []
        for chunk in chunks:
            out.extend(_split(chunk))
        return out

    def close(self) -> None:
        self.store.close()


def _split(data: bytes) -> list[bytes]:
    """Responses out of a byte string, literals kept inside their response."""
    out = []
    pos = 0
    start = 0
    while pos < len(data):
        end = data.index(b"\r\n", pos) + 2
        line = data[pos:end]
        if line.endswith(b"}\r\n") and b"{" in line:
            size = int(line[line.rindex(b"{") + 1 : -3])
            pos = end + size
            continue
        out.append(data[start:end])
        pos = start = end
    return out
