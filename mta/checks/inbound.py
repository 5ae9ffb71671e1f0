"""The checks of one inbound message, put together: what port 25 will call.

`check_message` runs SPF for the envelope and DMARC for the From domain
(given the DKIM and ARC results, which come from their own verifier) and
writes the one Authentication-Results field; `stamp` puts it on top of the
message's header section after removing the fields that claim our
authserv-id. Nothing here refuses a message: a failed or broken check is a
result in the field, for the user's filters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from mta.checks import authresults, dmarc, spf
from mta.checks.dmarc import DKIMResult, DMARCResult
from mta.checks.dnslookup import DNSLookup
from mta.checks.spf import SPFResult

__all__ = ["Verdict", "check_message", "stamp"]


@dataclass(frozen=True)
class Verdict:
    spf: SPFResult
    dmarc: DMARCResult
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
    return Verdict(spf_result, dmarc_result, field)


def stamp(header: bytes, field: bytes, authserv: str) -> bytes:
    """The header section with our field first and no other field claiming our authserv-id."""
    return field + authresults.remove_claiming(header, authserv)
