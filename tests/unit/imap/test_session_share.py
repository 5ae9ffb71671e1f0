"""Shared: one store per user in a process, and the cap on the user's store calls."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from mda.imap.session import Session, Shared


def test_logins_at_once_open_one_store_and_the_last_release_closes_it() -> None:
    opened = []

    def open_store():
        time.sleep(0.05)  # both logins are under way while the store opens
        opened.append(object())
        return opened[-1]

    async def main():
        shared = Shared()
        a, b = await asyncio.gather(shared.acquire("u", 2, open_store),
                                    shared.acquire("u", 2, open_store))
        assert a is b and a.store is opened[0] and len(opened) == 1
        assert shared.release("u") is None
        assert shared.release("u") is opened[0]
        assert "u" not in shared.users

    asyncio.run(main())


def test_a_failed_open_leaves_no_share_behind() -> None:
    def broken():
        raise OSError("no")

    async def main():
        shared = Shared()
        try:
            await shared.acquire("u", 2, broken)
        except OSError:
            pass
        assert shared.users == {}

    asyncio.run(main())


def test_a_users_calls_run_at_most_threads_at_once_over_all_its_sessions() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def work():
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    async def main():
        shared = Shared()
        sessions = [Session(None, None, SimpleNamespace(peer="test"))  # type: ignore[arg-type]
                    for _ in range(3)]
        for s in sessions:
            s.share = await shared.acquire("u", 2, lambda: object())
        await asyncio.gather(*(s.run(work) for s in sessions for _ in range(4)))

    asyncio.run(main())
    assert most == 2
