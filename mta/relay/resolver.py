"""DNS for outbound mail: a domain's MX hosts and their addresses (dnspython, asyncio).

What goes wrong becomes an SMTP-style reply for the recipients, as RFC 3463
codes them: a name that does not exist is permanent (5.1.2), a null MX is
permanent (RFC 7505: 556 5.1.10); a timeout or SERVFAIL is temporary
(4.4.3), tried again later.
"""

from __future__ import annotations

import asyncio
import ipaddress

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from common.config import parse_nameserver
from mta.relay import mx
from mta.relay.mx import Target


class Undeliverable(Exception):
    """No host to try: the reply says why, and whether it is for good (5xx)."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class _TempFailure(Exception):
    pass


def make_resolver(nameservers: list[str], timeout: float) -> dns.asyncresolver.Resolver:
    if nameservers:
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(n))
                         for n in nameservers]
    else:
        r = dns.asyncresolver.Resolver()  # /etc/resolv.conf
    r.lifetime = timeout
    r.timeout = timeout
    return r


def _literal(domain: str) -> str | None:
    """user@[192.0.2.1] or user@[IPv6:2001:db8::1]: an address, no DNS (RFC 5321 4.1.3)."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


async def records(res: dns.asyncresolver.Resolver, name: str | dns.name.Name, rdtype: str,
                  temporary: type[Exception]) -> list | None:
    """The records, [] when the name exists without them, None when it does not;
    `temporary` raised for a timeout, SERVFAIL or any other DNS failure (the
    relay and the inbound checks share this reading of an answer)."""
    try:
        answer = await res.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    except dns.resolver.LifetimeTimeout:
        raise temporary(f"{rdtype} lookup of {name} timed out") from None
    except dns.resolver.NoNameservers:
        raise temporary(f"{rdtype} lookup of {name} failed (SERVFAIL)") from None
    except dns.exception.DNSException as e:
        raise temporary(f"{rdtype} lookup of {name} failed: {e}") from None
    return list(answer)


class Resolver:
    def __init__(self, nameservers: list[str], timeout: float) -> None:
        self.dns = make_resolver(nameservers, timeout)

    async def _query(self, name: str, rdtype: str) -> list | None:
        return await records(self.dns, name, rdtype, _TempFailure)

    async def addresses(self, host: str) -> tuple[list[str], list[str]] | None:
        """IPv6 and IPv4 addresses of a host; None when the name does not exist."""
        v6, v4 = await asyncio.gather(self._query(host, "AAAA"), self._query(host, "A"))
        if v6 is None and v4 is None:
            return None
        return [r.address for r in v6 or []], [r.address for r in v4 or []]

    async def mail_hosts(self, domain: str, ourselves: list[str]) -> list[Target]:
        """Where to deliver mail for domain, in order; Undeliverable if nowhere."""
        literal = _literal(domain)
        if literal:
            return [Target(domain, literal)]
        try:
            records = await self._query(domain, "MX")
            if records is None:
                raise Undeliverable(f"550 5.1.2 domain {domain} does not exist")
            pairs = [(r.preference, r.exchange.to_text()) for r in records]
            if mx.is_null_mx(pairs):
                raise Undeliverable(f"556 5.1.10 domain {domain} accepts no mail (null MX)")
            implicit = not pairs
            hosts = [mx.normalize_host(domain)] if implicit else mx.order_hosts(pairs)
            usable = mx.before_self(hosts, ourselves)
            if usable is None:
                raise Undeliverable(
                    f"554 5.4.6 mail for {domain} loops back to myself (MX {hosts[0]})")
            found = await self._gather(usable)
        except _TempFailure as e:
            raise Undeliverable(f"451 4.4.3 {e}") from None
        targets = mx.targets(usable, found)
        if not targets:
            if implicit:
                raise Undeliverable(f"550 5.1.2 domain {domain} has no MX and no address")
            raise Undeliverable(f"451 4.4.3 no address for the MX hosts of {domain}: "
                                f"{', '.join(usable)}")
        return targets

    async def _gather(self, hosts: list[str]) -> dict[str, tuple[list[str], list[str]]]:
        """Addresses of each host; a temporary failure counts only if no host resolves."""
        results = await asyncio.gather(*(self.addresses(h) for h in hosts),
                                       return_exceptions=True)
        found: dict[str, tuple[list[str], list[str]]] = {}
        temp: list[BaseException] = []
        for h, res in zip(hosts, results, strict=True):
            if isinstance(res, _TempFailure):
                temp.append(res)
            elif isinstance(res, BaseException):
                raise res
            elif res is not None:
                found[h] = res
        if temp and not any(v6 or v4 for v6, v4 in found.values()):
            raise _TempFailure(str(temp[0]))
        return found

    async def host(self, name: str) -> list[Target]:
        """The addresses of one named host (a smarthost): no MX lookup."""
        try:
            ipaddress.ip_address(name)
            return [Target(name, name)]
        except ValueError:
            pass
        try:
            found = await self.addresses(name)
        except _TempFailure as e:
            raise Undeliverable(f"451 4.4.3 {e}") from None
        if not found or not (found[0] or found[1]):
            raise Undeliverable(f"451 4.4.3 smarthost {name} has no address")
        return [Target(name, a) for a in mx.interleave(*found)]
