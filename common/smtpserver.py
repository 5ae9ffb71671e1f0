"""aiosmtpd's SMTP and LMTP with enhanced status codes on every reply.

Both daemons serve the SMTP family with aiosmtpd; only its replies are
touched here, never its parsing.
"""

from __future__ import annotations

import functools
from typing import AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

from common.smtpcodes import with_enhanced


class EnhancedCodesMixin:
    # Set while a HELO/EHLO/LHLO answer is written: those lines stay bare.
    _greeting_reply = False

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, bytes):
            status = status.decode("utf-8", "surrogateescape")  # type: ignore[assignment]
        if not self._greeting_reply:
            status = with_enhanced(status)  # type: ignore[arg-type]
        await super().push(status)  # type: ignore[misc]

    async def _bare(self, method, arg):
        self._greeting_reply = True
        try:
            await method(arg)
        finally:
            self._greeting_reply = False


# functools.wraps keeps aiosmtpd's syntax attributes, which HELP lists.
class MailSMTP(EnhancedCodesMixin, SMTP):
    @functools.wraps(SMTP.smtp_EHLO)
    async def smtp_EHLO(self, hostname: str) -> None:
        await self._bare(super().smtp_EHLO, hostname)

    @functools.wraps(SMTP.smtp_HELO)
    async def smtp_HELO(self, hostname: str) -> None:
        await self._bare(super().smtp_HELO, hostname)


class MailLMTP(EnhancedCodesMixin, LMTP):
    @functools.wraps(LMTP.smtp_LHLO)
    async def smtp_LHLO(self, hostname: str) -> None:
        await self._bare(super().smtp_LHLO, hostname)
