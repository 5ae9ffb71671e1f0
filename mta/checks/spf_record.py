"""The SPF record grammar (RFC 7208 section 12): text in, terms out, no I/O.

    record    = "v=spf1" *( 1*SP ( directive / modifier ) ) *SP
    directive = [ "+" / "-" / "?" / "~" ] mechanism
    mechanism = all / include:D / a[:D][/4][//6] / mx[:D][/4][//6] / ptr[:D]
              / ip4:NET[/4] / ip6:NET[/6] / exists:D
    modifier  = redirect=D / exp=D / name=macro-string

D is a domain-spec: a macro string (see `Macro`) whose end is a macro or a
top label. Names are case-insensitive. Any error anywhere in the record is
`SPFSyntaxError`, which check_host() reports as permerror (RFC 7208 4.6);
nothing else is raised, whatever the text (tests/unit/test_spf_record.py
feeds it arbitrary strings).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

__all__ = ["Directive", "Macro", "Record", "SPFSyntaxError", "is_spf", "parse", "parse_macro"]

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
# c, r and t belong to explanation strings only (RFC 7208 7.2), which we do not expand.
MACRO_LETTERS = "slodiphv"
DELIMITERS = ".-+,/_="
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*\Z")
_TOPLABEL = re.compile(r"\.(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*"
                       r"|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9])\.?\Z")
_MACRO = re.compile(r"%\{([A-Za-z])([0-9]*)(r?)([.\-+,/_=]*)\}", re.IGNORECASE)
_CIDR4, _CIDR6 = re.compile(r"(?:0|[1-9][0-9]?)\Z"), re.compile(r"(?:0|[1-9][0-9]{0,2})\Z")


class SPFSyntaxError(ValueError):
    """The record breaks RFC 7208's grammar: check_host() gives permerror."""


@dataclass(frozen=True)
class Macro:
    """%{letter digits r delimiters}; an upper-case letter asks for URL escaping."""

    letter: str
    digits: int | None = None
    reverse: bool = False
    delimiters: str = "."
    escape: bool = False


MacroString = tuple[str | Macro, ...]


@dataclass(frozen=True)
class Directive:
    qualifier: str  # "pass", "fail", "softfail" or "neutral"
    mechanism: str
    domain: MacroString | None = None  # None: the current domain
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True)
class Record:
    directives: tuple[Directive, ...]
    redirect: MacroString | None = None
    exp: MacroString | None = None
    unknown: tuple[str, ...] = field(default=())  # names of modifiers we ignore (RFC 7208 6)

    @property
    def lookups(self) -> int:
        """Terms that query DNS (RFC 7208 4.6.4), for a caller that wants to see the cost."""
        return (sum(d.mechanism in ("include", "a", "mx", "ptr", "exists")
                    for d in self.directives) + (self.redirect is not None))


def is_spf(text: str) -> bool:
    """Whether a TXT record is an SPF record at all (RFC 7208 4.5): version, then SP or end."""
    head = text[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


def parse_macro(text: str, domain_spec: bool = True) -> MacroString:
    """A macro string; with domain_spec, it must also end as RFC 7208's domain-end.

    Outside a domain-spec (an unknown modifier's value, checked but unused) the
    explanation letters c, r and t are allowed as well.
    """
    letters = MACRO_LETTERS if domain_spec else MACRO_LETTERS + "crt"
    parts: list[str | Macro] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            if not "\x21" <= ch <= "\x7e":
                raise SPFSyntaxError(f"character {ch!r} not allowed in {text!r}")
            literal.append(ch)
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt in ("%", "_", "-"):
            literal.append({"%": "%", "_": " ", "-": "%20"}[nxt])
            i += 2
            continue
        m = _MACRO.match(text, i)
        if not m:
            raise SPFSyntaxError(f"bad macro at {text[i:i + 12]!r}")
        letter, digits, reverse, delims = m.groups()
        if letter.lower() not in letters:
            raise SPFSyntaxError(f"macro letter {letter!r} not allowed here")
        keep = None
        if digits:
            significant = digits.lstrip("0")
            if not significant:
                raise SPFSyntaxError("macro digit transformer must be nonzero")
            # More parts than a 253-octet name can have is "all of them"; capping
            # also keeps int() away from its limit on very long digit strings.
            keep = int(significant) if len(significant) <= 3 else 999
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Macro(letter.lower(), keep, bool(reverse), delims or ".",
                           letter.isupper()))
        i = m.end()
    if literal:
        parts.append("".join(literal))
    if domain_spec:
        if not parts:
            raise SPFSyntaxError("empty domain")
        # domain-end: a macro (but %% %_ %- are literals here) or "." toplabel ["."].
        last = parts[-1]
        if isinstance(last, str) and not _TOPLABEL.search(last):
            raise SPFSyntaxError(f"{text!r} does not end in a top-level label")
    return tuple(parts)


