"""Who may hold how many connections to one server process: the counting rule.

No I/O: a server asks `admit` when a client connects (or logs in) and
releases the slot it got when the connection ends. The smtp, imap and pop3
processes each keep their own counts, so the limits are per process.

- A client address holds at most `per_client` connections, and all clients
  together at most `total` (Postfix smtpd_client_connection_count_limit and
  a process-wide cap like Dovecot's process_limit).
- IPv6 clients are counted by their /84 prefix, as Postfix 3.8 counts them
  (smtpd_client_ipv6_prefix_length): one host is handed a whole /64 and
  would otherwise have 2**64 addresses to spread over.
- After login, IMAP and POP3 count (user, address) pairs against
  `user_connections_per_client` (Dovecot mail_max_userip_connections);
  that counter has no total.
- With exempt_loopback, loopback clients are admitted and not counted
  (development and benchmarks open many connections from 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from common import clientaddr, log
from common.clientaddr import is_loopback
from common.config import LimitsConfig
from common.logthrottle import Throttle

PER_CLIENT, TOTAL = "per-client", "total"
IPV6_PREFIX = 84


class Refused(Exception):
    """Over a cap; `reason` is PER_CLIENT or TOTAL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def client_key(address: str) -> str:
    """What one client is counted by: its IPv4 address or its IPv6 /84."""
    return clientaddr.client_key(address, IPV6_PREFIX)


@dataclass
class Slot:
    """One admitted connection; release() once it ends (a second call does nothing)."""

    _counter: Counter | None
    _key: Hashable

    def release(self) -> None:
        counter, self._counter = self._counter, None
        if counter is not None:
            counter._release(self._key)


class Counter:
    def __init__(self, per_client: int, total: int | None = None,
                 exempt_loopback: bool = False) -> None:
        self.per_client = per_client
        self.total = total
        self.exempt_loopback = exempt_loopback
        self.counts: dict[Hashable, int] = {}
        self.open = 0

    def admit(self, address: str, *extra: Hashable) -> Slot:
        """A slot for a client at `address` (with `extra`, e.g. a user name, in
        its key), or Refused. An exempt client gets a slot that counts nothing."""
        if self.exempt_loopback and is_loopback(address):
            return Slot(None, None)
        key = (client_key(address), *extra)
        if self.counts.get(key, 0) >= self.per_client:
            raise Refused(PER_CLIENT)
        if self.total is not None and self.open >= self.total:
            raise Refused(TOTAL)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.open += 1
        return Slot(self, key)

    def _release(self, key: Hashable) -> None:
        left = self.counts[key] - 1
        if left:
            self.counts[key] = left
        else:
            del self.counts[key]
        self.open -= 1


class Gate:
    """A counter and the log line of its refusals: one a minute at most, so a
    flood of connections does not become a flood of log lines."""

    def __init__(self, counter: Counter, event: str, interval: float = 60.0) -> None:
        self.counter = counter
        self.event = event
        self.throttle = Throttle(interval)

    def admit(self, address: str, *extra: Hashable, **fields: object) -> Slot:
        try:
            return self.counter.admit(address, *extra)
        except Refused as e:
            left_out = self.throttle.ready()
            if left_out is not None:
                limit = self.counter.total if e.reason == TOTAL else self.counter.per_client
                log.get().warning(self.event, reason=e.reason, limit=limit, client=address,
                                  left_out=left_out, **fields)
            raise


def connections(limits: LimitsConfig) -> Gate:
    """The per-process gate of connections, by client address."""
    return Gate(Counter(limits.connections_per_client, limits.connections,
                        limits.exempt_loopback), "connection refused")


def user_connections(limits: LimitsConfig) -> Gate:
    """The per-process gate of logged-in sessions, by (address, user)."""
    return Gate(Counter(limits.user_connections_per_client, None, limits.exempt_loopback),
                "login refused: too many connections")
