"""The checks of one inbound message, put together: what port 25 will call.

`check_received` takes the whole message: it verifies its DKIM signatures
and its ARC chain (`dkimverify`, `arcverify`, both off the event loop), reads
its From fields, and gives all of it to `check_message`. That runs SPF for
the envelope and DMARC for the From domain (given the DKIM and ARC results)
and writes the one Authentication-Results field; `stamp` puts it on top of
the message's header section after removing the fields that claim our
authserv-id. Nothing here refuses a message: a failed or broken check is a
result in the field, for the user's filters.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from common.msgheader import Header
from mta.checks import arcverify, authresults, dkimverify, dmarc, spf
from mta.checks.dmarc import DKIMResult, DMARCResult
from mta.checks.dnslookup import DNSLookup
from mta.checks.spf import SPFResult

__all__ = ["Verdict", "check_message", "check_received", "stamp"]


@dataclass(frozen=True)
class Verdict:
    spf: SPFResult
    dmarc: DMARCResult
    dkim: tuple[DKIMResult, ...]
    arc: str | None
    field: bytes  # the Authentication-Results field, folded, with its CRLF


async def check_message(dns: DNSLookup, authserv: str, ip: str | ipaddress.IPv4Address
                        | ipaddress.IPv6Address, helo: str, mailfrom: str,
                        from_values: Iterable[str], dkim: Iterable[DKIMResult] = (),
                        arc: str | None = None) -> Verdict:
    """from_values: the From fields' values (several, or several addresses, is permerror)."""
    sigs = list(dkim)
    spf_result = await spf.check_sender(dns, ip, mailfrom, helo)
    # DMARC's SPF identifier is the domain SPF checked: MAIL FROM's, or HELO's for <>.
    dmarc_result = await dmarc.check(dns, dmarc.from_domain(from_values), spf_result.result,
                                     spf_result.domain, sigs)
    field = authresults.build(authserv, spf_result, sigs, dmarc_result, arc)
    return Verdict(spf_result, dmarc_result, tuple(sigs), arc, field)


async def check_received(dns: DNSLookup, authserv: str, ip: str | ipaddress.IPv4Address
                         | ipaddress.IPv6Address, helo: str, mailfrom: str,
                         message: bytes) -> Verdict:
    """Every check of one message, as received (its header section and body, CRLF lines)."""
    # The two verifiers wait on DNS in their threads at the same time.
    sigs, chain = await asyncio.gather(dkimverify.verify(dns, message),
                                       arcverify.verify(dns, message))
    from_values = [v.decode("utf-8", "replace") for v in Header.of(message).values("from")]
    return await check_message(dns, authserv, ip, helo, mailfrom, from_values, sigs,
                               chain.result)


def stamp(header: bytes, field: bytes, authserv: str) -> bytes:
    """The header section with our field first and no other field claiming our authserv-id."""
    return field + authresults.remove_claiming(header, authserv)
