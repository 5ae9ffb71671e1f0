"""Modified UTF-7 (RFC 3501 section 5.1.3): the one copy of the encoding.

IMAP speaks folder names in it on the wire (mda/imap), and the store writes
each level of a Maildir++ directory name and of the `subscriptions` file in
it, as Dovecot does (mda/store/names.py, subscriptions.py); mda-ctl shows
the decoded names. It lives in common/ because it is pure text with no
I/O: the IMAP parser may use it without importing the store, and the store
without importing a protocol.

Decoding is strict: it accepts exactly the strings `encode` produces, so a
name has one wire form and one directory, and two clients can never create
"the same" folder under two spellings.
"""

from __future__ import annotations

import binascii

# Printable US-ASCII stands for itself; everything else is shifted.
_DIRECT = frozenset(range(0x20, 0x7F))
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


class UTF7Error(ValueError):
    """A mailbox name that is not valid modified UTF-7."""


def encode(name: str) -> str:
    """A Unicode mailbox name -> its ASCII wire form."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.append("&" + _b64encode("".join(pending)) + "-")
            pending.clear()

    for ch in name:
        if ord(ch) in _DIRECT:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _b64encode(text: str) -> str:
    try:
        raw = text.encode("utf-16-be")
    except UnicodeEncodeError:
        raise UTF7Error("a mailbox name cannot hold a lone surrogate") from None
    return binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",").decode()


def decode(wire: str | bytes) -> str:
    """The wire form -> the Unicode name; UTF7Error when it is not canonical."""
    if isinstance(wire, str):
        if not wire.isascii():
            bad = next(i for i, ch in enumerate(wire) if not ch.isascii())
            raise UTF7Error(f"character {wire[bad]!r} at {bad} is not printable US-ASCII")
        data = wire.encode("ascii")
    else:
        data = bytes(wire)
    out: list[str] = []
    i = 0
    after_shift = False
    while i < len(data):
        c = data[i]
        if c not in _DIRECT:
            raise UTF7Error(f"byte 0x{c:02x} at {i} is not printable US-ASCII")
        if c != ord("&"):
            out.append(chr(c))
            after_shift = False
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise UTF7Error(f"the shift at {i} is never ended by '-'")
        if end == i + 1:
            out.append("&")
            after_shift = False
            i = end + 1
            continue
        if after_shift:
            # Two shifted runs side by side must have been written as one.
            raise UTF7Error(f"the shift at {i} directly follows another")
        out.append(_b64decode(data[i + 1 : end], i))
        after_shift = True
        i = end + 1
    return "".join(out)


def _b64decode(chunk: bytes, at: int) -> str:
    bad = next((b for b in chunk if b not in _B64_ALPHABET), None)
    if bad is not None:
        raise UTF7Error(f"byte {chr(bad)!r} in the shift at {at} is not modified base64")
    bits = 6 * len(chunk)
    # Whole UTF-16 units, then fewer than 6 padding bits, which must be zero.
    if bits % 16 >= 6:
        raise UTF7Error(f"the shift at {at} does not end on a UTF-16 unit")
    padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        raise UTF7Error(f"the shift at {at} is not valid base64") from None
    if len(raw) % 2:
        raise UTF7Error(f"the shift at {at} does not end on a UTF-16 unit")
    # Non-zero padding bits would let two strings decode to one name.
    if _b64encode_raw(raw) != chunk:
        raise UTF7Error(f"the shift at {at} has non-zero padding bits")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise UTF7Error(f"the shift at {at} holds an unpaired surrogate") from None
    if any(ord(ch) in _DIRECT for ch in text):
        raise UTF7Error(f"the shift at {at} encodes a character that stands for itself")
    return text


def _b64encode_raw(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",")
