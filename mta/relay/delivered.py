"""What the relay delivered lately, so a restarted queue does not deliver it twice.

The queue writes each recipient's answer into its envelope when the relay's
reply reaches it. A queue process killed while a hand-over runs never hears
that answer: the relay (a process of its own, still alive) finishes the
transaction, and the restarted queue asks again for the same recipients.
So the relay remembers the recipients it delivered, by queue id and
address, and answers a second request for them from memory instead of
handing the message over again. A hand-over of a message still under way
when the same recipients are asked for again is waited for first.

Only successes are kept (trying a failure again duplicates nothing), in
memory only, bounded in number and age: a relay that dies forgets, and then
LMTP's and SMTP's rule applies (at least once: a copy may arrive twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator

# A restarted queue asks again within seconds; an hour covers a slow restart.
MAX_AGE = 3600.0
MAX_ENTRIES = 100_000


class Delivered:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_age: float = MAX_AGE) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        # (queue id, recipient) -> (when, reply, remote host or "")
        self._done: OrderedDict[tuple[str, str], tuple[float, str, str]] = OrderedDict()
        self._busy: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def one_at_a_time(self, key: str) -> AsyncIterator[None]:
        """Hand-overs with one key (a message's recipients on one route) run in turn."""
        lock, users = self._busy.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._busy[key]

    def known(self, qid: str, recipients: list[str]) -> dict[str, tuple[str, str]]:
        """recipient -> (reply, remote host) for those already delivered."""
        self._expire()
        out = {}
        for r in recipients:
            entry = self._done.get((qid, r))
            if entry is not None:
                out[r] = entry[1:]
        return out

    def remember(self, qid: str, replies: dict[str, str], remote: dict[str, str]) -> None:
        now = time.monotonic()
        for r, reply in replies.items():
            if reply[:1] == "2":
                self._done[(qid, r)] = (now, reply, remote.get(r, ""))
                self._done.move_to_end((qid, r))
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)

    def _expire(self) -> None:
        limit = time.monotonic() - self.max_age
        while self._done:
            key, (when, _, _) = next(iter(self._done.items()))
            if when >= limit:
                break
            del self._done[key]
