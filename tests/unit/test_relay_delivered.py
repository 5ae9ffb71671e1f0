"""The relay's memory of recent deliveries (mta/relay/delivered.py)."""

from __future__ import annotations

import asyncio

from mta.relay.delivered import Delivered


def test_only_successes_are_remembered_by_queue_id_and_recipient():
    d = Delivered()
    d.remember("Q1", {"a@x.test": "250 2.0.0 ok", "b@x.test": "451 4.4.2 lost",
                      "c@x.test": "550 5.1.1 unknown"}, {"a@x.test": "mx.x.test"})
    assert d.known("Q1", ["a@x.test", "b@x.test", "c@x.test"]) == {
        "a@x.test": ("250 2.0.0 ok", "mx.x.test")}
    assert d.known("Q2", ["a@x.test"]) == {}


def test_bounded_in_number_and_age():
    d = Delivered(max_entries=2, max_age=3600)
    for i in range(3):
        d.remember(f"Q{i}", {"a@x.test": "250 ok"}, {})
    assert d.known("Q0", ["a@x.test"]) == {}  # the oldest went first
    assert d.known("Q2", ["a@x.test"]) != {}
    old = Delivered(max_age=0.0)
    old.remember("Q", {"a@x.test": "250 ok"}, {})
    assert old.known("Q", ["a@x.test"]) == {}


def test_a_second_hand_over_of_the_same_group_waits_for_the_first():
    order: list[str] = []

    async def go() -> None:
        d = Delivered()

        async def hand_over(name: str, hold: float) -> None:
            async with d.one_at_a_time("Q1/lmtp/"):
                order.append(f"{name} in")
                await asyncio.sleep(hold)
                order.append(f"{name} out")

        async def other() -> None:
            async with d.one_at_a_time("Q1/smtp/y.test"):  # another group: no wait
                order.append("other")

        await asyncio.gather(hand_over("first", 0.05), hand_over("second", 0), other())
        assert not d._busy  # nothing left behind

    asyncio.run(asyncio.wait_for(go(), 10))
    assert order == ["first in", "other", "first out", "second in", "second out"]
