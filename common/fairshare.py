"""A few slots shared fairly between keys (client addresses), without I/O.

Password hashing has `slots` threads. One key may hold at most `per_key` of
them at once; its further requests wait in its own queue, so a client
sending hundreds of guesses queues behind itself, not in front of everyone
else. When a slot comes free the waiting keys are served in turn (round
robin), so several busy keys share what is left evenly.

The tickets are opaque to this module (the asyncio side uses futures).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable


class FairShare:
    def __init__(self, slots: int, per_key: int) -> None:
        self.slots = max(1, slots)
        self.per_key = max(1, min(per_key, self.slots))
        self.running: dict[Hashable, int] = {}
        self.waiting: OrderedDict[Hashable, deque[object]] = OrderedDict()
        self.busy = 0

    def _may_run(self, key: Hashable) -> bool:
        return self.busy < self.slots and self.running.get(key, 0) < self.per_key

    def _start(self, key: Hashable) -> None:
        self.busy += 1
        self.running[key] = self.running.get(key, 0) + 1

    def ask(self, key: Hashable, ticket: object) -> bool:
        """True: run now (the slot is taken). False: the ticket waits its turn."""
        if key not in self.waiting and self._may_run(key):
            self._start(key)
            return True
        self.waiting.setdefault(key, deque()).append(ticket)
        return False

    def withdraw(self, key: Hashable, ticket: object) -> None:
        """A waiting ticket that is no longer wanted."""
        queue = self.waiting.get(key)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self.waiting[key]

    def done(self, key: Hashable) -> list[tuple[Hashable, object]]:
        """Give back a slot of key's; the (key, ticket) pairs that run now."""
        self.busy -= 1
        left = self.running[key] - 1
        if left:
            self.running[key] = left
        else:
            del self.running[key]
        granted: list[tuple[Hashable, object]] = []
        while self.busy < self.slots:
            chosen = next((k for k in self.waiting if self._may_run(k)), None)
            if chosen is None:
                break
            queue = self.waiting.pop(chosen)
            granted.append((chosen, queue.popleft()))
            self._start(chosen)
            if queue:
                self.waiting[chosen] = queue  # to the back of the line: round robin
        return granted
