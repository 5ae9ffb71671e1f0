"""SPF's check_host() (RFC 7208 sections 4 and 5) over `dnslookup`.

Results: none, neutral, pass, fail, softfail, temperror, permerror. A DNS
timeout or SERVFAIL anywhere is temperror (RFC 7208 2.6.6); never a refusal.

Limits (RFC 7208 4.6.4), for the whole evaluation including includes and
redirects: at most 10 terms that query DNS (include, a, mx, ptr, exists,
redirect), at most 10 MX hosts per mx and 2 void lookups (a question answered
NXDOMAIN or with no records); past any of them, permerror. A ptr looks at 10
names at most, and its DNS failures are no match (RFC 7208 5.5). ptr and %{p}
are evaluated although RFC 7208 asks publishers not to use them.

The explanation (exp=) is parsed but not fetched: it only matters to a server
that refuses, and we never refuse for SPF.

Why our own: pyspf (the only complete Python evaluator) is synchronous, on
dnspython's blocking resolver, and last released in 2020; this one asks
dnspython's asyncio resolver, so the smtp process's event loop never waits.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

from mta.checks.dnslookup import DNSLookup, DNSTempError, IPAddress
from mta.checks.spf_macro import Facts, expand, truncate_domain, uses_p
from mta.checks.spf_record import Directive, MacroString, SPFSyntaxError, is_spf, parse

__all__ = ["MAX_LOOKUPS", "MAX_VOID", "TIME_LIMIT", "SPFResult", "check_host", "check_sender"]

MAX_LOOKUPS, MAX_VOID, MAX_MX, MAX_PTR = 10, 2, 10, 10
# RFC 7208 4.6.4 allows an overall limit of no less than 20 s: ten slow lookups
# must not hold a session for ten resolver timeouts.
TIME_LIMIT = 20.0


@dataclass(frozen=True)
class SPFResult:
    result: str
    domain: str  # the domain checked: the MAIL FROM's, or the HELO name's
    identity: str  # "mailfrom" or "helo": which of smtp.mailfrom / smtp.helo to report
    sender: str  # the address (or the HELO name) to report
    reason: str = ""  # for the A-R comment: what matched or what went wrong


class _Fail(Exception):
    """Ends the evaluation with temperror or permerror."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result, self.reason = result, reason


def _valid_domain(name: str) -> bool:
    """A multi-label name with no empty or over-long label (RFC 7208 4.3).

    An address literal ([192.0.2.1], a HELO's or a MAIL FROM's) is no domain.
    """
    labels = name.rstrip(".").split(".")
    return (len(labels) > 1 and len(name) <= 253 and "[" not in name
            and not labels[-1].isdigit()
            and all(0 < len(label) <= 63 for label in labels))