def _cidr(text: str, pattern: re.Pattern, limit: int) -> int:
    if not pattern.match(text) or int(text) > limit:
        raise SPFSyntaxError(f"bad prefix length /{text}")
    return int(text)


def _dual_cidr(arg: str) -> tuple[str, int, int]:
    """Split a[:D][/4][//6] into D, the IPv4 and the IPv6 prefix lengths."""
    cidr4, cidr6 = 32, 128
    if "//" in arg:
        arg, _, six = arg.rpartition("//")
        cidr6 = _cidr(six, _CIDR6, 128)
    # A domain-spec cannot contain "/" outside a macro's delimiters, so the
    # last "/" not inside %{...} starts the IPv4 length.
    m = re.search(r"/([0-9]*)\Z", arg)
    if m and not re.search(r"%\{[^}]*\Z", arg[:m.start()]):
        cidr4 = _cidr(m.group(1), _CIDR4, 32)
        arg = arg[:m.start()]
    return arg, cidr4, cidr6


def _network(arg: str, v6: bool) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]:
    addr, slash, length = arg.partition("/")
    try:
        ip = ipaddress.IPv6Address(addr) if v6 else ipaddress.IPv4Address(addr)
    except ValueError:
        raise SPFSyntaxError(f"bad address {addr!r}") from None
    bits = 128 if v6 else 32
    prefix = _cidr(length, _CIDR6 if v6 else _CIDR4, bits) if slash else bits
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False), prefix


def _directive(term: str) -> Directive:
    qualifier = QUALIFIERS.get(term[0], "")
    if qualifier:
        term = term[1:]
    else:
        qualifier = "pass"
    m = re.match(r"([A-Za-z0-9]+)(.*)\Z", term, re.DOTALL)
    name, rest = (m.group(1).lower(), m.group(2)) if m else ("", term)
    if name not in MECHANISMS:
        raise SPFSyntaxError(f"unknown mechanism {term!r}")
    if name == "all":
        if rest:
            raise SPFSyntaxError(f"'all' takes no argument: {term!r}")
        return Directive(qualifier, name)
    if name in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise SPFSyntaxError(f"{name} needs a network: {term!r}")
        network, prefix = _network(rest[1:], name == "ip6")
        return Directive(qualifier, name, network=network)
    if name in ("a", "mx"):
        rest, cidr4, cidr6 = _dual_cidr(rest)
    else:
        cidr4, cidr6 = 32, 128
    if not rest:
        if name in ("include", "exists"):
            raise SPFSyntaxError(f"{name} needs a domain: {term!r}")
        return Directive(qualifier, name, cidr4=cidr4, cidr6=cidr6)
    if not rest.startswith(":"):
        raise SPFSyntaxError(f"bad mechanism {term!r}")
    return Directive(qualifier, name, parse_macro(rest[1:]), cidr4=cidr4, cidr6=cidr6)


def parse(text: str) -> Record:
    """An SPF record (the TXT strings already joined); SPFSyntaxError if it is not one."""
    if not is_spf(text):
        raise SPFSyntaxError("not an SPF record (no v=spf1)")
    directives: list[Directive] = []
    modifiers: dict[str, MacroString] = {}
    unknown: list[str] = []
    for term in text[6:].split(" "):
        if not term:
            continue  # runs of spaces and a trailing space are allowed
        name, eq, value = term.partition("=")
        if eq and _NAME.match(name):
            key = name.lower()
            if key in ("redirect", "exp"):
                if key in modifiers:
                    raise SPFSyntaxError(f"{key}= given twice")  # RFC 7208 6
                modifiers[key] = parse_macro(value)
            else:
                parse_macro(value, domain_spec=False)  # unknown, ignored, but still checked
                unknown.append(key)
            continue
        directives.append(_directive(term))
    return Record(tuple(directives), modifiers.get("redirect"), modifiers.get("exp"),
                  tuple(unknown))
