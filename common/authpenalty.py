"""Failed logins remembered per client address and per account, without I/O.

The auth service asks this table how long to hold a request and when to
answer a failure; it sleeps, this module only counts (the clock is passed
in, so the rules are tested without waiting).

The rules, after Dovecot's auth_penalty:
- T(k) = failure_delay * 2**(k-1), at most failure_delay_max: 2 s, 4 s,
  8 s, 15 s with the defaults.
- A request from an address with n failures on record is held T(n) before
  its password is checked. That is what slows a guesser who sends many
  guesses at once: each one waits before it costs a hash. It holds a right
  password from that address too (as in Dovecot), and a success clears the
  address's record.
- A failure is answered T(k) after its request came, k = 1 + the larger of
  the address's and the account's failures on record. The account's count
  only ever delays *failure* answers: a guesser elsewhere slows guessing at
  that account without keeping its owner from logging in.
- The same user and password failing again from the same address (a phone
  retrying an old password) counts once: it teaches a guesser nothing.
- A record without a failure for failure_forget is forgotten; the table
  holds at most max_records of each kind, dropping the stalest first.
- IPv6 addresses count per /48, as Dovecot does, so one host cannot start
  afresh from each of its many addresses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from common import clientaddr

IPV6_PREFIX = 48
# Distinct wrong (user, password) digests remembered per record.
REMEMBERED_ATTEMPTS = 4


def client_key(address: str) -> str:
    """What failures from `address` are counted under: itself, or its IPv6 /48."""
    return clientaddr.client_key(address, IPV6_PREFIX)


@dataclass
class _Record:
    count: int
    last: float
    attempts: list[bytes] = field(default_factory=list)


class Penalties:
    def __init__(self, delay: float, delay_max: float, forget: float,
                 clock: Callable[[], float], max_records: int = 100_000) -> None:
        self.delay = delay
        self.delay_max = delay_max
        self.forget = forget
        self.clock = clock
        self.max_records = max_records
        self.addresses: OrderedDict[str, _Record] = OrderedDict()
        self.accounts: OrderedDict[str, _Record] = OrderedDict()

    def delay_for(self, k: int) -> float:
        """T(k): the answer time of the k-th failure; 0 for k = 0."""
        if k <= 0:
            return 0.0
        return min(self.delay * 2 ** min(k - 1, 32), self.delay_max)

    def _count(self, table: OrderedDict[str, _Record], key: str) -> int:
        rec = table.get(key)
        if rec is None:
            return 0
        if self.clock() - rec.last >= self.forget:
            del table[key]
            return 0
        return rec.count

    def hold(self, address: str) -> float:
        """Seconds to wait before checking a request from this address."""
        return self.delay_for(self._count(self.addresses, address))

    def failed(self, address: str, account: str, attempt: bytes) -> float:
        """Record a failure; the seconds after its request to answer it.

        attempt: a digest of the user and password tried, so that a repeat
        can be told from a new guess (never the password itself).
        """
        k = 1 + max(self._count(self.addresses, address), self._count(self.accounts, account))
        for table, key in ((self.addresses, address), (self.accounts, account)):
            self._bump(table, key, attempt)
        return self.delay_for(k)

    def succeeded(self, address: str) -> None:
        self.addresses.pop(address, None)

    def _bump(self, table: OrderedDict[str, _Record], key: str, attempt: bytes) -> None:
        now = self.clock()
        if self._count(table, key) == 0:
            table.pop(key, None)
            table[key] = _Record(1, now, [attempt])
        else:
            rec = table[key]
            table.move_to_end(key)
            rec.last = now
            if attempt not in rec.attempts:
                rec.count += 1
                rec.attempts = [*rec.attempts, attempt][-REMEMBERED_ATTEMPTS:]
        while len(table) > self.max_records:
            table.popitem(last=False)
