"""The client side of ESMTP's rules, without I/O: what a server offers, what to ask of it.

EHLO keywords (RFC 5321 4.1.1.1), MAIL parameters for SIZE (RFC 1870),
8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531), and the SASL responses for
AUTH PLAIN (RFC 4616) and LOGIN.
"""

from __future__ import annotations

import base64

from mta.relay.replies import Reply


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """'250-SIZE 1000' ... -> {'SIZE': '1000', ...}; the first line is the greeting."""
    out = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            out[keyword.upper()] = params.strip()
    return out


def size_limit(extensions: dict[str, str]) -> int:
    """The server's SIZE limit in bytes; 0 when it states none."""
    value = extensions.get("SIZE", "")
    return int(value) if value.isdigit() else 0


def auth_mechanisms(extensions: dict[str, str]) -> set[str]:
    return {m.upper() for m in extensions.get("AUTH", "").split()}


def _non_ascii(data: bytes | str) -> bool:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return not raw.isascii()


def header_section(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def needs_smtputf8(sender: str, recipients: list[str], message: bytes) -> bool:
    """Whether the mail cannot be sent without SMTPUTF8: UTF-8 in an address or a header."""
    return (_non_ascii(sender) or any(_non_ascii(r) for r in recipients)
            or _non_ascii(header_section(message)))


def mail_command(sender: str, extensions: dict[str, str], size: int, body_8bit: bool,
                 smtputf8: bool) -> str:
    params = ""
    if "SIZE" in extensions:
        params += f" SIZE={size}"
    if body_8bit and "8BITMIME" in extensions:
        params += " BODY=8BITMIME"
    if smtputf8 and "SMTPUTF8" in extensions:
        params += " SMTPUTF8"
    return f"MAIL FROM:<{sender}>{params}"


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8")).decode("ascii")


def auth_plain(user: str, password: str) -> str:
    return f"AUTH PLAIN {_b64(chr(0) + user + chr(0) + password)}"


def auth_login(user: str, password: str) -> list[str]:
    """The command and the two answers to the server's 334 prompts."""
    return ["AUTH LOGIN", _b64(user), _b64(password)]
