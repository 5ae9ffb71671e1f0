"""No control characters in HELO, EHLO, LHLO, MAIL FROM and RCPT TO arguments.

What a client says in these commands goes into the headers we write: the
EHLO name into Received, MAIL FROM into Return-Path, RCPT TO into Received
and Delivered-To. A bare CR there would start a new header line above our
own when a reader takes CR for a line end (a forged Authentication-Results
over our Received). RFC 5321 allows no control character in any of them:
not CR, LF, NUL or DEL, and not TAB either (the grammar has SP only, and
quoted local parts allow %d32-126). So such a command is answered
`501 5.5.2` and changes nothing.

How aiosmtpd 1.4.6 reads a command line (SMTP._handle_client): it reads up
to an LF, so a bare LF ends the command and what follows is the next
command; it strips every trailing CR and LF, then splits off the verb at
the first space and strips ASCII white space (SP, TAB, CR, LF, VT, FF) from
both ends of the argument. A CR, a TAB or another control character inside
the argument is kept and handed to smtp_<VERB>: that is what is refused
here, before aiosmtpd parses the argument.
"""

from __future__ import annotations

import functools

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

_NAMES = {0x00: "NUL", 0x09: "TAB", 0x0A: "LF", 0x0D: "CR", 0x7F: "DEL"}


def control_character(arg: str | None) -> str | None:
    """The name of the first C0 control character or DEL in arg, else None."""
    for ch in arg or "":
        code = ord(ch)
        if code < 0x20 or code == 0x7F:
            return _NAMES.get(code, f"0x{code:02X}")
    return None


def refusal(verb: str, arg: str | None) -> str | None:
    """The reply to a command whose argument holds a control character, else None."""
    bad = control_character(arg)
    if bad is None:
        return None
    return f"501 5.5.2 Syntax error: control character ({bad}) in {verb}"


class CleanArgsMixin:
    """Refuses HELO, EHLO, MAIL and RCPT arguments with a control character."""

    async def _clean(self, verb: str, arg: str | None) -> bool:
        reply = refusal(verb, arg)
        if reply is not None:
            await self.push(reply)  # type: ignore[attr-defined]
        return reply is None

    @functools.wraps(SMTP.smtp_HELO)
    async def smtp_HELO(self, hostname: str) -> None:
        if await self._clean("HELO", hostname):
            await super().smtp_HELO(hostname)  # type: ignore[misc]

    @functools.wraps(SMTP.smtp_EHLO)
    async def smtp_EHLO(self, hostname: str) -> None:
        if await self._clean("EHLO", hostname):
            await super().smtp_EHLO(hostname)  # type: ignore[misc]

    @functools.wraps(SMTP.smtp_MAIL)
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self._clean("MAIL", arg):
            await super().smtp_MAIL(arg)  # type: ignore[misc]

    @functools.wraps(SMTP.smtp_RCPT)
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self._clean("RCPT", arg):
            await super().smtp_RCPT(arg)  # type: ignore[misc]


class CleanLMTPArgsMixin(CleanArgsMixin):
    """The same for LMTP, whose greeting is LHLO (a mixin of its own: a
    smtp_LHLO method would add an LHLO command to SMTP)."""

    @functools.wraps(LMTP.smtp_LHLO)
    async def smtp_LHLO(self, hostname: str) -> None:
        if await self._clean("LHLO", hostname):
            await super().smtp_LHLO(hostname)  # type: ignore[misc]
