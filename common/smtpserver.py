"""aiosmtpd's SMTP and LMTP with enhanced status codes and a graceful stop.

Both daemons serve the SMTP family with aiosmtpd; only its replies and its
connection bookkeeping are touched here, never its parsing.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

from common import log
from common.smtpargs import CleanArgsMixin, CleanLMTPArgsMixin
from common.smtpcodes import with_enhanced
from common.smtpdata import StreamingDataMixin
from common.smtphelp import HelpMixin


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
class MailSMTP(CleanArgsMixin, HelpMixin, EnhancedCodesMixin, SMTP):
    @functools.wraps(SMTP.smtp_EHLO)
    async def smtp_EHLO(self, hostname: str) -> None:
        await self._bare(super().smtp_EHLO, hostname)

    @functools.wraps(SMTP.smtp_HELO)
    async def smtp_HELO(self, hostname: str) -> None:
        await self._bare(super().smtp_HELO, hostname)


class MailLMTP(CleanLMTPArgsMixin, HelpMixin, EnhancedCodesMixin, LMTP):
    @functools.wraps(LMTP.smtp_LHLO)
    async def smtp_LHLO(self, hostname: str) -> None:
        await self._bare(super().smtp_LHLO, hostname)


class Sessions:
    """The open sessions of one server, so that a stop waits for transactions in flight.

    Stopping: no new connection is accepted; an idle session is closed at
    once with a 421; a session in a transaction is closed with a 421 when
    the transaction ends (its reply written first), or after the grace.
    """

    def __init__(self) -> None:
        self.open: set[GracefulMixin] = set()
        self.stopping = False
        # Retiring after a reload: the sessions end when their clients end them.
        self.draining = False
        self._all_closed = asyncio.Event()
        self._servers: list[asyncio.Server] = []

    def add_server(self, server: asyncio.Server) -> None:
        self._servers.append(server)

    def settled(self, session: GracefulMixin) -> None:
        if self.stopping and not self.draining and session.idle:
            session.shut()

    def closed(self, session: GracefulMixin) -> None:
        self.open.discard(session)
        if self.stopping and not self.open:
            self._all_closed.set()

    async def stop(self, grace: float, drain: bool = False) -> None:
        self.stopping = True
        self.draining = drain
        for server in self._servers:
            server.close()
        if not self.open:
            return
        for s in list(self.open):
            self.settled(s)
        try:
            await asyncio.wait_for(self._all_closed.wait(), grace)
        except TimeoutError:
            log.get().warning("closing sessions still busy at the end of the grace",
                              sessions=len(self.open))
            self.draining = False
            for s in list(self.open):
                if s.idle:
                    s.shut()
                else:
                    s.close()


class GracefulMixin:
    """Tells its Sessions when it is between transactions."""

    _in_data = False

    def __init__(self, handler: Any, *, sessions: Sessions, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)  # type: ignore[call-arg]
        self._sessions = sessions

    @property
    def idle(self) -> bool:
        envelope = self.envelope  # type: ignore[attr-defined]
        return not self._in_data and not (envelope and envelope.mail_from)

    def close(self) -> None:
        transport = self.transport  # type: ignore[attr-defined]
        if transport is not None:
            transport.close()  # replies already written are flushed first

    def shut(self) -> None:
        """Say why, then close: RFC 5321 4.2.2 lets a server end with 421."""
        transport = self.transport  # type: ignore[attr-defined]
        if transport is not None and not transport.is_closing():
            transport.write(b"421 4.3.2 Service shutting down, try again later\r\n")
        self.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        sessions = self._sessions
        if not sessions.stopping or sessions.draining:
            sessions.open.add(self)
        elif self._original_transport is None:  # type: ignore[attr-defined]
            self.shut()  # accepted just before the listener closed

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)  # type: ignore[misc]
        self._sessions.closed(self)

    @functools.wraps(SMTP.smtp_MAIL)
    async def smtp_MAIL(self, arg: str | None) -> None:
        if self._sessions.stopping and not self._sessions.draining:
            self.shut()
            return
        await super().smtp_MAIL(arg)  # type: ignore[misc]

    @functools.wraps(SMTP.smtp_RSET)
    async def smtp_RSET(self, arg: str) -> None:
        await super().smtp_RSET(arg)  # type: ignore[misc]
        self._sessions.settled(self)

    @functools.wraps(SMTP.smtp_DATA)
    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        try:
            await super().smtp_DATA(arg)  # type: ignore[misc]  # returns after the reply
        finally:
            self._in_data = False
            self._sessions.settled(self)


# DATA is streamed to the handler (common/smtpdata.py) on SMTP; LMTP keeps aiosmtpd's.
class GracefulSMTP(GracefulMixin, StreamingDataMixin, MailSMTP):
    pass


class GracefulLMTP(GracefulMixin, MailLMTP):
    pass
