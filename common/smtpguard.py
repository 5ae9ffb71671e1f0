"""What one SMTP client may cost: connections, time before AUTH, commands that move no mail.

- Connections: each smtp process counts its clients' connections
  (common/connlimits.py); one over a cap is told 421 and closed before
  the greeting.
- Submission: AUTH must succeed within limits.login_timeout of connecting,
  whatever the client sends meanwhile (aiosmtpd's own timeout restarts with
  every command).
- Junk: NOOP, RSET, VRFY and HELP beyond limits.junk_commands in one
  session end it (Postfix smtpd_junk_command_limit); so do ERROR_LIMIT
  protocol errors (500 to 504 replies: unknown commands, bad syntax, bad
  sequence), as Postfix smtpd_hard_error_limit = 20. Both counts start
  again after a message is accepted, as Postfix forgives a client then.
  (aiosmtpd itself closes after five unknown commands.)
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from common import connlimits
from common.smtpserver import GracefulSMTP

ERROR_LIMIT = 20
JUNK = frozenset({"NOOP", "RSET", "VRFY", "HELP"})


class CommandCounter:
    """The junk and error counts of one session (no I/O)."""

    def __init__(self, junk_limit: int, error_limit: int = ERROR_LIMIT) -> None:
        self.junk_limit = junk_limit
        self.error_limit = error_limit
        self.junk = 0
        self.errors = 0

    def command(self, verb: str) -> bool:
        """True when this command is one junk command too many."""
        if verb.upper() not in JUNK:
            return False
        self.junk += 1
        return self.junk > self.junk_limit

    def reply(self, code: str) -> bool:
        """True when this reply was the error that reaches the limit."""
        if code in ("500", "501", "502", "503", "504"):
            self.errors += 1
            return self.errors >= self.error_limit
        return False

    def accepted(self) -> None:
        """A message was accepted: what went before is forgiven."""
        self.junk = self.errors = 0


@dataclass
class Guard:
    """What the sessions of one listener are held to."""

    gate: connlimits.Gate  # one per process, shared by its listeners
    hostname: str
    listener: str
    junk_commands: int
    login_timeout: float | None = None  # submission: AUTH within this many seconds

    def refusal(self, reason: str) -> bytes:
        text = ("Too many connections from your address" if reason == connlimits.PER_CLIENT
                else "Too many connections, try again later")
        return f"421 4.7.0 {self.hostname} {text}\r\n".encode()


def _junk(name: str):
    method = getattr(SMTP, "smtp_" + name)

    @functools.wraps(method)  # keeps aiosmtpd's syntax attributes, which HELP lists
    async def counted(self: GuardMixin, arg: str) -> None:
        if self._counter.command(name):
            await self._cut_off("Error: too many commands")
            return
        await getattr(super(GuardMixin, self), "smtp_" + name)(arg)
    return counted


class GuardMixin:
    _slot: connlimits.Slot | None = None
    _login_timer: asyncio.TimerHandle | None = None
    _cut = False
    _data_command = False

    def __init__(self, handler: Any, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)  # type: ignore[call-arg]
        self._guard = guard
        self._counter = CommandCounter(guard.junk_commands)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # type: ignore[attr-defined]  # not after STARTTLS
        super().connection_made(transport)  # type: ignore[misc]
        if not first or transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else "local"
        try:
            self._slot = self._guard.gate.admit(address, listener=self._guard.listener)
        except connlimits.Refused as e:
            # aiosmtpd's session has not started yet: no greeting, this line instead.
            self._handler_coroutine.cancel()  # type: ignore[attr-defined]
            transport.write(self._guard.refusal(e.reason))  # type: ignore[attr-defined]
            transport.close()
            return
        if self._guard.login_timeout is not None:
            self._login_timer = self.loop.call_later(  # type: ignore[attr-defined]
                self._guard.login_timeout, self._login_expired)

    def connection_lost(self, error: Exception | None) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
        if self._slot is not None:
            self._slot.release()
        super().connection_lost(error)  # type: ignore[misc]

    def _login_expired(self) -> None:
        transport = self.transport  # type: ignore[attr-defined]
        if self.session.authenticated or transport is None:  # type: ignore[attr-defined]
            return
        if not transport.is_closing():
            transport.write(f"421 4.7.0 {self._guard.hostname} Error: login timeout\r\n"
                            .encode())
        transport.close()

    async def _cut_off(self, text: str) -> None:
        self._cut = True
        await super().push(f"421 4.7.0 {self._guard.hostname} {text}")  # type: ignore[misc]
        self.transport.close()  # type: ignore[attr-defined]

    async def push(self, status: AnyStr) -> None:
        await super().push(status)  # type: ignore[misc]
        code = (status.decode("ascii", "replace") if isinstance(status, bytes) else status)[:3]
        if self._data_command and code.startswith("2"):
            self._counter.accepted()
        elif not self._cut and self._counter.reply(code):
            await self._cut_off("Error: too many errors")

    @functools.wraps(SMTP.smtp_DATA)
    async def smtp_DATA(self, arg: str) -> None:
        self._data_command = True
        try:
            await super().smtp_DATA(arg)  # type: ignore[misc]
        finally:
            self._data_command = False

    smtp_NOOP = _junk("NOOP")
    smtp_RSET = _junk("RSET")
    smtp_VRFY = _junk("VRFY")
    smtp_HELP = _junk("HELP")


class GuardedSMTP(GuardMixin, GracefulSMTP):
    pass
