"""DKIM verification of every signature on an inbound message (RFC 6376 6), with dkimpy.

dkimpy is synchronous, so `verify` runs it in a worker thread
(asyncio.to_thread) and hands it a TXT lookup (`txt_func`) that asks our
own asyncio resolver on the event loop and waits for the answer in the
thread: the loop never blocks, and every DNS question goes where the other
checks' go (the configured nameservers, `dnslookup`'s error rules).

Each signature gets one result, as RFC 8601 2.7.1 names them:

- pass: it verified;
- fail: the body hash or the signature did not verify (the message changed);
- permerror: no usable key at <s>._domainkey.<d> (none, or not a key), a key
  of another algorithm than a= (as when a domain puts both its keys at one
  name and the other one's comes first), a key below 1024 bits, rsa-sha1
  (RFC 8301 3.1), or a signature dkimpy refuses (a required tag missing, expired, i= outside d=);
- neutral: a signature field that is not a tag list, or that dkimpy fails on
  (one neutral result stands for all when dkimpy cannot read the header at all);
- temperror: DNS did not answer (timeout, SERVFAIL): asking later may pass.

With the result go header.d, header.s, header.a and header.b: the b= value's
first 8 characters, longer when two signatures would share them (RFC 6008).
At most MAX_SIGNATURES are verified (RFC 6376 6.1 lets verifiers limit them):
each costs a DNS query, and a sender chooses how many there are.
"""

from __future__ import annotations

import asyncio
import binascii
import re
from collections.abc import Callable

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from common.msgheader import Header
from mta.checks.dmarc import DKIMResult
from mta.checks.dnslookup import DNSLookup, DNSTempError

__all__ = ["MAX_SIGNATURES", "TxtFunc", "signature_prefixes", "txt_func", "verify",
           "verify_sync"]

MAX_SIGNATURES = 10
B_PREFIX = 8
TxtFunc = Callable[..., bytes | None]


class _Answers:
    """dkimpy's dnsfunc around a fetch: each name asked once, and the answers kept
    so that a False from dkimpy can be told apart (a bad key or a bad signature)."""

    def __init__(self, fetch: TxtFunc) -> None:
        self.fetch = fetch
        self.answers: dict[bytes, bytes | None] = {}

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        if name not in self.answers:
            self.answers[name] = self.fetch(name)
        return self.answers[name]


def _key_record(records: list[str] | None) -> bytes | None:
    if not records:
        return None
    # Several records at a key name: take the DKIM one, as RFC 6376 3.6.2.2 expects one.
    for r in records:
        if r.lstrip().startswith("v=DKIM1"):
            return r.encode("latin-1")
    return records[0].encode("latin-1")


