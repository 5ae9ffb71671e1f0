"""common/authpenalty.py: the failure counts and delays, on a clock the test moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.authpenalty import Penalties, client_key
from common.userservice import failure_event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def table(clock: Clock, **kw) -> Penalties:
    args = {"delay": 2.0, "delay_max": 15.0, "forget": 3600.0, **kw}
    return Penalties(args["delay"], args["delay_max"], args["forget"], clock,
                     max_records=kw.get("max_records", 100_000))


def guess(n: int) -> bytes:
    return f"guess {n}".encode()


def test_delays_double_up_to_the_maximum(clock: Clock) -> None:
    p = table(clock)
    assert [p.delay_for(k) for k in range(6)] == [0, 2, 4, 8, 15, 15]
    assert p.delay_for(10_000) == 15  # no overflow for a long campaign


def test_an_address_failing_is_answered_later_and_held_before_its_next_check(
        clock: Clock) -> None:
    p = table(clock)
    assert p.hold("192.0.2.1") == 0
    answers, holds = [], []
    for n in range(5):
        holds.append(p.hold("192.0.2.1"))
        # Each guess at another account: only the address's count grows.
        answers.append(p.failed("192.0.2.1", f"user{n}@example.test", guess(n)))
    assert holds == [0, 2, 4, 8, 15]
    assert answers == [2, 4, 8, 15, 15]
    # Other addresses are not held.
    assert p.hold("192.0.2.2") == 0


def test_a_success_clears_the_address_but_not_the_account(clock: Clock) -> None:
    p = table(clock)
    for n in range(3):
        p.failed("192.0.2.1", "alice@example.test", guess(n))
    assert p.hold("192.0.2.1") == 8
    p.succeeded("192.0.2.1")
    assert p.hold("192.0.2.1") == 0
    # The account's three failures still delay a failure for it, from anywhere.
    assert p.failed("198.51.100.9", "alice@example.test", guess(9)) == 15


def test_an_account_under_attack_delays_failures_only(clock: Clock) -> None:
    """Guesses at alice from many addresses: a new address's failure for alice
    waits long, but a request of alice's own from a fresh address is not held."""
    p = table(clock)
    for n in range(4):
        p.failed(f"203.0.113.{n}", "alice@example.test", guess(n))
    assert p.hold("198.51.100.9") == 0  # alice, logging in from home
    assert p.failed("198.51.100.10", "alice@example.test", guess(99)) == 15
    assert p.failed("198.51.100.11", "bob@example.test", guess(99)) == 2


def test_the_same_wrong_password_again_counts_once(clock: Clock) -> None:
    p = table(clock)
    for _ in range(5):  # a phone retrying an old password
        p.failed("192.0.2.1", "alice@example.test", guess(1))
    assert p.hold("192.0.2.1") == 2
    assert p.failed("192.0.2.1", "alice@example.test", guess(2)) == 4
    assert p.hold("192.0.2.1") == 4


def test_records_are_forgotten_after_failure_forget(clock: Clock) -> None:
    p = table(clock, forget=3600.0)
    for n in range(4):
        p.failed("192.0.2.1", "alice@example.test", guess(n))
    clock.now += 3599
    assert p.hold("192.0.2.1") == 15
    p.failed("192.0.2.1", "alice@example.test", guess(5))  # a failure renews the record
    clock.now += 3599
    assert p.hold("192.0.2.1") == 15
    clock.now += 1
    assert p.hold("192.0.2.1") == 0
    assert p.failed("192.0.2.2", "alice@example.test", guess(6)) == 2
    assert not p.addresses.get("192.0.2.1")


def test_the_table_is_bounded(clock: Clock) -> None:
    p = table(clock, max_records=3)
    for n in range(10):
        clock.now += 1
        p.failed(f"192.0.2.{n}", f"u{n}@example.test", guess(n))
    assert list(p.addresses) == ["192.0.2.7", "192.0.2.8", "192.0.2.9"]
    assert len(p.accounts) == 3


def test_client_key() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    # One IPv6 host has a whole prefix of addresses: counted per /48 (as Dovecot).
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:ffff::9") == "2001:db8:1::/48"
    assert client_key("2001:db8:2::5") != client_key("2001:db8:1::5")
    assert client_key("unknown") == "unknown"


def test_failure_event_is_one_fixed_line() -> None:
    assert (failure_event("192.0.2.1", "alice@example.test", "imap")
            == "login failed: address=192.0.2.1 user=alice@example.test service=imap")
    assert failure_event("192.0.2.1", "", "pop3").endswith(" user=- service=pop3")


@given(st.text())
def test_nothing_in_a_user_name_can_fake_a_field_or_a_line(user: str) -> None:
    line = failure_event("192.0.2.1", user, "smtp")
    assert line.isprintable() and line.isascii()
    # Four spaces, all ours: the client's text can't add a field or another address=.
    assert line.count(" ") == 4  # "login failed:" has one of them
    assert line.startswith("login failed: address=192.0.2.1 user=")
    assert line.endswith(" service=smtp")
