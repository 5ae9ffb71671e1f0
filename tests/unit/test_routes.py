"""The LMTP route's state: down on a 4.4.1, probes with backoff, backlog in arrival order."""

from __future__ import annotations

import asyncio

import structlog

from mta.queue.envelope import LMTP, Envelope, Recipient
from mta.queue.routes import LmtpRoute, is_route_failure

REFUSED = "451 4.4.1 LMTP to /run/lmtp.sock: cannot connect: [Errno 111] Connection refused"
LOST = "451 4.4.2 LMTP to /run/lmtp.sock: connection lost"


def env(qid: str, created: float) -> Envelope:
    return Envelope(id=qid, sender="s@x.test", created=created,
                    recipients=[Recipient("a@x.test", "a@x.test", LMTP)])


def test_only_no_answer_is_a_route_failure():
    assert is_route_failure(REFUSED)
    assert not is_route_failure(LOST)
    assert not is_route_failure("452 4.3.1 <a@x.test> insufficient system storage")
    assert not is_route_failure("250 2.0.0 <a@x.test> delivered")
    assert not is_route_failure("550 5.4.1 nope")


def test_down_probes_with_backoff_then_releases_in_order_of_arrival():
    answers = ["refused", "refused", "refused", None]
    released: list[list[str]] = []
    waits: list[float] = []

    async def go() -> LmtpRoute:
        loop = asyncio.get_running_loop()
        last = [loop.time()]

        async def probe():
            waits.append(loop.time() - last[0])
            last[0] = loop.time()
            return answers.pop(0)

        route = LmtpRoute(probe, lambda b: released.append([e.id for e in b]),
                          lambda e: False, structlog.get_logger(), first=0.02, most=0.05)
        route.saw({"a@x.test": "250 2.0.0 ok"})
        assert not route.down
        route.saw({"a@x.test": REFUSED})
        assert route.down
        route.saw({"a@x.test": REFUSED})  # already down: one probe loop only
        # Parked out of order; created decides, then the queue id.
        for e in (env("C", 3.0), env("A", 1.0), env("B2", 2.0), env("B1", 2.0)):
            route.park(e)
        route.park(env("A", 1.0))  # parked twice is kept once
        while route.down:
            await asyncio.sleep(0.01)
        await route.close()
        return route

    route = asyncio.run(asyncio.wait_for(go(), 10))
    assert released == [["A", "B1", "B2", "C"]]
    assert route.probes == 4 and not route.parked
    # 0.02, then doubled up to the most: 0.04, 0.05, 0.05 (timers are late, never early).
    assert all(w >= x - 0.005 for w, x in zip(waits, (0.02, 0.04, 0.05, 0.05), strict=True))


def test_an_overdue_message_is_handed_back_while_the_route_is_down():
    released: list[list[str]] = []

    async def go() -> LmtpRoute:
        async def probe():
            return "refused"

        route = LmtpRoute(probe, lambda b: released.append([e.id for e in b]),
                          lambda e: e.created < 2.0, structlog.get_logger(),
                          first=0.01, most=0.01)
        route.saw({"a@x.test": REFUSED})
        for e in (env("OLD", 1.0), env("NEW", 5.0)):
            route.park(e)
        while not released:
            await asyncio.sleep(0.01)
        await route.close()
        return route

    route = asyncio.run(asyncio.wait_for(go(), 10))
    assert released[0] == ["OLD"]  # to expire (or be warned about) as any late message
    assert route.down and list(route.parked) == ["NEW"]
