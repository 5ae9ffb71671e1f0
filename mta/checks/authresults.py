"""The Authentication-Results header (RFC 8601): the one we add, the ones we remove.

    Authentication-Results: mail.example.org;
        spf=pass (example.com: ip4 matched) smtp.mailfrom=alice@example.com;
        dkim=pass header.d=example.com header.s=sel1 header.a=ed25519-sha256 header.b=Ab3dx9Qz;
        dmarc=pass (p=reject sp=quarantine) header.from=example.com;
        arc=none

`build` writes it, one result per folded line; property values are written
as RFC 8601's pvalue allows (a token, local-part@domain, or a quoted-string)
and comments are escaped, so nothing a sender or a DNS record chose can end
the field, open a new result or hide in a comment.

`authserv_id` reads the first item of a field (after comments and folding:
a token or a quoted-string), and `claiming` finds the fields that claim our
authserv-id: RFC 8601 section 5 has us remove those before adding ours, since
a sender could forge our verdicts. Both are pure; `authserv_id` raises only
`AuthResSyntaxError`, whatever the text (tests/unit/test_authresults.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from mta.checks.dmarc import DKIMResult, DMARCResult
from mta.checks.spf import SPFResult

__all__ = ["FIELD", "AuthResSyntaxError", "authserv_id", "build", "claiming", "comment",
           "pvalue", "remove_claiming"]

FIELD = "Authentication-Results"
RESULTS = {
    "spf": ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror", "policy"),
    "dkim": ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror"),
    "dmarc": ("none", "pass", "fail", "temperror", "permerror"),
    "arc": ("none", "pass", "fail"),
}
_TSPECIALS = set('()<>@,;:\\"/[]?=')
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\U0010ffff]+\Z")
_DOMAIN = re.compile(r"[A-Za-z0-9\x80-\U0010ffff]([A-Za-z0-9\-_\x80-\U0010ffff]*[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9\x80-\U0010ffff]([A-Za-z0-9\-_\x80-\U0010ffff]*"
                     r"[A-Za-z0-9])?)*\.?\Z")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
_WSP = " \t\r\n"


class AuthResSyntaxError(ValueError):
    """The field does not start with an authserv-id RFC 8601 can read."""


# -- writing ----------------------------------------------------------------------------

def _is_token(v: str) -> bool:
    """RFC 2045's token (and, as RFC 8616 allows, UTF-8 beyond ASCII)."""
    return bool(v) and all(c > " " and c != "\x7f" and c not in _TSPECIALS for c in v)


def _dot_atom(v: str) -> bool:
    return bool(v) and all(_ATEXT.match(p) for p in v.split("."))


def _quoted(v: str) -> str:
    v = _CONTROLS.sub("", v)  # a field cannot carry them: dropped, not escaped
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pvalue(v: str) -> str:
    """A property's value as RFC 8601 2.2 writes it: token, [local-part]@domain, or quoted."""
    if _is_token(v):
        return v
    local, at, domain = v.rpartition("@")
    if at and _DOMAIN.match(domain):
        return (local if not local or _dot_atom(local) else _quoted(local)) + "@" + domain
    return _quoted(v)


def comment(text: str) -> str:
    text = _CONTROLS.sub("", text)
    return "(" + re.sub(r"([()\\])", r"\\\1", text) + ")"


def _resinfo(method: str, result: str, note: str, props: Sequence[tuple[str, str]]) -> str:
    if result not in RESULTS[method]:
        raise ValueError(f"{method}={result} is not a result RFC 8601 registers")
    parts = [f"{method}={result}"]
    if note:
        parts.append(comment(note))
    parts += [f"{name}={pvalue(value)}" for name, value in props if value]
    return " ".join(parts)


