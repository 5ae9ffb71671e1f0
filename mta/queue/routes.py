"""Whether the LMTP route to the MDA is up, and the mail waiting while it is down.

When the MDA does not answer (an LMTP hand-over replied 4.4.1: connection
refused, no socket, no greeting), retrying every message on its own
schedule would hammer a dead socket and, once the MDA is back, deliver the
backlog in whatever order the retry timers happened to fall. Instead the
route is marked down: the queue stops handing local recipients over and
parks each message that has nothing else to do; one probe (the relay's
`probe` request: connect, greeting, LHLO, QUIT) is sent at a time, with
backoff; when a probe finds the MDA answering, the parked messages are
released in order of arrival (envelope `created`, then queue id).

Arrival order holds strictly only with mta.delivery_concurrency = 1: with
more hand-overs at once the backlog starts in order but later messages may
overtake earlier ones on another connection.

A 4.4.2 (the connection was lost during a transaction) does not mark the
route down by itself: one connection may break while the MDA is fine; if
the MDA is really gone, the next try is refused and that does it.

A parked message still expires: after each failed probe, the queue is
given back those whose lifetime ran out or whose sender is owed a delay
warning (`overdue`), and does with them what it does with any late message.

Nothing here is written to disk: a restarted queue starts with the route
up, and the first refusal marks it down again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from mta.queue.envelope import Envelope
from mta.relay.lmtp import NO_ANSWER

# Pause before the first probe, doubled after each failed one up to the most:
# a probe costs a connection and an LHLO, and the backlog waits at most that long.
PROBE_FIRST = 0.5
PROBE_MAX = 30.0

Probe = Callable[[], Awaitable[str | None]]  # None: up; otherwise what went wrong


def is_route_failure(reply: str) -> bool:
    """An LMTP reply the relay made because the MDA did not answer at all."""
    return reply[:1] == "4" and reply[4:].startswith(NO_ANSWER + " ")


def arrival(env: Envelope) -> tuple[float, str]:
    return env.created, env.id


class LmtpRoute:
    def __init__(self, probe: Probe, release: Callable[[list[Envelope]], None],
                 overdue: Callable[[Envelope], bool], logger,
                 first: float = PROBE_FIRST, most: float = PROBE_MAX) -> None:
        self._probe = probe
        self._release = release
        self._overdue = overdue
        self.log = logger
        self.first, self.most = first, most
        self.down_since: float | None = None
        self.parked: dict[str, Envelope] = {}
        self.probes = 0  # made during the current outage (status, tests)
        self._task: asyncio.Task | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def saw(self, replies: dict[str, str]) -> None:
        """Look at one LMTP hand-over's replies: any 4.4.1 marks the route down."""
        failure = next((r for r in replies.values() if is_route_failure(r)), None)
        if failure is None or self.down:
            return
        self.down_since = time.time()
        self.probes = 0
        self.log.warning("lmtp route down", reply=failure, probe_in_s=self.first)
        self._task = asyncio.create_task(self._probe_until_up())

    def park(self, env: Envelope) -> None:
        """Keep a message whose only pending recipients are local until the route is up."""
        if env.id not in self.parked:
            self.parked[env.id] = env
            self.log.info("waiting for the mda", queue_id=env.id, waiting=len(self.parked))

    async def _probe_until_up(self) -> None:
        wait = self.first
        while True:
            await asyncio.sleep(wait)
            self.probes += 1
            try:
                problem = await self._probe()
            except Exception as e:  # the relay process itself is away: still down
                problem = f"probe failed: {e}"
            if problem is None:
                break
            wait = min(wait * 2, self.most)
            self.log.info("lmtp route still down", probes=self.probes, error=problem,
                          probe_in_s=wait)
            late = sorted((e for e in self.parked.values() if self._overdue(e)), key=arrival)
            for env in late:
                del self.parked[env.id]
            if late:
                self._release(late)
        backlog = sorted(self.parked.values(), key=arrival)
        self.parked.clear()
        down_for = time.time() - (self.down_since or time.time())
        self.down_since = None
        self.log.info("lmtp route up", down_s=round(down_for, 1), probes=self.probes,
                      backlog=len(backlog))
        self._release(backlog)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
