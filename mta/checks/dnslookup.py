"""The DNS questions of the inbound checks, on dnspython's asyncio resolver.

Each answer is a list of records, `[]` when the name exists without records of
the type (NODATA), or None when the name does not exist (NXDOMAIN): SPF counts
both of the latter as "void lookups". Anything else that goes wrong (a timeout,
SERVFAIL, a refusal) raises `DNSTempError`, which every check turns into
`temperror`: never into a refusal of the message.
"""

from __future__ import annotations

import ipaddress

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from mta.relay.resolver import make_resolver, records

__all__ = ["DNSLookup", "DNSTempError"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DNSTempError(Exception):
    """A lookup failed in a way that may not fail later (timeout, SERVFAIL)."""


class DNSLookup:
    """TXT, A, AAAA, MX and PTR lookups; `queries` counts the questions sent."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver
        self.queries = 0

    @classmethod
    def configured(cls, nameservers: list[str], timeout: float) -> DNSLookup:
        """From the config's nameservers (empty: /etc/resolv.conf) and DNS timeout."""
        return cls(make_resolver(nameservers, timeout))

    async def _resolve(self, name: str, rdtype: str) -> list | None:
        self.queries += 1
        try:
            dns.name.from_text(name)
        except dns.exception.DNSException:
            return None  # not a name DNS can carry (a label over 63 octets): it cannot exist
        return await records(self.resolver, name, rdtype, DNSTempError)

    async def txt(self, name: str) -> list[str] | None:
        """Each TXT record's strings joined without a separator (RFC 7208 3.3)."""
        records = await self._resolve(name, "TXT")
        if records is None:
            return None
        # latin-1 keeps every octet; the parsers reject what is not ASCII.
        return [b"".join(r.strings).decode("latin-1") for r in records]

    async def addresses(self, name: str, v6: bool) -> list[IPAddress] | None:
        records = await self._resolve(name, "AAAA" if v6 else "A")
        if records is None:
            return None
        return [ipaddress.ip_address(r.address) for r in records]

    async def mx(self, name: str) -> list[str] | None:
        """The exchanges' names, without the root dot; a null MX ("0 .") gives none."""
        records = await self._resolve(name, "MX")
        if records is None:
            return None
        hosts = [r.exchange.to_text(omit_final_dot=True) for r in records]
        return [h for h in hosts if h not in ("", ".", "@")]

    async def ptr(self, ip: IPAddress) -> list[str] | None:
        records = await self._resolve(dns.reversename.from_address(str(ip)).to_text(), "PTR")
        if records is None:
            return None
        return [r.target.to_text(omit_final_dot=True) for r in records]