def _unmapped(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 client is the IPv4 client it stands for."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class _Evaluation:
    def __init__(self, dns: DNSLookup, ip: IPAddress, sender: str, helo: str) -> None:
        self.dns, self.ip, self.sender, self.helo = dns, ip, sender, helo
        self.lookups = 0
        self.voids = 0
        self.validated: str | None = None  # %{p}, found once
        self.reason = ""

    def _count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _Fail("permerror", f"more than {MAX_LOOKUPS} DNS lookups")

    def _void(self, answer: list | None) -> list:
        if not answer:
            self.voids += 1
            if self.voids > MAX_VOID:
                raise _Fail("permerror", f"more than {MAX_VOID} void DNS lookups")
        return answer or []

    async def _ask(self, coro):
        try:
            return await coro
        except DNSTempError as e:
            raise _Fail("temperror", str(e)) from None

    async def _target(self, spec: MacroString | None, domain: str) -> str:
        if spec is None:
            return domain
        if uses_p(spec) and self.validated is None:
            self.validated = await self._validated_name(None) or "unknown"
        facts = Facts(self.sender, domain, self.ip, self.helo, self.validated or "unknown")
        return truncate_domain(expand(spec, facts))

    async def _validated_name(self, target: str | None) -> str | None:
        """The client's PTR name whose address is the client's (RFC 7208 5.5).

        With a target: such a name that is the target or under it, else any.
        DNS failures here are no match, never temperror.
        """
        try:
            names = await self.dns.ptr(self.ip)
        except DNSTempError:
            return None
        found = None
        for name in (names or [])[:MAX_PTR]:
            try:
                addrs = await self.dns.addresses(name, self.ip.version == 6)
            except DNSTempError:
                continue
            if self.ip not in (addrs or []):
                continue
            lowered = name.lower()
            if target is None or lowered == target or lowered.endswith("." + target):
                return name
            found = found or name
        return None if target is not None else found

    async def _in_addresses(self, name: str, d: Directive, void: bool = True) -> bool:
        v6 = self.ip.version == 6
        addrs = await self._ask(self.dns.addresses(name, v6))
        if void:
            addrs = self._void(addrs)
        net = ipaddress.ip_network(f"{self.ip}/{d.cidr6 if v6 else d.cidr4}", strict=False)
        return any(a in net for a in addrs or [])

    async def _matches(self, d: Directive, domain: str) -> bool:
        m = d.mechanism
        if m == "all":
            return True
        if m in ("ip4", "ip6"):
            return self.ip.version == d.network.version and self.ip in d.network
        self._count()
        target = await self._target(d.domain, domain)
        if m == "a":
            return await self._in_addresses(target, d)
        if m == "mx":
            hosts = self._void(await self._ask(self.dns.mx(target)))
            if len(hosts) > MAX_MX:
                raise _Fail("permerror", f"{target} has more than {MAX_MX} MX hosts")
            for host in hosts:
                if await self._in_addresses(host, d, void=False):
                    return True
            return False
        if m == "ptr":
            return await self._validated_name(target.lower().rstrip(".")) is not None
        if m == "exists":
            # exists always asks for A records, whatever the client's family (RFC 7208 5.7).
            return bool(self._void(await self._ask(self.dns.addresses(target, False))))
        if m == "include":
            result = await self.check(target, nested=True)
            if result in ("temperror", "permerror"):
                raise _Fail(result, f"include:{target} gave {result}")
            if result == "none":
                raise _Fail("permerror", f"include:{target} has no SPF record")
            return result == "pass"
        raise _Fail("permerror", f"unknown mechanism {m}")  # the parser lets none through

    async def check(self, domain: str, nested: bool = False) -> str:
        domain = domain.rstrip(".").lower()
        if not _valid_domain(domain):
            return "none"
        records = await self._ask(self.dns.txt(domain))
        if nested:
            self._void(records)
        spf = [r for r in records or [] if is_spf(r)]
        if not spf:
            self.reason = f"{domain} has no SPF record"
            return "none"
        if len(spf) > 1:
            raise _Fail("permerror", f"{domain} has {len(spf)} SPF records")
        try:
            record = parse(spf[0])
        except SPFSyntaxError as e:
            raise _Fail("permerror", f"{domain}: {e}") from None
        for d in record.directives:
            if await self._matches(d, domain):
                self.reason = f"{domain}: {d.mechanism} matched"
                return d.qualifier
        if record.redirect is not None:
            self._count()
            target = await self._target(record.redirect, domain)
            result = await self.check(target, nested=True)
            if result == "none":
                raise _Fail("permerror", f"redirect={target} has no SPF record")
            return result
        self.reason = f"{domain}: no mechanism matched"
        return "neutral"


async def check_host(dns: DNSLookup, ip: IPAddress | str, domain: str, sender: str,
                     helo: str, time_limit: float = TIME_LIMIT) -> tuple[str, str]:
    """RFC 7208's check_host(): the result and a reason (for a comment)."""
    ip = _unmapped(ipaddress.ip_address(ip))
    ev = _Evaluation(dns, ip, sender, helo)
    try:
        async with asyncio.timeout(time_limit):
            return await ev.check(domain), ev.reason
    except _Fail as e:
        return e.result, e.reason
    except TimeoutError:
        return "temperror", f"no result within {time_limit:g} s"


async def check_sender(dns: DNSLookup, ip: IPAddress | str, mailfrom: str, helo: str,
                       time_limit: float = TIME_LIMIT) -> SPFResult:
    """The MAIL FROM identity, or the HELO name's for a null sender (RFC 7208 2.4)."""
    local, at, domain = mailfrom.rpartition("@")
    if at and domain:
        sender = f"{local or 'postmaster'}@{domain}"
        result, reason = await check_host(dns, ip, domain, sender, helo, time_limit)
        return SPFResult(result, domain.lower(), "mailfrom", mailfrom, reason)
    result, reason = await check_host(dns, ip, helo, f"postmaster@{helo}", helo, time_limit)
    return SPFResult(result, helo.lower(), "helo", helo, reason)
