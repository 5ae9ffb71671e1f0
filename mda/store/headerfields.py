"""Header field values: RFC 2047 encoded words and MIME parameters.

Each helper takes the unfolded raw value of one field (bytes, as `message.Part.get`
returns it) and never raises: mail in the wild breaks every rule, and a field we
cannot read must cost the client one field, not the whole message.

Values that IMAP sends back on the wire (parameter values, address parts) stay
bytes, so 8-bit data reaches the client exactly as it was received; only the
helpers that produce text for people (`decode_header_text`, `Param.value`)
decode.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

__all__ = [
    "Param",
    "decode_bytes",
    "decode_header_text",
    "parse_content_type",
    "parse_disposition",
    "parse_language",
    "parse_token",
    "skip_comment",
    "unquote",
]

# Labels seen in real mail that Python does not know, or knows by a narrower
# codec than the senders meant (GB2312 mail is routinely GBK/GB18030).
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    "unicode-1-1-utf-7": "utf-7",
    "x-mac-roman": "mac_roman",
}


def _decode_guess(raw: bytes) -> str:
    # Unlabelled 8-bit text is UTF-8 (RFC 6532) or, in older mail, almost
    # always Windows-1252.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def decode_bytes(raw: bytes, charset: str | None) -> str:
    """`raw` decoded as `charset`; an unknown, non-text or failing charset falls
    back to UTF-8, then Windows-1252. Never raises."""
    if charset:
        name = charset.strip().lower()
        name = _CHARSET_ALIASES.get(name, name)
        try:
            info = codecs.lookup(name)
        except (LookupError, ValueError):
            info = None
        # bytes-to-bytes codecs (base64, zlib, ...) are not charsets.
        if info is not None and getattr(info, "_is_text_encoding", True):
            try:
                return raw.decode(info.name, "replace")
            except (LookupError, UnicodeError, ValueError, TypeError):
                pass
    return _decode_guess(raw)


# --- RFC 2047 -----------------------------------------------------------------

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


def _b64decode(text: bytes) -> bytes:
    text = _NOT_BASE64.sub(b"", text)
    if len(text) % 4 == 1:  # one stray character cannot encode anything
        text = text[:-1]
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


def decode_header_text(raw: bytes | str | None) -> str:
    """Text of an unstructured header value (Subject, a display name) with its
    RFC 2047 encoded words decoded.

    Whitespace between adjacent encoded words is dropped (RFC 2047 6.2), and
    adjacent words in one charset are decoded together, so a multi-byte
    character split across two words survives. Bytes outside encoded words
    are read as UTF-8, else Windows-1252. Encoded words glued to other text
    are decoded too, as most mail readers do. Never raises.
    """
    if raw is None:
        return ""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if b"\n" in raw:
        raw = _FOLD.sub(b"", raw)
    if b"=?" not in raw:
        return _decode_guess(raw)
    out: list[str] = []
    run_charset: str | None = None
    run: list[bytes] = []
    pos = 0

    def flush() -> None:
        nonlocal run_charset
        if run:
            out.append(decode_bytes(b"".join(run), run_charset))
            run.clear()
        run_charset = None

    for m in _ENCODED_WORD.finditer(raw):
        gap = raw[pos : m.start()]
        if not (run and not gap.strip(b" \t\r\n")):
            flush()
            if gap:
                out.append(_decode_guess(gap))
        # RFC 2231 section 5 lets a language ride on the charset: utf-8*en
        charset = m.group(1).split(b"*", 1)[0].decode("ascii", "replace").lower()
        text = m.group(3)
        if m.group(2) in b"Qq":
            data = binascii.a2b_qp(text, header=True)
        else:
            data = _b64decode(text)
        if run and charset != run_charset:
            flush()
        run_charset = charset
        run.append(data)
        pos = m.end()
    flush()
    if pos < len(raw):
        out.append(_decode_guess(raw[pos:]))
    return "".join(out)


# --- MIME values (RFC 2045, 2183, 2231, 3282) ---------------------------------

_MIME_TOKEN = re.compile(rb'[^\x00-\x20()<>@,;:\\"/\[\]?=\x7f]+')
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"?', re.S)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)
_SECTION = re.compile(r"^(.*?)(?:\*([0-9]+))?(\*)?$", re.S)


def skip_comment(s: bytes, i: int, n: int) -> int:
    # s[i] is "(": comments nest and may hold quoted pairs (RFC 5322 3.2.2).
    depth = 0
    while i < n:
        c = s[i]
        if c == 0x5C:  # backslash
            i += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_cfws(s: bytes, i: int, n: int) -> int:
    while i < n:
        c = s[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x28:
            i = skip_comment(s, i, n)
        else:
            break
    return i


def unquote(inner: bytes) -> bytes:
    return _QUOTED_PAIR.sub(rb"\1", inner) if b"\\" in inner else inner


class Param(NamedTuple):
    """One parameter of Content-Type or Content-Disposition.

    name: attribute, lower case, without RFC 2231 "*" and section suffixes.
    value: decoded text (RFC 2231 charset applied, continuations joined; an
        RFC 2047 encoded word in a plain value, as some mailers write
        filenames, is decoded too).
    raw: bytes to show a protocol client: the unquoted value as written for a
        plain parameter, the UTF-8 of `value` for an RFC 2231 extended one.
    charset, language: from an RFC 2231 extended value, else None.
    """

    name: str
    value: str
    raw: bytes
    charset: str | None = None
    language: str | None = None


def _read_value(s: bytes, i: int, n: int) -> tuple[bytes, int]:
    # A parameter value: a quoted string, or a token. Real mail also has
    # unquoted values with spaces or tspecials (name=my file.pdf,
    # boundary=----=_Part_1), so an unquoted value runs to the next ";".
    if i < n and s[i] == 0x22:
        m = _QUOTED.match(s, i)
        return unquote(m.group(1)), m.end()
    start = i
    m = _MIME_TOKEN.match(s, i)
    tok = m.group() if m else b""
    j = _skip_cfws(s, m.end() if m else i, n)
    if j >= n or s[j] == 0x3B:
        return tok, j
    semi = s.find(b";", j)
    if semi < 0:
        semi = n
    return s[start:semi].rstrip(b" \t"), semi


def _raw_params(s: bytes, i: int, n: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    while True:
        i = _skip_cfws(s, i, n)
        if i >= n:
            return out
        if s[i] == 0x3B:
            i += 1
            continue
        m = _MIME_TOKEN.match(s, i)
        j = _skip_cfws(s, m.end(), n) if m else i
        if not m or j >= n or s[j] != 0x3D:  # no "attr=": skip to the next ";"
            semi = s.find(b";", i + 1)
            if semi < 0:
                return out
            i = semi + 1
            continue
        value, i = _read_value(s, _skip_cfws(s, j + 1, n), n)
        out.append((m.group().lower().decode("latin-1"), value))


def _split_extended(value: bytes) -> tuple[str | None, str | None, bytes]:
    # charset'language'percent-encoded (RFC 2231 section 4)
    parts = value.split(b"'", 2)
    if len(parts) != 3:
        return None, None, value
    charset = parts[0].decode("latin-1") or None
    language = parts[1].decode("latin-1") or None
    return charset, language, parts[2]


def _merge_params(raw: list[tuple[str, bytes]]) -> list[Param]:
    # Group by base name in order of first appearance; RFC 2231 says a reader
    # that understands extended values prefers them, so name*= wins over a
    # plain name= (Outlook sends both, the plain one 2047-encoded).
    order: list[str] = []
    plain: dict[str, bytes] = {}
    single_ext: dict[str, bytes] = {}
    sections: dict[str, dict[int, tuple[bool, bytes]]] = {}
    for attr, value in raw:
        m = _SECTION.match(attr)
        base, num, star = m.group(1), m.group(2), m.group(3)
        if not base:
            continue
        if base not in plain and base not in single_ext and base not in sections:
            order.append(base)
        if num is not None:
            sections.setdefault(base, {}).setdefault(int(num), (bool(star), value))
        elif star:
            single_ext.setdefault(base, value)
        else:
            plain.setdefault(base, value)
    out: list[Param] = []
    for base in order:
        if base in single_ext:
            charset, language, data = _split_extended(single_ext[base])
            text = decode_bytes(unquote_to_bytes(data), charset)
            out.append(Param(base, text, text.encode("utf-8"), charset, language))
        elif base in sections:
            charset = language = None
            chunks = []
            for k, (num, (extended, value)) in enumerate(sorted(sections[base].items())):
                if extended:
                    if k == 0 and num == 0:
                        charset, language, value = _split_extended(value)
                    value = unquote_to_bytes(value)
                chunks.append(value)
            data = b"".join(chunks)
            if charset is None and not any(e for e, _ in sections[base].values()):
                out.append(Param(base, _plain_text(data), data))
            else:
                text = decode_bytes(data, charset)
                out.append(Param(base, text, text.encode("utf-8"), charset, language))
        else:
            data = plain[base]
            out.append(Param(base, _plain_text(data), data))
    return out


def _plain_text(data: bytes) -> str:
    return decode_header_text(data) if b"=?" in data else _decode_guess(data)


def parse_content_type(raw: bytes | None) -> tuple[str, str, list[Param]] | None:
    """(type, subtype, params) of a Content-Type value, type and subtype in lower
    case; None when absent or without a type/subtype (RFC 2045 5.2 then says
    text/plain; charset=us-ascii, which the caller applies)."""
    if raw is None:
        return None
    s, n = raw, len(raw)
    i = _skip_cfws(s, 0, n)
    m = _MIME_TOKEN.match(s, i)
    if not m:
        return None
    j = _skip_cfws(s, m.end(), n)
    if j >= n or s[j] != 0x2F:  # "/"
        return None
    m2 = _MIME_TOKEN.match(s, _skip_cfws(s, j + 1, n))
    if not m2:
        return None
    ctype = m.group().lower().decode("latin-1")
    subtype = m2.group().lower().decode("latin-1")
    return ctype, subtype, _merge_params(_raw_params(s, m2.end(), n))


def parse_disposition(raw: bytes | None) -> tuple[str, list[Param]] | None:
    """(disposition type in lower case, params) of Content-Disposition, or None."""
    if raw is None:
        return None
    n = len(raw)
    m = _MIME_TOKEN.match(raw, _skip_cfws(raw, 0, n))
    if not m:
        return None
    return m.group().lower().decode("latin-1"), _merge_params(_raw_params(raw, m.end(), n))


def parse_token(raw: bytes | None) -> str | None:
    """The leading MIME token of a value in lower case (Content-Transfer-Encoding),
    or None when there is none."""
    if raw is None:
        return None
    m = _MIME_TOKEN.match(raw, _skip_cfws(raw, 0, len(raw)))
    return m.group().lower().decode("latin-1") if m else None


def parse_language(raw: bytes | None) -> list[str] | None:
    """Language tags of Content-Language (RFC 3282), as written; None if none."""
    if raw is None:
        return None
    tags: list[str] = []
    n = len(raw)
    i = 0
    while i < n:
        i = _skip_cfws(raw, i, n)
        m = _MIME_TOKEN.match(raw, i)
        if m:
            tags.append(m.group().decode("latin-1"))
            i = m.end()
        comma = raw.find(b",", i)
        if comma < 0:
            break
        i = comma + 1
    return tags or None
