"""MX ordering (RFC 5321 5.1, RFC 7505): preference first, chance among equals."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mta.relay.mx import Target, before_self, interleave, is_null_mx, order_hosts, targets

names = st.from_regex(r"[a-z]{1,8}\.test", fullmatch=True)
records = st.lists(st.tuples(st.integers(0, 65535), names), min_size=1, max_size=12,
                   unique_by=lambda r: r[1])


@given(records, st.integers())
def test_hosts_come_by_preference_and_none_is_lost(recs, seed):
    ordered = order_hosts(recs, random.Random(seed))
    pref = {h: p for p, h in recs}
    assert sorted(ordered) == sorted(h for _, h in recs)
    assert [pref[h] for h in ordered] == sorted(pref[h] for h in ordered)


@given(st.integers(2, 5), st.integers())
def test_equal_preferences_are_shuffled(n, seed):
    recs = [(10, f"mx{i}.test") for i in range(n)] + [(5, "first.test"), (20, "last.test")]
    seen = set()
    rng = random.Random(seed)
    for _ in range(200):
        ordered = order_hosts(recs, rng)
        assert ordered[0] == "first.test" and ordered[-1] == "last.test"
        seen.add(tuple(ordered[1:-1]))
    assert len(seen) > 1  # 200 draws of at least 2 hosts: one order every time is a bug


@settings(max_examples=50)
@given(records)
def test_names_are_normalized_and_repeats_dropped(recs):
    doubled = recs + [(p + 1, h.upper() + ".") for p, h in recs]
    assert sorted(order_hosts(doubled)) == sorted({h for _, h in recs})


def test_null_mx():
    assert is_null_mx([(0, ".")])
    assert not is_null_mx([(0, "."), (10, "mx.test.")])  # a "." among others is ignored
    assert order_hosts([(0, "."), (10, "mx.test.")]) == ["mx.test"]
    assert not is_null_mx([(10, "mx.test.")])


def test_backup_mx_keeps_only_better_hosts():
    assert before_self(["a.test", "me.test", "b.test"], ["ME.test."]) == ["a.test"]
    assert before_self(["me.test", "a.test"], ["me.test"]) is None
    assert before_self(["a.test", "b.test"], ["me.test"]) == ["a.test", "b.test"]


@given(st.lists(st.text(min_size=1), max_size=5), st.lists(st.text(min_size=1), max_size=5))
def test_address_families_alternate(v6, v4):
    mixed = interleave(v6, v4)
    assert sorted(mixed) == sorted(v6 + v4)
    n = min(len(v6), len(v4))
    assert mixed[: 2 * n : 2] == v6[:n] and mixed[1 : 2 * n : 2] == v4[:n]


def test_targets_follow_hosts_and_skip_repeated_addresses():
    found = {"a.test": (["::1"], ["127.0.0.2", "127.0.0.3"]), "b.test": ([], ["127.0.0.2"])}
    assert targets(["a.test", "b.test", "c.test"], found) == [
        Target("a.test", "::1"), Target("a.test", "127.0.0.2"), Target("a.test", "127.0.0.3")]
