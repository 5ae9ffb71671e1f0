"""common/fairshare.py: no key takes more than its share; waiting keys take turns."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.fairshare import FairShare


def test_one_key_gets_at_most_its_share_and_queues_behind_itself() -> None:
    s = FairShare(slots=4, per_key=2)
    assert [s.ask("guesser", n) for n in range(300)] == [True, True] + [False] * 298
    # Another address still finds a slot at once, and a third one too.
    assert s.ask("alice", "a1")
    assert s.ask("bob", "b1")
    assert not s.ask("carol", "c1")  # all four busy
    # A slot coming free goes to carol, whose turn it is, not to the guesser's queue.
    assert s.done("alice") == [("carol", "c1")]
    # The guesser's own slot coming free goes to its next guess.
    assert s.done("guesser") == [("guesser", 2)]


def test_waiting_keys_take_turns() -> None:
    s = FairShare(slots=2, per_key=1)
    assert s.ask("a", "a0") and s.ask("b", "b0")
    for key in "abc":
        for n in range(1, 4):
            assert not s.ask(key, f"{key}{n}")
    order = []
    running = ["a", "b"]
    while running:
        key = running.pop(0)
        for k, ticket in s.done(key):
            order.append(ticket)
            running.append(k)
    # Round robin: every three grants serve each key once, in its own order.
    assert len(order) == 9
    for i in range(0, 9, 3):
        assert sorted(t[0] for t in order[i:i + 3]) == ["a", "b", "c"]
    assert [t for t in order if t[0] == "c"] == ["c1", "c2", "c3"]
    assert s.busy == 0 and not s.waiting and not s.running


def test_a_withdrawn_ticket_is_never_granted() -> None:
    s = FairShare(slots=1, per_key=1)
    assert s.ask("a", 1)
    assert not s.ask("b", 2)
    s.withdraw("b", 2)
    assert s.done("a") == []
    assert s.busy == 0


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), max_size=200),
       st.integers(1, 6), st.integers(1, 6))
def test_limits_hold_for_any_sequence(ops, slots, per_key) -> None:
    s = FairShare(slots, per_key)
    running: list[int] = []
    n = 0
    for ask, key in ops:
        if ask or not running:
            n += 1
            if s.ask(key, n):
                running.append(key)
        else:
            done = running.pop(0)
            running.extend(k for k, _ in s.done(done))
        assert s.busy == len(running) <= s.slots
        for k in set(running):
            assert running.count(k) <= s.per_key
        # Nothing waits while it could run.
        assert all(not s._may_run(k) for k in s.waiting)
