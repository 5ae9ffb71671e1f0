"""Ending the client connections of a server process (imap, pop3) on a stop or reload."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol


class Connection(Protocol):
    busy: bool  # a command is being answered: a stop lets it finish


async def end_all(servers: Iterable[asyncio.AbstractServer],
                  connections: dict[asyncio.Task, Connection], *, retiring: bool,
                  grace: float, after_cancel: float) -> None:
    """Retiring after a reload: no new connections, the open ones go on until
    their clients end them (a new process takes new ones). Stopping: idle
    connections are cancelled now (their handlers say goodbye), busy ones
    finish their command within the grace and are cancelled after it;
    cancelled handlers get `after_cancel` seconds to clean up."""
    for s in servers:
        s.close()
    if retiring:
        while connections:
            await asyncio.wait(list(connections))
        return
    for task, conn in list(connections.items()):
        if not conn.busy:
            task.cancel()
    if connections:
        _, pending = await asyncio.wait(list(connections), timeout=grace)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=after_cancel)
