"""HELP answered 214, as RFC 5321 4.1.1.8 and 4.2.3 say (aiosmtpd says 250).

The text stays aiosmtpd's ("Supported commands: ...", "Syntax: ..."); an
unknown topic keeps its 501. Put before EnhancedCodesMixin so that the 214
gets its 2.0.0.
"""

from __future__ import annotations

import functools
from typing import AnyStr

from aiosmtpd.smtp import SMTP


class HelpMixin:
    _help_reply = False

    async def push(self, status: AnyStr) -> None:
        if self._help_reply:
            if isinstance(status, bytes):
                status = status.decode("utf-8", "surrogateescape")  # type: ignore[assignment]
            if status.startswith("250 "):  # type: ignore[arg-type]
                status = "214 " + status[4:]  # type: ignore[assignment,operator]
        await super().push(status)  # type: ignore[misc]

    @functools.wraps(SMTP.smtp_HELP)
    async def smtp_HELP(self, arg: str) -> None:
        self._help_reply = True
        try:
            await super().smtp_HELP(arg)  # type: ignore[misc]
        finally:
            self._help_reply = False
