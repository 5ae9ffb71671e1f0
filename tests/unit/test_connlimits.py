"""The counting rule of connection caps, the SMTP junk/error counts and the log throttle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.clientaddr import is_loopback
from common.connlimits import PER_CLIENT, TOTAL, Counter, Refused, client_key
from common.logthrottle import Throttle
from common.smtpguard import CommandCounter


def test_per_client_then_released() -> None:
    c = Counter(per_client=2, total=10)
    a, b = c.admit("192.0.2.1"), c.admit("192.0.2.1")
    with pytest.raises(Refused) as e:
        c.admit("192.0.2.1")
    assert e.value.reason == PER_CLIENT
    c.admit("192.0.2.2")  # another client is not affected
    a.release()
    a.release()  # twice is once
    c.admit("192.0.2.1")
    b.release()
    assert c.counts == {("192.0.2.1",): 1, ("192.0.2.2",): 1} and c.open == 2


def test_total() -> None:
    c = Counter(per_client=5, total=2)
    c.admit("192.0.2.1")
    slot = c.admit("192.0.2.2")
    with pytest.raises(Refused) as e:
        c.admit("192.0.2.3")
    assert e.value.reason == TOTAL
    slot.release()
    c.admit("192.0.2.3")


def test_extra_key_counts_pairs() -> None:
    c = Counter(per_client=1)
    c.admit("192.0.2.1", "alice")
    c.admit("192.0.2.1", "bob")
    c.admit("192.0.2.2", "alice")
    with pytest.raises(Refused):
        c.admit("192.0.2.1", "alice")


def test_loopback_exempt_is_not_counted() -> None:
    c = Counter(per_client=1, total=1, exempt_loopback=True)
    for address in ("127.0.0.1", "127.0.0.1", "::1", "::ffff:127.0.0.1"):
        c.admit(address).release()
        c.admit(address)
    assert c.open == 0
    c.admit("192.0.2.1")
    with pytest.raises(Refused):
        c.admit("192.0.2.2")


def test_ipv6_counted_by_prefix() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/84"
    assert client_key("2001:db8:0:0:1000::1") != client_key("2001:db8::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("local") == "local"
    assert is_loopback("::1") and is_loopback("127.0.0.2") and not is_loopback("local")


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5))))
def test_counts_stay_true(ops: list[tuple[bool, int]]) -> None:
    """Any order of connects and disconnects: the counts are those of the open slots."""
    c = Counter(per_client=3, total=7)
    held: list[tuple[int, object]] = []
    for connect, n in ops:
        if connect:
            try:
                held.append((n, c.admit(f"192.0.2.{n}")))
            except Refused:
                assert (sum(1 for m, _ in held if m == n) >= 3) or len(held) >= 7
        elif held:
            held.pop(n % len(held))[1].release()  # type: ignore[attr-defined]
        assert c.open == len(held)
        assert all(v <= 3 for v in c.counts.values())


def test_junk_commands() -> None:
    c = CommandCounter(junk_limit=3)
    assert [c.command(v) for v in ("noop", "MAIL", "RSET", "VRFY", "EHLO")] == [False] * 5
    assert c.command("HELP")
    c.accepted()
    assert not c.command("NOOP")


def test_errors() -> None:
    c = CommandCounter(junk_limit=100, error_limit=3)
    assert not c.reply("503") and not c.reply("250") and not c.reply("550")
    assert not c.reply("500")
    assert c.reply("501")


def test_throttle() -> None:
    now = [0.0]
    t = Throttle(60, clock=lambda: now[0])
    assert t.ready() == 0
    assert t.ready() is None and t.ready() is None
    now[0] = 61
    assert t.ready() == 2
    assert t.ready() is None
