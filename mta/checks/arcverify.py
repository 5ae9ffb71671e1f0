"""ARC verification (RFC 8617 5.2) of an inbound message: the chain's result, no sealing.

dkimpy's arc_verify does the work, in a worker thread with the TXT lookup of
`dkimverify` (our resolver, on the loop). The result is what RFC 8617
registers for the Authentication-Results "arc" method:

- none: the message has no ARC sets;
- pass: every ARC-Seal verifies, the newest ARC-Message-Signature verifies,
  and the cv= values make a valid chain (none at i=1, pass after);
- fail: anything else, including a chain an earlier hop already marked
  cv=fail. RFC 8617 has no temperror, so a DNS failure is fail too, with
  the reason saying so for the log: the chain could not be shown intact.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dkim

from common.msgheader import Header
from mta.checks.dkimverify import TxtFunc, txt_func
from mta.checks.dnslookup import DNSLookup, DNSTempError

__all__ = ["ARCResult", "verify", "verify_sync"]


@dataclass(frozen=True)
class ARCResult:
    result: str  # none, pass, fail
    reason: str = ""


ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")


def verify_sync(message: bytes, lookup: TxtFunc) -> ARCResult:
    # Looked for first: a header dkimpy cannot read has no chain to fail when it has no ARC set.
    if not Header.of(message).count(*ARC_FIELDS):
        return ARCResult("none", "Message is not ARC signed")
    try:
        cv, _, reason = dkim.arc_verify(message, dnsfunc=lookup)
    except DNSTempError as e:
        return ARCResult("fail", f"DNS: {e}")
    except Exception as e:  # a sender's bytes must never end the check
        return ARCResult("fail", f"chain not verifiable: {e}")
    if cv == dkim.CV_None:
        return ARCResult("none", reason)
    if cv == dkim.CV_Pass:
        return ARCResult("pass")
    return ARCResult("fail", reason)  # CV_Fail, or None for a chain already failed upstream


async def verify(dns: DNSLookup, message: bytes) -> ARCResult:
    lookup = txt_func(dns, asyncio.get_running_loop())
    return await asyncio.to_thread(verify_sync, message, lookup)