def txt_func(dns: DNSLookup, loop: asyncio.AbstractEventLoop) -> TxtFunc:
    """A TXT lookup for a worker thread, asked by the resolver on `loop`."""

    def fetch(name: bytes, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace")  # a non-ASCII name cannot exist: NXDOMAIN
        future = asyncio.run_coroutine_threadsafe(dns.txt(text), loop)
        return _key_record(future.result())  # the resolver's lifetime bounds the wait

    return fetch


def _tags(raw: bytes) -> dict[bytes, bytes] | None:
    try:
        return parse_tag_value(raw)
    except (InvalidTagValueList, ValueError):
        return None


def signature_prefixes(bvalues: list[str]) -> list[str]:
    """Each b= as RFC 6008 abbreviates it: 8 characters, or as many as make it unique."""
    out = []
    for b in bvalues:
        n = B_PREFIX
        while n < len(b) and any(o != b and o[:n] == b[:n] for o in bvalues):
            n += 1
        out.append(b[:n])
    return out


def _text(v: bytes | None) -> str:
    return (v or b"").decode("ascii", "replace").strip()


def _key_name(tags: dict[bytes, bytes]) -> bytes:
    return tags.get(b"s", b"") + b"._domainkey." + tags.get(b"d", b"") + b"."


def _key_is_unusable(lookup: _Answers, tags: dict[bytes, bytes]) -> str:
    """Why the key record is unusable, or "" when it was fine (so the signature was bad)."""
    name = _key_name(tags)
    if name not in lookup.answers:
        return ""
    try:
        dkim.evaluate_pk(name, lookup.answers[name])
    except (dkim.DKIMException, binascii.Error, ValueError, KeyError) as e:
        return f"key {name.decode('ascii', 'replace').rstrip('.')}: {e}"
    return ""


def _key_of_other_algorithm(lookup: _Answers, tags: dict[bytes, bytes]) -> str:
    """Why the key record's k= does not suit the signature's a=, or "".
    RFC 6376 6.1.2 step 8 makes that a permanent failure ("inappropriate key
    algorithm"). It happens when a domain publishes both keys at one name: the
    first record is the other algorithm's, and dkimpy then fails inside the
    crypto library (nacl's "signature must be exactly 64 bytes long")."""
    name = _key_name(tags)
    record = lookup.answers.get(name)
    key = _tags(record) if record else None
    if key is None:
        return ""
    k = key.get(b"k", b"rsa").strip().lower()  # rsa is the default (RFC 6376 3.6.1)
    a = tags.get(b"a", b"").strip().lower().partition(b"-")[0]
    if a and k != a:
        return (f"key {name.decode('ascii', 'replace').rstrip('.')} is k={_text(k)}, "
                f"the signature is a={_text(tags.get(b'a'))}")
    return ""


def _result(d: dkim.DKIM, idx: int, tags: dict[bytes, bytes] | None,
            lookup: _Answers) -> tuple[str, str]:
    if tags is None:
        return "neutral", "signature is not a tag=value list"
    if tags.get(b"a", b"").strip().lower() == b"rsa-sha1":
        return "permerror", "rsa-sha1 is not accepted (RFC 8301)"
    try:
        ok = d.verify(idx=idx, dnsfunc=lookup)
    except DNSTempError as e:
        return "temperror", str(e)
    except Exception as e:
        return _refused(lookup, tags, e)
    if ok:
        return "pass", ""
    # dkimpy answers False for a missing or broken key record too: tell them apart.
    reason = _key_of_other_algorithm(lookup, tags) or _key_is_unusable(lookup, tags)
    return ("permerror", reason) if reason else ("fail", "signature did not verify")


def _refused(lookup: _Answers, tags: dict[bytes, bytes], e: Exception) -> tuple[str, str]:
    """The result of a signature dkimpy raised on."""
    if reason := _key_of_other_algorithm(lookup, tags):
        return "permerror", reason
    if isinstance(e, dkim.ValidationError) and str(e).startswith("body hash mismatch"):
        return "fail", "body hash did not verify"
    if isinstance(e, dkim.ValidationError | dkim.KeyFormatError | dkim.UnknownKeyTypeError):
        return "permerror", str(e)
    return "neutral", f"signature not verifiable: {e}"  # a sender's bytes never end the check


def verify_sync(message: bytes, fetch: TxtFunc,
                limit: int = MAX_SIGNATURES) -> list[DKIMResult]:
    """The results of the first `limit` signatures, top first; blocking (DNS via `fetch`)."""
    lookup = _Answers(fetch)
    try:
        d = dkim.DKIM(message, minkey=1024)
    except Exception as e:  # a header section dkimpy cannot split into fields
        if not Header.of(message).has("dkim-signature"):
            return []
        return [DKIMResult("neutral", "", reason=f"message not verifiable: {e}")]
    raws = [v for n, v in d.headers if n.lower() == b"dkim-signature"][:limit]
    tags = [_tags(r) for r in raws]
    prefixes = signature_prefixes([re.sub(r"\s+", "", _text(t.get(b"b"))) if t else ""
                                   for t in tags])
    results = []
    for i, t in enumerate(tags):
        result, reason = _result(d, i, t, lookup)
        t = t or {}
        results.append(DKIMResult(result, _text(t.get(b"d")).lower(), _text(t.get(b"s")),
                                  _text(t.get(b"a")).lower(), prefixes[i], reason))
    return results


async def verify(dns: DNSLookup, message: bytes,
                 limit: int = MAX_SIGNATURES) -> list[DKIMResult]:
    """Every signature's result (none: an empty list), off the event loop."""
    fetch = txt_func(dns, asyncio.get_running_loop())
    return await asyncio.to_thread(verify_sync, message, fetch, limit)
