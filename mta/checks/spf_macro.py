"""SPF macro expansion (RFC 7208 section 7): a parsed macro string and the facts, no I/O.

    %{s} sender          %{l} its local-part   %{o} its domain
    %{d} current domain  %{i} client address   %{h} HELO name
    %{v} "in-addr"/"ip6" %{p} the client's validated name ("unknown" if none)

A transformer keeps the rightmost N parts, after an optional reversal ("r");
the value is split on the given delimiters (default ".") and joined with ".".
An upper-case letter URL-escapes the result. %{i} of an IPv6 client is its 32
nibbles, dot-separated (RFC 7208 7.3).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from mta.checks.spf_record import Macro, MacroString

__all__ = ["Facts", "expand", "truncate_domain", "uses_p"]


@dataclass(frozen=True)
class Facts:
    sender: str  # local-part@domain, "postmaster" put in for an empty local-part
    domain: str  # the current domain (changes in include and redirect)
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    helo: str
    validated: str = "unknown"  # %{p}, found by the evaluator only when a macro asks for it


def _value(letter: str, facts: Facts) -> str:
    local, _, domain = facts.sender.rpartition("@")
    if letter == "s":
        return facts.sender
    if letter == "l":
        return local
    if letter == "o":
        return domain
    if letter == "d":
        return facts.domain
    if letter == "i":
        if facts.ip.version == 4:
            return str(facts.ip)
        return ".".join(facts.ip.exploded.replace(":", ""))
    if letter == "h":
        return facts.helo
    if letter == "v":
        return "in-addr" if facts.ip.version == 4 else "ip6"
    if letter == "p":
        return facts.validated
    raise ValueError(f"macro letter {letter!r} has no value here")  # the parser allows none


def _transform(value: str, macro: Macro) -> str:
    parts = re.split("[" + re.escape(macro.delimiters) + "]", value)
    if macro.reverse:
        parts.reverse()
    if macro.digits is not None:
        parts = parts[-macro.digits:]
    out = ".".join(parts)
    # RFC 3986 unreserved characters stay, the rest is %-escaped.
    return urllib.parse.quote(out, safe="-._~") if macro.escape else out


def expand(spec: MacroString, facts: Facts) -> str:
    return "".join(p if isinstance(p, str) else _transform(_value(p.letter, facts), p)
                   for p in spec)


def uses_p(spec: MacroString) -> bool:
    return any(isinstance(p, Macro) and p.letter == "p" for p in spec)


def truncate_domain(name: str) -> str:
    """Over 253 characters, drop labels from the left until it fits (RFC 7208 7.3)."""
    name = name.rstrip(".")
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name
