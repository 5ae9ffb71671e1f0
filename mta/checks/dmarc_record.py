"""A DMARC record's tags (RFC 7489 6.3 and 6.4): text in, a policy out, no I/O.

    v=DMARC1; p=none|quarantine|reject; [sp=...]; [adkim=r|s]; [aspf=r|s]; [pct=0-100]; ...

v must be the first tag. Unknown tags are ignored, as RFC 7489 asks. A record
without a valid p (or with a bad sp) is read as p=none when it has a
syntactically valid rua (RFC 7489 6.6.3); otherwise, and for a bad adkim, aspf
or pct, it is `DMARCSyntaxError`, which the check reports as permerror (the
record is broken, and the recipient should see so) and applies no policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DMARCSyntaxError", "Policy", "is_dmarc", "parse"]

POLICIES = ("none", "quarantine", "reject")
_TAG = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s,!]+(?:![0-9]+[kmgt]?)?\Z", re.IGNORECASE)


class DMARCSyntaxError(ValueError):
    """The record is DMARC's (v=DMARC1) but breaks its grammar."""


@dataclass(frozen=True)
class Policy:
    p: str
    sp: str | None = None  # for subdomains of the organisational domain; None: as p
    adkim: str = "r"  # r(elaxed) or s(trict)
    aspf: str = "r"
    pct: int = 100


def _tags(text: str) -> list[tuple[str, str]]:
    out = []
    for part in text.split(";"):
        part = part.strip(" \t\r\n")
        if not part:
            continue  # the tag list may end with ";" (RFC 7489 6.4)
        name, eq, value = part.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        if not eq or not _TAG.match(name):
            raise DMARCSyntaxError(f"bad tag {part!r}")
        out.append((name.lower(), value))
    return out


def is_dmarc(text: str) -> bool:
    """Whether a TXT record is DMARC's at all: its first tag is v=DMARC1 (RFC 7489 6.6.3)."""
    head = text.split(";", 1)[0]
    name, eq, value = head.partition("=")
    return bool(eq) and name.strip(" \t") == "v" and value.strip(" \t") == "DMARC1"


def parse(text: str) -> Policy:
    if not is_dmarc(text):
        raise DMARCSyntaxError("not a DMARC record (no leading v=DMARC1)")
    tags = dict(reversed(_tags(text)))  # the first of a repeated tag counts
    rua_ok = any(_URI.match(u.strip(" \t")) for u in tags.get("rua", "").split(","))
    p, sp = tags.get("p", "").lower(), tags.get("sp", "").lower() or None
    if p not in POLICIES or (sp is not None and sp not in POLICIES):
        if not rua_ok:
            raise DMARCSyntaxError(f"p={tags.get('p', '')!r} sp={tags.get('sp')!r}: "
                                   "no valid policy and no rua")
        p, sp = "none", None
    adkim, aspf = tags.get("adkim", "r").lower(), tags.get("aspf", "r").lower()
    if adkim not in ("r", "s") or aspf not in ("r", "s"):
        raise DMARCSyntaxError(f"bad alignment mode adkim={adkim!r} aspf={aspf!r}")
    pct = tags.get("pct", "100")
    if not re.fullmatch(r"[0-9]{1,3}", pct) or int(pct) > 100:
        raise DMARCSyntaxError(f"bad pct={pct!r}")
    return Policy(p, sp, adkim, aspf, int(pct))
