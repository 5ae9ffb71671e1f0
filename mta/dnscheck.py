"""Compare the records mta.dnsrecords expects with what DNS answers.

Each expected Record gets one Result: "ok", "accepted" (published differently
in a way that still works), "different", "missing" or "error" (the lookup
failed: a timeout or SERVFAIL, so nothing is known). `compare()` is pure:
it takes the answers; `check()` asks DNS for them through the resolver the relay
uses (relay.nameservers), so the check sees what the MX lookups see.

Leniency, chosen so a working setup never shows as broken:
- MX: ok when our host is one of the exchanges, whatever the preference.
- SPF: exact, or "accepted" when the published record authorizes us by a
  mechanism we can see without evaluating it (mx, a:<host>, ip4/ip6 of a
  public address) or delegates (include:, redirect=), which we cannot judge.
  Anything else ("v=spf1 -all") is "different".
- DMARC, MTA-STS, TLS-RPT: any record of the right version with the tags its
  RFC requires is "accepted": the policy and the report address are the admin's.
- DKIM: the public key must be the one in the key dir (the record may differ
  in spacing and tags).
- SRV: port and target must match; priority and weight are the admin's.
- CNAME names may instead be A/AAAA records with a public address.
Failing: a required record that is not ok/accepted. Optional records (SRV,
autoconfig, MTA-STS, TLS-RPT) are reported but do not fail the check.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from mta.dnsrecords import Record

__all__ = ["Answer", "Result", "check", "compare", "describe", "failed"]

# What DNS said for a (name, type): the records' texts (TXT strings joined), [] for
# none (NODATA or NXDOMAIN), or an error string.
Answer = list[str] | str

GOOD = ("ok", "accepted")


@dataclass(frozen=True)
class Result:
    record: Record
    status: str
    found: list[str]
    detail: str = ""

    @property
    def fails(self) -> bool:
        return self.status not in GOOD and not self.record.optional


def describe(r: Result) -> str:
    """One line: status, type, name, then what was found and what is expected."""
    status = r.status + (" (optional)" if r.record.optional and r.status not in GOOD else "")
    line = f"{status:20} {r.record.rtype:5} {r.record.name}"
    if r.detail:
        line += f": {r.detail}"
    if r.status not in ("ok",):
        if r.found:
            line += "; found " + " | ".join(r.found)
        if r.status != "accepted":
            line += f"; expected {r.record.value}"
    return line


def failed(results: list[Result]) -> bool:
    return any(r.fails for r in results)


def _host(text: str) -> str:
    return text.rstrip(".").lower()


def _tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        k, sep, v = part.partition("=")
        if sep:
            tags[k.strip().lower()] = re.sub(r"\s+", "", v)
    return tags


def _spf_authorizes(text: str, host: str, addresses: list[str]) -> bool:
    for term in text.lower().split()[1:]:
        term = term.lstrip("+")  # "+mx" is "mx"; "-mx", "~mx", "?mx" do not authorize
        if term in ("mx", f"a:{host}", f"mx:{host}") or term.startswith(("include:", "redirect=")):
            return True
        if term.startswith(("ip4:", "ip6:")) and term[4:] in addresses:
            return True
    return False


def _txt(want: Record, found: list[str], host: str, addresses: list[str]) -> tuple[str, str]:
    ours = [f for f in found if f.startswith(want.lenient_prefix)] if want.lenient_prefix else []
    # Two SPF or DMARC records are as bad as none (RFC 7208 4.5, RFC 7489 6.6.3), ours or not.
    if len(ours) > 1:
        return "different", f"{len(ours)} records where there must be one"
    if want.value in found:
        return "ok", ""
    if "._domainkey." in want.name:
        p = _tags(want.value).get("p")
        if any(_tags(f).get("p") == p for f in found):
            return "ok", ""
        return ("different" if any(f.startswith("v=DKIM1") for f in found) else "missing"), ""
    if not ours:
        return "missing", ""
    text = ours[0]
    if want.lenient_prefix.startswith("v=spf1"):
        if _spf_authorizes(text, host, addresses):
            return "accepted", "a policy of your own that authorizes this host"
        return "different", "it does not authorize this host (mx, a:host or ip4/ip6)"
    required = {"v=DMARC1": "p", "v=STSv1": "id", "v=TLSRPTv1": "rua"}[want.lenient_prefix]
    if required in _tags(text):
        return "accepted", "a policy of your own"
    return "different", f"it has no {required}= tag"


def compare(want: Record, answers: dict[tuple[str, str], Answer], host: str,
            addresses: list[str]) -> Result:
    """The verdict on one record, given the answers for its name (see `lookups`)."""
    got = answers[(want.name, want.rtype)]
    if isinstance(got, str):
        return Result(want, "error", [], got)
    found = got
    if want.rtype == "MX":
        ok = any(_host(f.split()[-1]) == host for f in found)
        status = "ok" if ok else "different" if found else "missing"
    elif want.rtype in ("A", "AAAA", "PTR"):
        ok = any(_host(f) == _host(want.value) for f in found)
        status = "ok" if ok else "different" if found else "missing"
    elif want.rtype == "SRV":
        def tail(text: str) -> list[str]:
            return [x.rstrip(".").lower() for x in text.split()[2:]]
        ok = any(tail(f) == tail(want.value) for f in found)
        status = "ok" if ok else "different" if found else "missing"
    elif want.rtype == "CNAME":
        if found:
            status = "ok" if _host(found[0]) == _host(want.value) else "different"
        else:
            direct = [a for t in ("A", "AAAA") if isinstance(g := answers[(want.name, t)], list)
                      for a in g]
            found = direct
            status = ("missing" if not direct else "accepted" if not addresses
                      or set(direct) <= set(addresses) else "different")
    else:
        status, detail = _txt(want, found, host, addresses)
        return Result(want, status, found, detail)
    return Result(want, status, found)


def lookups(records: list[Record]) -> set[tuple[str, str]]:
    """The questions `compare` needs answered."""
    out = set()
    for r in records:
        out.add((r.name, r.rtype))
        if r.rtype == "CNAME":
            out |= {(r.name, "A"), (r.name, "AAAA")}
    return out


async def _ask(resolver: dns.asyncresolver.Resolver, name: str, rtype: str) -> Answer:
    try:
        answer = await resolver.resolve(dns.name.from_text(name), rtype, search=False,
                                        raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    except dns.resolver.LifetimeTimeout:
        return "timed out"
    except dns.resolver.NoNameservers:
        return "SERVFAIL"
    except dns.exception.DNSException as e:
        return str(e) or type(e).__name__
    if answer.rrset is None:
        return []
    if rtype == "TXT":
        return [b"".join(r.strings).decode("latin-1") for r in answer.rrset]
    return [r.to_text() for r in answer.rrset]


async def check(resolver: dns.asyncresolver.Resolver, records: list[Record], host: str,
                addresses: list[str]) -> list[Result]:
    questions = sorted(lookups(records))
    got = await asyncio.gather(*(_ask(resolver, n, t) for n, t in questions))
    answers = dict(zip(questions, got, strict=True))
    return [compare(r, answers, host.lower(), addresses) for r in records]
