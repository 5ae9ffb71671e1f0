"""RFC 5322 address lists, in the shape of IMAP ENVELOPE addresses.

Like the other header helpers (headerfields), parse_addresses takes the
unfolded raw value of one field and never raises. Address parts stay raw
bytes, so 8-bit data reaches the client exactly as it was received.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mda.store.headerfields import skip_comment, unquote

__all__ = ["GROUP_END", "Address", "parse_addresses"]


class Address(NamedTuple):
    """One element of an address list, in the shape of an IMAP ENVELOPE address.

    A mailbox has host not None (b"" when the address had no domain; mailbox
    is b"" when it had no local part). A group is bracketed by a start marker
    (None, None, b"group name", None) and an end marker (None, None, None,
    None), as RFC 3501 represents groups. All parts are raw bytes: quotes and
    comments removed, RFC 2047 words left encoded (decode_header_text).
    """

    name: bytes | None
    route: bytes | None
    mailbox: bytes | None
    host: bytes | None


GROUP_END = Address(None, None, None, None)

_ADDR_TOKEN = re.compile(
    rb"""
    (?P<ws>[ \t\r\n]+)
  | (?P<q>"(?P<qi>(?:[^"\\]|\\.)*)"?)
  | (?P<d>\[(?:[^\]\\]|\\.)*\]?)
  | (?P<c>\()
  | (?P<s>[<>@,;:.])
  | (?P<a>[^ \t\r\n()<>@,;:."\[\]]+)
  | (?P<x>.)
    """,
    re.X | re.S,
)

# token kinds: "w" word (atom or quoted string, unquoted), "d" domain literal,
# "c" comment (its text), or the special character itself.
_Token = tuple[str, bytes, bool]  # (kind, text, whitespace or comment before it)


def _address_tokens(raw: bytes) -> list[_Token]:
    toks: list[_Token] = []
    i, n = 0, len(raw)
    space = False
    while i < n:
        m = _ADDR_TOKEN.match(raw, i)
        kind = m.lastgroup
        if kind == "ws":
            space = True
            i = m.end()
            continue
        if kind == "c":
            end = skip_comment(raw, i, n)
            inner = raw[i + 1 : end - 1 if raw[end - 1 : end] == b")" else end]
            toks.append(("c", unquote(inner).strip(), space))
            space = True
            i = end
            continue
        text = m.group()
        if kind == "q":
            toks.append(("w", unquote(m.group("qi")), space))
        elif kind == "s":
            toks.append((text.decode("latin-1"), text, space))
        elif kind == "d":
            toks.append(("d", text, space))
        else:  # atoms, and stray "]" or ")" read as atom text
            toks.append(("w", text, space))
        space = False
        i = m.end()
    return toks


def _join_words(toks: list[_Token]) -> bytes:
    # Text of a phrase: words as written, one space where the header had
    # whitespace or a comment ("John Q. Public", "J.R.R. Tolkien").
    out = bytearray()
    for kind, text, space in toks:
        if kind == "c":
            continue
        if out and space:
            out += b" "
        out += text
    return bytes(out)


def _join_tight(toks: list[_Token]) -> bytes:
    return b"".join(text for kind, text, _ in toks if kind != "c")


def _last_comment(toks: list[_Token]) -> bytes | None:
    for kind, text, _ in reversed(toks):
        if kind == "c" and text:
            return text
    return None


def _addr_spec(toks: list[_Token]) -> tuple[bytes | None, bytes | None]:
    at = None
    for k in range(len(toks) - 1, -1, -1):
        if toks[k][0] == "@":
            at = k
            break
    if at is None:
        return None, None
    local = [t for t in toks[:at] if t[0] != "c"]
    # obs-local-part allows spaces around dots: "john . smith" is john.smith
    text = b"".join(t[1] for t in local) if any(t[0] == "." for t in local) else _join_words(local)
    return text, _join_tight(toks[at + 1 :])


def _mailbox(item: list[_Token]) -> Address | None:
    if all(kind == "c" for kind, _, _ in item):
        return None
    kinds = [kind for kind, _, _ in item]
    if "<" in kinds:
        left = kinds.index("<")
        right = kinds.index(">", left) if ">" in kinds[left:] else len(item)
        inner = item[left + 1 : right]
        name = _join_words(item[:left]) or _last_comment(item)
        route = None
        colon = max((k for k, t in enumerate(inner) if t[0] == ":"), default=None)
        if colon is not None:
            route = _join_tight(inner[:colon]) or None
            inner = inner[colon + 1 :]
        local, host = _addr_spec(inner)
        if local is None:  # <user> or <>: no domain
            local, host = _join_words(inner), b""
        return Address(name or None, route, local, host)
    name = _last_comment(item)
    local, host = _addr_spec(item)
    if local is None:
        text = _join_words(item)
        if name is None:
            # A bare word is more likely a name than a mailbox ("To: John").
            return Address(text, None, b"", b"")
        return Address(name, None, text, b"")
    return Address(name, None, local, host)


# The shapes nearly all mail uses, `Name <local@host>`, `"Name" <local@host>`
# and `local@host`, as a list: read by one regular expression instead of the
# tokenizer. The character classes are narrower than the tokenizer's (no
# backslash, comment, domain literal, route or group), so anything they accept
# the tokenizer would read into exactly these parts; anything else falls back.
_ATOM = rb'[^\s()<>@,;:."\[\]\\]+'
_DOTS = _ATOM + rb"(?:\." + _ATOM + rb")*"
_WORDS = rb'[^\s()<>@,;:"\[\]\\]+(?:[ \t]+[^\s()<>@,;:"\[\]\\]+)*'
_SIMPLE = re.compile(
    rb'[ \t]*(?:(?:"(?P<q>[^"\\]*)"|(?P<p>' + _WORDS + rb"))?[ \t]*"
    rb"<(?P<l>" + _DOTS + rb")@(?P<h>" + _DOTS + rb")>"
    rb"|(?P<bl>" + _DOTS + rb")@(?P<bh>" + _DOTS + rb"))"
    rb"[ \t]*(?:,|\Z)"
)
_BLANKS = re.compile(rb"[ \t]+")


def _simple_addresses(raw: bytes) -> list[Address] | None:
    out: list[Address] = []
    pos, n = 0, len(raw)
    match = _SIMPLE.match
    while pos < n:
        m = match(raw, pos)
        if m is None:
            return None
        local = m.group("l")
        if local is None:
            out.append(Address(None, None, m.group("bl"), m.group("bh")))
        else:
            name = m.group("q")
            if name is None:
                name = m.group("p")
                if name is not None and (b"\t" in name or b"  " in name):
                    name = _BLANKS.sub(b" ", name)  # as _join_words spaces the words
            out.append(Address(name or None, None, local, m.group("h")))
        pos = m.end()
    return out


def parse_addresses(raw: bytes | str | None) -> list[Address]:
    """Addresses of an address-list header (From, To, Cc, ...), leniently.

    Groups become a start marker, their members, and an end marker (see
    Address); an unterminated group is closed at the end. Empty elements,
    lone comments and stray ";" are skipped; a comment stands in for a
    missing display name (user@host (Real Name)). Never raises.
    """
    if not raw:
        return []
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    simple = _simple_addresses(raw)
    return simple if simple is not None else _parse_address_list(raw)


def _parse_address_list(raw: bytes) -> list[Address]:
    out: list[Address] = []
    item: list[_Token] = []
    in_group = False
    angle = 0
    has_addr = False  # "<" or "@" seen in this item: a ":" is then a route

    def flush() -> None:
        nonlocal has_addr, angle
        if item:
            addr = _mailbox(item)
            if addr is not None:
                out.append(addr)
            item.clear()
        has_addr = False
        angle = 0

    for tok in _address_tokens(raw):
        kind = tok[0]
        if angle == 0:
            if kind == ",":
                flush()
                continue
            if kind == ";":
                flush()
                if in_group:
                    out.append(GROUP_END)
                    in_group = False
                continue
            if kind == ":" and not in_group and not has_addr:
                out.append(Address(None, None, _join_words(item), None))
                item.clear()
                in_group = True
                continue
        if kind == "<":
            angle += 1
            has_addr = True
        elif kind == ">":
            angle = max(angle - 1, 0)
        elif kind == "@":
            has_addr = True
        item.append(tok)
    flush()
    if in_group:
        out.append(GROUP_END)
    return out
