"""Which hosts to try for a domain, in which order: pure functions, no DNS.

RFC 5321 5.1: MX hosts by preference, lowest first, in random order among
equal preferences (the sender's share of load balancing); no MX at all
means the domain itself is the host (implicit MX). RFC 7505: a single MX
of "." says the domain takes no mail. A host's IPv6 and IPv4 addresses are
tried in turn, so one broken family does not stop delivery.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import zip_longest


@dataclass(frozen=True)
class Target:
    """One address to connect to, and the host name it stands for."""

    host: str
    address: str


def normalize_host(name: str) -> str:
    return name.rstrip(".").lower()


def is_null_mx(records: Iterable[tuple[int, str]]) -> bool:
    """RFC 7505: the one MX record, with an exchange of "." (the root)."""
    items = list(records)
    return len(items) == 1 and normalize_host(items[0][1]) == ""


def order_hosts(records: Iterable[tuple[int, str]], rng: random.Random | None = None) -> list[str]:
    """Host names by preference, shuffled within each preference, without repeats."""
    rng = rng or random.Random()
    by_pref: dict[int, list[str]] = {}
    for pref, host in records:
        name = normalize_host(host)
        if name:  # a "." among real records is ignored (RFC 7505 3)
            by_pref.setdefault(pref, []).append(name)
    out: list[str] = []
    for pref in sorted(by_pref):
        group = by_pref[pref]
        rng.shuffle(group)
        out.extend(h for h in group if h not in out)
    return out


def before_self(hosts: list[str], ourselves: Iterable[str]) -> list[str] | None:
    """The hosts more preferred than us (RFC 5321 5.1); None when we come first.

    A backup MX must not hand mail to itself or to a host less preferred
    than itself: that is a loop.
    """
    names = {normalize_host(n) for n in ourselves}
    for i, h in enumerate(hosts):
        if h in names:
            return hosts[:i] or None
    return hosts


def interleave(v6: list[str], v4: list[str]) -> list[str]:
    """IPv6, IPv4, IPv6, IPv4...: one family failing costs one attempt, not all."""
    return [a for pair in zip_longest(v6, v4) for a in pair if a is not None]


def targets(hosts: list[str], addresses: dict[str, tuple[list[str], list[str]]]) -> list[Target]:
    """Every address of every host, in the order to try them."""
    out = []
    seen = set()
    for h in hosts:
        v6, v4 = addresses.get(h, ([], []))
        for a in interleave(v6, v4):
            if a not in seen:
                seen.add(a)
                out.append(Target(h, a))
    return out
