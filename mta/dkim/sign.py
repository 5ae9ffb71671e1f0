"""DKIM-Signature fields for one outbound message (RFC 6376 5, RFC 8463).

`sign(message, domain, keys)` returns the fields to put on top of the message:
one signature per key, Ed25519 first then RSA, so a receiver that knows
ed25519-sha256 (RFC 8463) finds it and one that does not still has rsa-sha256.
Each signature covers the message as given, not the other signature. Each
names its own selector (s=): the Ed25519 key is published at
<selector>-ed25519 (mta/dkim/keys.py says why).

Canonicalization is relaxed/relaxed (header and body survive the re-folding
and trailing-space changes that relays make). The signed fields are those of
RFC 6376 5.4.1's list that the message has, once per occurrence, plus the
MIME fields and Message-ID; From, Subject, To and Date are signed once more
than they occur ("oversigning", RFC 6376 8.15), so nobody can add another
instance, or add one that is absent, without breaking the signature.
"""

from __future__ import annotations

from collections.abc import Iterable

import dkim

from common.msgheader import Header
from mta.dkim.keys import ALGORITHMS, DKIMKey

__all__ = ["OVERSIGNED", "SIGNED", "sign", "signed_fields"]

# RFC 6376 5.4.1, in its order, then the fields whose change alters what the
# reader sees (the MIME structure) or which threads the message (Message-ID).
SIGNED = ("from", "reply-to", "subject", "date", "to", "cc", "resent-date", "resent-from",
          "resent-to", "resent-cc", "in-reply-to", "references", "list-id", "list-help",
          "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive",
          "message-id", "mime-version", "content-type", "content-transfer-encoding")
OVERSIGNED = ("from", "subject", "to", "date")


def signed_fields(header: Header) -> list[str]:
    """The h= list: each field once per occurrence, the oversigned ones once more."""
    names = []
    for name in SIGNED:
        names += [name] * (header.count(name) + (name in OVERSIGNED))
    return names


def sign(message: bytes, domain: str, keys: Iterable[DKIMKey]) -> bytes:
    """The DKIM-Signature fields, CRLF-ended, to prepend; ValueError without a usable key."""
    order = {a: i for i, a in enumerate(ALGORITHMS)}
    chosen = sorted((k for k in keys if k.domain == domain.lower()),
                    key=lambda k: order[k.algorithm])
    if not chosen:
        raise ValueError(f"no DKIM key for {domain}")
    include = [n.encode("ascii") for n in signed_fields(Header.of(message))]
    out = []
    for key in chosen:
        signer = dkim.DKIM(message, linesep=b"\r\n")
        out.append(signer.sign(key.dns_selector.encode("ascii"), key.domain.encode("ascii"),
                               key.dkimpy_private(),
                               signature_algorithm=key.signature_algorithm.encode("ascii"),
                               canonicalize=(b"relaxed", b"relaxed"),
                               include_headers=include))
    return b"".join(out)
