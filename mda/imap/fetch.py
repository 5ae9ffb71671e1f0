"""FETCH data of one message: ENVELOPE, BODY, BODYSTRUCTURE and BODY[section].

Pure functions from a `mda.store.message` tree to the bytes IMAP sends
(RFC 3501 6.4.5 and 7.4.2; RFC 9051 for message/global). No I/O and no
session state: the session decides which items to send and frames them.

Strings go out quoted when every byte is printable US-ASCII (0x20-0x7E),
with `"` and `\\` escaped; otherwise (CR, LF, TAB, 8-bit) as a literal
`{n}\\r\\n...`. NUL cannot travel in an IMAP string and is dropped.
Tokens (type, subtype, encoding, disposition, parameter names) are sent in
upper case, as in RFC 3501's examples; values as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mda.store.headerscan import HeaderFields
from mda.store.message import Param, Part, crlf, parse_addresses

__all__ = [
    "ENVELOPE_FIELDS",
    "body",
    "bodystructure",
    "envelope",
    "find_part",
    "nstring",
    "partial",
    "section",
]

NIL = b"NIL"
# The header fields `envelope` reads.
ENVELOPE_FIELDS = ("date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
                   "in-reply-to", "message-id")
_NEEDS_LITERAL = re.compile(rb"[^\x20-\x7e]")
# RFC 3501 requires at least one body in a multipart; for one without parts
# clients get an empty text/plain, as Dovecot sends.
_EMPTY_BODY = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0'
_TEXT_SPECS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")


def nstring(value: bytes | str | None) -> bytes:
    """An IMAP nstring: NIL, a quoted string or a literal (see the module doc)."""
    if value is None:
        return NIL
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    # NUL is not printable: only a value that needs a literal can hold one.
    if _NEEDS_LITERAL.search(value) is not None and b"\0" in value:
        value = value.replace(b"\0", b"")
    if _NEEDS_LITERAL.search(value) is None:
        if b"\\" in value or b'"' in value:
            value = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + value + b'"'
    return b"{%d}\r\n" % len(value) + value


def _token(value: str) -> bytes:
    # MIME tokens were read as latin-1, so this gives back the bytes as sent;
    # only ASCII letters change case.
    return nstring(value.encode("latin-1", "replace").upper())


# --- ENVELOPE -----------------------------------------------------------------


# Address lists recur (the user's own To:, regular correspondents' From:), and
# formatting one costs more than looking it up.
_ADDRESS_MEMO: dict[bytes, bytes] = {}
_ADDRESS_MEMO_MAX = 4096


def _address_list(raw: bytes | None) -> bytes:
    if not raw:
        return NIL
    found = _ADDRESS_MEMO.get(raw)
    if found is None:
        found = _format_addresses(raw)
        if len(_ADDRESS_MEMO) >= _ADDRESS_MEMO_MAX:
            _ADDRESS_MEMO.clear()
        _ADDRESS_MEMO[raw] = found
    return found


def _format_addresses(raw: bytes) -> bytes:
    addresses = parse_addresses(raw)
    if not addresses:
        return NIL
    out = [b"("]
    for a in addresses:
        if a.host is None:  # group start (mailbox = name) or end (all NIL)
            out.append(b"(NIL NIL " + nstring(a.mailbox) + b" NIL)")
        else:
            # A broken address must not look like a group (NIL host) or vanish;
            # Dovecot's placeholders are what clients have learned to show.
            out.append(
                b"("
                + nstring(a.name)
                + b" "
                + nstring(a.route)
                + b" "
                + nstring(a.mailbox or b"MISSING_MAILBOX")
                + b" "
                + nstring(a.host or b"MISSING_DOMAIN")
                + b")"
            )
    out.append(b")")
    return b"".join(out)


def envelope(msg: Part | HeaderFields) -> bytes:
    """The ENVELOPE of a message (the root Part, or Part.message, or its
    ENVELOPE_FIELDS read alone), with its parentheses: (date subject from
    sender reply-to to cc bcc in-reply-to message-id).

    Values are the first field of each name, unfolded but not decoded (RFC
    2047 words stay encoded; clients decode). An absent field is NIL, an
    empty one "". Sender and Reply-To default to From when absent or empty
    (RFC 3501 7.4.2); an address list with no addresses is NIL.
    """
    get = msg.get
    from_ = _address_list(get("from"))
    sender = _address_list(get("sender"))
    reply_to = _address_list(get("reply-to"))
    items = [
        nstring(get("date")),
        nstring(get("subject")),
        from_,
        from_ if sender == NIL else sender,
        from_ if reply_to == NIL else reply_to,
        _address_list(get("to")),
        _address_list(get("cc")),
        _address_list(get("bcc")),
        nstring(get("in-reply-to")),
        nstring(get("message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


# --- BODY and BODYSTRUCTURE ---------------------------------------------------


def _params(params: list[Param], default_charset: bool = False) -> bytes:
    items = []
    for p in params:
        items.append(_token(p.name))
        items.append(nstring(p.raw))
    if default_charset and not any(p.name == "charset" for p in params):
        # RFC 2045 5.2: text without a charset is US-ASCII; say so explicitly.
        items.append(b'"CHARSET" "US-ASCII"')
    return b"(" + b" ".join(items) + b")" if items else NIL


def _disposition(part: Part) -> bytes:
    if part.disposition is None:
        return NIL
    return b"(" + _token(part.disposition) + b" " + _params(part.disposition_params) + b")"


def _language(part: Part) -> bytes:
    if not part.language:
        return NIL
    return b"(" + b" ".join(nstring(t.encode("latin-1", "replace")) for t in part.language) + b")"


def _encapsulated(part: Part, global_is_message: bool) -> Part | None:
    # message/global is a message only to IMAP4rev2 clients (RFC 9051 7.5.2);
    # IMAP4rev1 grammar would read its envelope as garbage.
    if part.message is not None and (part.subtype == "rfc822" or global_is_message):
        return part.message
    return None


def _write(part: Part, out: list[bytes], ext: bool, global_is_message: bool) -> None:
    out.append(b"(")
    if part.is_multipart:
        if part.children:
            for child in part.children:
                _write(child, out, ext, global_is_message)
        else:
            out.append(_EMPTY_BODY + (b" NIL NIL NIL NIL)" if ext else b")"))
        out.append(b" " + _token(part.subtype))
        if ext:
            out.append(
                b" "
                + _params(part.params)
                + b" "
                + _disposition(part)
                + b" "
                + _language(part)
                + b" "
                + nstring(part.location)
            )
        out.append(b")")
        return
    out.append(
        _token(part.type)
        + b" "
        + _token(part.subtype)
        + b" "
        + _params(part.params, part.type == "text")
        + b" "
        + nstring(part.content_id)
        + b" "
        + nstring(part.description)
        + b" "
        + _token(part.encoding or "7bit")
        + b" %d" % part.size
    )
    inner = _encapsulated(part, global_is_message)
    if part.type == "text":
        out.append(b" %d" % part.lines)
    elif inner is not None:
        out.append(b" " + envelope(inner) + b" ")
        _write(inner, out, ext, global_is_message)
        out.append(b" %d" % part.lines)
    if ext:
        out.append(
            b" "
            + nstring(part.md5)
            + b" "
            + _disposition(part)
            + b" "
            + _language(part)
            + b" "
            + nstring(part.location)
        )
    out.append(b")")


def bodystructure(msg: Part, extensible: bool = True, *, global_is_message: bool = False) -> bytes:
    """BODYSTRUCTURE (extensible=True) or BODY (False) of a message, with its
    outer parentheses: send b"BODYSTRUCTURE " + bodystructure(msg).

    Sizes are octets of the CRLF form of each body, lines its CRLF count
    (text/* and message/rfc822). Set global_is_message for IMAP4rev2
    sessions, to describe message/global parts like message/rfc822.
    """
    out: list[bytes] = []
    _write(msg, out, extensible, global_is_message)
    return b"".join(out)


def body(msg: Part, *, global_is_message: bool = False) -> bytes:
    """The non-extensible BODY structure: bodystructure(msg, extensible=False)."""
    return bodystructure(msg, False, global_is_message=global_is_message)


# --- BODY[section] ------------------------------------------------------------


def find_part(msg: Part, part: Sequence[int], *, global_is_message: bool = False) -> Part | None:
    """The Part a section part number names (RFC 3501 6.4.5), or None.

    () is the message itself. In a multipart, n is its n-th child. A message
    that is not multipart has only part 1, its body (so 1 is the body of a
    single-part message). Below a message/rfc822 part, numbers count in its
    encapsulated message (2.1 is the first part of the message in 2). Any
    other part has no parts inside.
    """
    node = msg
    is_message = True  # node stands for a message, not (yet) a body part
    for n in part:
        if not is_message:
            inner = _encapsulated(node, global_is_message)
            if inner is not None:
                node = inner
            elif not node.is_multipart:
                return None
        if node.is_multipart:
            if not 1 <= n <= len(node.children):
                return None
            node = node.children[n - 1]
        elif n != 1:
            return None
        is_message = False
    return node


def section(
    msg: Part,
    part: Sequence[int] = (),
    text: str | None = None,
    fields: Sequence[str | bytes] | None = None,
    *,
    global_is_message: bool = False,
) -> bytes:
    """The bytes of BODY[section] (RFC 3501 6.4.5), in CRLF form.

    part: the part numbers, () for the whole message: BODY[1.2.TEXT] is
        part=(1, 2), text="TEXT".
    text: None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT" or
        "MIME" (any case).
    fields: the field names of HEADER.FIELDS[.NOT], required with them and
        ignored otherwise.

    part=() with text None is the whole message; with HEADER... and TEXT, the
    message's header or body. With a part: text None is that part's body
    (for a multipart, everything between its header and its end; for a
    message/rfc822 part, the whole encapsulated message); MIME is the part's
    own header block; HEADER..., TEXT apply to the message encapsulated in a
    message/rfc822 part and are empty for any other part. A part that does
    not exist gives b"". Header sections end with the blank line when the
    message has one. Raises ValueError for an unknown `text`, MIME without a
    part, or HEADER.FIELDS without `fields`; never for the message's content.
    """
    spec = text.upper() if text else None
    if spec is not None and spec not in _TEXT_SPECS:
        raise ValueError(f"unknown section text {text!r}")
    if spec == "MIME" and not part:
        raise ValueError("MIME needs a part number")
    if spec in ("HEADER.FIELDS", "HEADER.FIELDS.NOT") and fields is None:
        raise ValueError(f"{spec} needs field names")
    target: Part | None = msg
    if part:
        node = find_part(msg, part, global_is_message=global_is_message)
        if node is None:
            return b""
        if spec is None:
            return crlf(node.body)
        if spec == "MIME":
            return crlf(node.header)
        target = _encapsulated(node, global_is_message)
        if target is None:
            return b""
    elif spec is None:
        return crlf(msg.data[msg.start : msg.end])
    if spec == "HEADER":
        return crlf(target.header)
    if spec == "TEXT":
        return crlf(target.body)
    return crlf(target.header_text(fields, exclude=spec == "HEADER.FIELDS.NOT"))


def partial(data: bytes, start: int, count: int | None = None) -> bytes:
    """The <start.count> piece of a section: from octet `start`, at most `count`
    octets; empty when `start` is past the end (RFC 3501 6.4.5)."""
    if start >= len(data):
        return b""
    return data[start:] if count is None else data[start : start + count]
