"""Enhanced status codes (RFC 3463, RFC 2034) for replies that lack one.

aiosmtpd answers many commands with a bare code ("250 OK", "503 Error: need
RCPT command"); once ENHANCEDSTATUSCODES is offered every reply but the
greeting, the EHLO lines and 354/334 must carry one. This table gives each
basic code the enhanced code a client expects for it.
"""

from __future__ import annotations

import re

_DEFAULTS = {
    "211": "2.0.0", "214": "2.0.0", "221": "2.0.0", "235": "2.7.0", "250": "2.0.0",
    "251": "2.1.5", "252": "2.5.0",
    "421": "4.3.0", "432": "4.7.12", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1",
    "454": "4.7.0", "455": "4.5.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "521": "5.3.2", "530": "5.7.0", "534": "5.7.9", "535": "5.7.8", "538": "5.7.11",
    "550": "5.1.1", "551": "5.1.6", "552": "5.3.4", "553": "5.1.3", "554": "5.7.1",
    "555": "5.5.4",
}
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(\s|$)")
# Replies that never carry an enhanced code.
_BARE = ("220", "334", "354")


def with_enhanced(reply: str) -> str:
    """'503 Error: need RCPT command' -> '503 5.5.1 Error: need RCPT command'."""
    code = reply[:3]
    if code in _BARE or len(reply) < 3 or _HAS_ENHANCED.match(reply):
        return reply
    enhanced = _DEFAULTS.get(code)
    if enhanced is None or not code.isdigit():
        return reply
    sep = reply[3:4] or " "
    text = reply[4:]
    return f"{code}{sep}{enhanced} {text}".rstrip()


def is_positive(reply: str) -> bool:
    return reply[:1] == "2"


def is_transient(reply: str) -> bool:
    return reply[:1] == "4"
