"""DMARC (RFC 7489): policy discovery and identifier alignment, over `dnslookup`.

Discovery (RFC 7489 6.6.3): the TXT records at _dmarc.<From domain>; when
there is no DMARC record there, those at _dmarc.<organisational domain>. A
DNS failure is temperror; more than one DMARC record at a name, or a broken
one, is permerror. Both apply no policy.

Alignment (RFC 7489 3.1): SPF is aligned when it passed for a domain (the
MAIL FROM's, or HELO's for a null sender) that is the From domain (aspf=s)
or shares its organisational domain (aspf=r, the default); DKIM likewise
for a passing signature's d= under adkim. DMARC passes when either is
aligned, else fails; but when nothing passed aligned and an aligned SPF or
DKIM check had a temporary error, the result is temperror, since it may pass
when asked again.

The policy reported is p for the From domain's own record and, for a record
found at the organisational domain, sp when it is given, else p. We only
report it: honouring p=reject is a later, per-domain choice of the admin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses

from mta.checks import dmarc_record
from mta.checks.dmarc_record import DMARCSyntaxError, Policy
from mta.checks.dnslookup import DNSLookup, DNSTempError
from mta.checks.orgdomain import aligned, organisational_domain

__all__ = ["DKIMResult", "DMARCResult", "check", "discover", "from_domain"]


@dataclass(frozen=True)
class DKIMResult:
    """One signature's result, as the DKIM verifier gives it (pass, fail, temperror, ...)."""

    result: str
    domain: str  # d=
    selector: str = ""  # s=
    algorithm: str = ""  # a=
    b: str = ""  # the start of b=, enough to tell the signatures apart (RFC 6008)
    reason: str = ""  # why it did not pass, for the comment


@dataclass(frozen=True)
class DMARCResult:
    result: str  # pass, fail, none, temperror, permerror
    from_domain: str
    policy: str | None = None  # the one that applies to this From domain, if a record was found
    record: Policy | None = None
    record_domain: str = ""  # where the record was found
    reason: str = ""


def from_domain(values: Iterable[str]) -> str | None:
    """The one domain of the From fields; None when there is not exactly one (RFC 7489 6.6.1)."""
    domains = {addr.rpartition("@")[2].rstrip(".").lower()
               for _, addr in getaddresses(list(values)) if "@" in addr}
    domains.discard("")
    return domains.pop() if len(domains) == 1 else None


async def _records(dns: DNSLookup, domain: str) -> list[str]:
    return [t for t in await dns.txt(f"_dmarc.{domain}") or [] if dmarc_record.is_dmarc(t)]


async def discover(dns: DNSLookup, domain: str) -> tuple[Policy | None, str]:
    """The record for a From domain and where it was found; (None, "") if none.

    Raises DNSTempError, and DMARCSyntaxError for several records or a broken one.
    """
    domain = domain.rstrip(".").lower()
    where = domain
    found = await _records(dns, domain)
    org = organisational_domain(domain)
    if not found and org != domain:
        where, found = org, await _records(dns, org)
    if not found:
        return None, ""
    if len(found) > 1:
        raise DMARCSyntaxError(f"_dmarc.{where} has {len(found)} DMARC records")
    return dmarc_record.parse(found[0]), where


async def check(dns: DNSLookup, header_from: str | None, spf_result: str, spf_domain: str,
                dkim: Iterable[DKIMResult] = ()) -> DMARCResult:
    """The DMARC result for a message's From domain, given its SPF and DKIM results."""
    if header_from is None:
        return DMARCResult("permerror", "", reason="not exactly one From domain")
    domain = header_from.rstrip(".").lower()
    try:
        record, where = await discover(dns, domain)
    except DNSTempError as e:
        return DMARCResult("temperror", domain, reason=str(e))
    except DMARCSyntaxError as e:
        return DMARCResult("permerror", domain, reason=str(e))
    if record is None:
        return DMARCResult("none", domain, reason="no DMARC record")
    policy = record.p if where == domain else (record.sp or record.p)
    spf_aligned = aligned(spf_domain, domain, record.aspf == "s") if spf_domain else False
    dkim_aligned = [d for d in dkim if aligned(d.domain, domain, record.adkim == "s")]
    if spf_aligned and spf_result == "pass":
        return DMARCResult("pass", domain, policy, record, where, f"SPF aligned ({spf_domain})")
    passed = next((d for d in dkim_aligned if d.result == "pass"), None)
    if passed:
        return DMARCResult("pass", domain, policy, record, where,
                           f"DKIM aligned ({passed.domain})")
    if (spf_aligned and spf_result == "temperror") or any(
            d.result == "temperror" for d in dkim_aligned):
        return DMARCResult("temperror", domain, policy, record, where,
                           "an aligned check failed temporarily")
    return DMARCResult("fail", domain, policy, record, where, "no aligned SPF or DKIM pass")