def build(authserv: str, spf: SPFResult | None, dkim: Iterable[DKIMResult] = (),
          dmarc: DMARCResult | None = None, arc: str | None = None) -> bytes:
    """The whole field, folded, ending in CRLF; a check not given (None) is left out.

    No DKIM signature is "dkim=none" (RFC 8601 2.7.1); each signature gets its own result.
    """
    infos = []
    if spf is not None:
        prop = "smtp.mailfrom" if spf.identity == "mailfrom" else "smtp.helo"
        infos.append(_resinfo("spf", spf.result, spf.reason, [(prop, spf.sender)]))
    sigs = list(dkim)
    for sig in sigs:
        infos.append(_resinfo("dkim", sig.result, sig.reason,
                              [("header.d", sig.domain), ("header.s", sig.selector),
                               ("header.a", sig.algorithm), ("header.b", sig.b)]))
    if not sigs:
        infos.append("dkim=none")
    if dmarc is not None:
        note = ""
        if dmarc.record is not None:
            note = f"p={dmarc.record.p} sp={dmarc.record.sp or dmarc.record.p}"
        elif dmarc.result != "none":
            note = dmarc.reason
        infos.append(_resinfo("dmarc", dmarc.result, note,
                              [("header.from", dmarc.from_domain)]))
    if arc is not None:
        infos.append(_resinfo("arc", arc, "", []))
    # The authserv-id is RFC 2045's value: a token or a quoted-string, no bare "@".
    head = f"{FIELD}: {authserv if _is_token(authserv) else _quoted(authserv)}"
    return (";\r\n\t".join([head, *infos]) + "\r\n").encode("utf-8")


# -- reading ----------------------------------------------------------------------------

def _skip_cfws(v: str, i: int) -> int:
    """Past folding white space and (nested) comments, with their quoted-pairs."""
    while i < len(v):
        if v[i] in _WSP:
            i += 1
        elif v[i] == "(":
            depth = 0
            while True:
                if i >= len(v):
                    raise AuthResSyntaxError("unterminated comment")
                c = v[i]
                if c == "\\":
                    i += 2
                    continue
                depth += (c == "(") - (c == ")")
                i += 1
                if depth == 0:
                    break
        else:
            break
    return i


def _quoted_string(v: str, i: int) -> tuple[str, int]:
    out = []
    i += 1
    while i < len(v):
        c = v[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= len(v):
                break
            out.append(v[i + 1])
            i += 2
            continue
        if c not in "\r\n":  # folding inside the string is not part of its value
            out.append(c)
        i += 1
    raise AuthResSyntaxError("unterminated quoted-string")


def authserv_id(value: str) -> str:
    """The authserv-id a field's value starts with (RFC 8601 2.2)."""
    i = _skip_cfws(value, 0)
    if value[i:i + 1] == '"':
        found, i = _quoted_string(value, i)
    else:
        start = i
        while i < len(value) and value[i] > " " and value[i] not in _TSPECIALS \
                and value[i] != "\x7f":
            i += 1
        found = value[start:i]
    if not found:
        raise AuthResSyntaxError(f"no authserv-id in {value[:40]!r}")
    # The id ends at white space, a comment, ";" or the end: not inside a longer word.
    if i < len(value) and value[i] not in _WSP + "(;":
        raise AuthResSyntaxError(f"bad character {value[i]!r} after the authserv-id")
    return found


def _same(found: str, ours: str) -> bool:
    # Host names are case-insensitive; a trailing dot names the same host.
    return found.rstrip(".").casefold() == ours.rstrip(".").casefold()


def claiming(fields: Iterable[tuple[str, str]], ours: str) -> list[int]:
    """Indexes of the Authentication-Results fields whose authserv-id is ours.

    A field we cannot read is left in place: it claims no authserv-id, so no
    reader will take it for ours.
    """
    found = []
    for n, (name, value) in enumerate(fields):
        if name.strip(" \t").lower() != FIELD.lower():
            continue
        try:
            if _same(authserv_id(value), ours):
                found.append(n)
        except AuthResSyntaxError:
            continue
    return found


def _split_fields(raw: bytes) -> list[bytes]:
    """A header section's fields, each with its continuation lines and line ends."""
    fields: list[bytes] = []
    for line in raw.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def remove_claiming(raw: bytes, ours: str) -> bytes:
    """A header section (bytes, up to its empty line) without the fields claiming us."""
    fields = _split_fields(raw)
    pairs = []
    for f in fields:
        name, _, value = f.partition(b":")
        pairs.append((name.decode("latin-1"), value.decode("utf-8", "replace")))
    drop = set(claiming(pairs, ours))
    return b"".join(f for n, f in enumerate(fields) if n not in drop)
