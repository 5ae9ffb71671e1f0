"""SASL PLAIN and LOGIN responses (RFC 4616), parsed without I/O.

SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH carry the same base64 blobs.
"""

from __future__ import annotations

import base64
import binascii


class SASLError(ValueError):
    """The client's response is not what the mechanism allows."""


def decode(response: str | bytes) -> bytes:
    try:
        return base64.b64decode(response, validate=True)
    except (binascii.Error, ValueError):
        raise SASLError("cannot decode the base64 response") from None


def parse_plain(blob: bytes) -> tuple[str, str, str]:
    """authzid NUL authcid NUL password -> the three, as text."""
    parts = blob.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise SASLError("a PLAIN response is authzid NUL user NUL password")
    authzid, user, password = (p.decode("utf-8", "surrogateescape") for p in parts)
    return authzid, user, password
