"""common/passwords.py: argon2id hashes and the Verifier's short-lived cache."""

from __future__ import annotations

import asyncio
import threading
import time
import types

import pytest

from common import passwords
from common.passwords import Verifier, check_password, hash_password


class Clock:
    """Stands in for the time module inside common.passwords only."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(passwords, "time", types.SimpleNamespace(monotonic=c.monotonic))
    return c


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every call of the real argon2 check, in order."""
    calls: list[tuple[str, str]] = []
    real = passwords.check_password

    def counting(stored_hash: str, password: str) -> bool:
        calls.append((stored_hash, password))
        return real(stored_hash, password)

    monkeypatch.setattr(passwords, "check_password", counting)
    return calls


def test_hash_and_check() -> None:
    h = hash_password("secret", cheap=True)
    assert h.startswith("$argon2id$")
    assert check_password(h, "secret")
    assert not check_password(h, "Secret")
    assert not check_password("not a hash", "secret")
    assert hash_password("secret", cheap=True) != h  # salted


def test_a_success_is_remembered_for_ttl(clock: Clock, checks: list) -> None:
    h = hash_password("pw", cheap=True)
    v = Verifier(ttl=60)
    assert asyncio.run(v.verify("a@example.test", h, "pw"))
    assert len(checks) == 1
    clock.now += 59.9
    assert asyncio.run(v.verify("a@example.test", h, "pw"))
    assert len(checks) == 1  # from the cache
    clock.now += 0.2  # 60.1 s after the check: expired
    assert asyncio.run(v.verify("a@example.test", h, "pw"))
    assert len(checks) == 2


def test_a_failure_is_not_remembered(clock: Clock, checks: list) -> None:
    h = hash_password("pw", cheap=True)
    v = Verifier(ttl=60)
    for _ in range(3):
        assert not asyncio.run(v.verify("a@example.test", h, "wrong"))
    assert len(checks) == 3
    # A success after failures is checked for real, and only then remembered.
    assert asyncio.run(v.verify("a@example.test", h, "pw"))
    assert asyncio.run(v.verify("a@example.test", h, "pw"))
    assert len(checks) == 4


def test_the_cache_holds_only_what_was_checked(clock: Clock, checks: list) -> None:
    h = hash_password("pw", cheap=True)
    v = Verifier(ttl=60)
    assert asyncio.run(v.verify("a@example.test", h, "pw"))
    # Another user with the same hash and password, or a wrong password: not cached.
    assert asyncio.run(v.verify("b@example.test", h, "pw"))
    assert not asyncio.run(v.verify("a@example.test", h, "pw "))
    assert len(checks) == 3


def test_ttl_zero_switches_the_cache_off(clock: Clock, checks: list) -> None:
    h = hash_password("pw", cheap=True)
    v = Verifier(ttl=0)
    for _ in range(3):
        assert asyncio.run(v.verify("a@example.test", h, "pw"))
    assert len(checks) == 3


def test_a_changed_hash_misses_the_cache(clock: Clock, checks: list) -> None:
    old = hash_password("pw", cheap=True)
    v = Verifier(ttl=60)
    assert asyncio.run(v.verify("a@example.test", old, "pw"))
    # mda-ctl user passwd, even to the same password, writes a new salted hash.
    new = hash_password("pw", cheap=True)
    assert asyncio.run(v.verify("a@example.test", new, "pw"))
    assert len(checks) == 2
    assert checks[1][0] == new
    # The password changed away from "pw": the old success must not count.
    other = hash_password("new pw", cheap=True)
    assert not asyncio.run(v.verify("a@example.test", other, "pw"))
    assert len(checks) == 3


def test_verification_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    h = hash_password("pw")  # argon2-cffi's default cost, as in production
    v = Verifier(ttl=0)
    loop_thread = threading.get_ident()
    ran_in: list[int] = []

    def where(stored_hash: str, password: str) -> bool:
        ran_in.append(threading.get_ident())
        return check_password(stored_hash, password)  # the real one

    monkeypatch.setattr(passwords, "check_password", where)

    async def main() -> tuple[int, bool]:
        ticks: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0)  # a yield, not a wait

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        start = time.monotonic()
        ok = await v.verify("a@example.test", h, "pw")
        end = time.monotonic()
        done.set()
        await task
        return sum(1 for t in ticks if start < t < end), ok

    during, ok = asyncio.run(main())
    assert ok
    assert ran_in and ran_in[0] != loop_thread
    # Dozens of milliseconds of argon2: a blocked loop would tick 0 times in them.
    assert during >= 10, f"the loop ticked {during} times during the verify"


def test_any_password_bytes_simply_fail() -> None:
    h = hash_password("pw", cheap=True)
    # 0xFF is no UTF-8: as bytes it is a wrong password, not an error.
    assert not check_password(h, b"\xff")
    assert not check_password(h, b"pw\xff")
    v = Verifier(ttl=60)
    # The protocols carry client bytes as text with surrogateescape.
    assert not asyncio.run(v.verify("a@example.test", h, "\udcff"))
    assert not asyncio.run(v.verify("a@example.test", h, b"\xff\x00"))
    u = hash_password("pässword", cheap=True)
    assert asyncio.run(v.verify("a@example.test", u, "pässword".encode()))
    assert asyncio.run(v.verify("b@example.test", u, "pässword"))


def test_the_dummy_hash_has_the_production_cost() -> None:
    d = passwords.dummy_hash()
    assert d.startswith("$argon2id$") and "m=65536,t=3,p=4" in d
    assert not check_password(d, "")
    assert passwords.dummy_hash() != d


def test_one_key_gets_at_most_half_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    lock = threading.Lock()
    running = {"guesser": 0, "most": 0}

    def slow_for_the_guesser(stored_hash: str, password: bytes) -> bool:
        if password != b"guess":
            return True
        with lock:
            running["guesser"] += 1
            running["most"] = max(running["most"], running["guesser"])
        release.wait(10)
        with lock:
            running["guesser"] -= 1
        return False

    monkeypatch.setattr(passwords, "check_password", slow_for_the_guesser)
    v = Verifier(ttl=0, threads=4)

    async def main() -> tuple[bool, int]:
        guesses = [asyncio.ensure_future(v.verify("a@example.test", "h", b"guess", key="g"))
                   for _ in range(50)]
        await asyncio.sleep(0.1)
        # Every guess is queued or hashing; another key's check still runs at once.
        ok = await asyncio.wait_for(v.verify("a@example.test", "h", b"right", key="a"), 5)
        release.set()
        results = await asyncio.gather(*guesses)
        return ok, sum(results)

    ok, wrong_ok = asyncio.run(main())
    assert ok and wrong_ok == 0
    assert running["most"] == 2
