"""How many deliveries may run at once: to each destination domain, and in all.

The queue takes a domain's slot before the overall one, so messages
waiting for a slow or dead domain hold nothing that other domains need.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class DomainSlots:
    """A semaphore per domain, made when first needed and dropped when unused."""

    def __init__(self, per_domain: int) -> None:
        self.per_domain = per_domain
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, domain: str) -> AsyncIterator[None]:
        sem, users = self._slots.setdefault(domain, (asyncio.Semaphore(self.per_domain), [0]))
        users[0] += 1
        try:
            async with sem:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._slots[domain]

    def busy(self, domain: str) -> int:
        """Deliveries to domain running or waiting (for status and tests)."""
        entry = self._slots.get(domain)
        return entry[1][0] if entry else 0
