"""The MTA's rules for one SMTP session, as aiosmtpd handler hooks.

Who may send to whom (never an open relay), password checks (asked of the
lookup process), the spool's free-space reserve at MAIL FROM
(mta/queue/space.py), and, before the 354, the message file that DATA
streams into (mta/smtp_incoming.py, which commits it before the 250 goes out).
"""

from __future__ import annotations

import time
from email.utils import formatdate

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from common import ipc, log, sasl, senders
from common.config import Config
from mta.queue import space
from mta.queue.envelope import LMTP, Recipient
from mta.queue.envelope import SMTP as SMTP_ROUTE
from mta.queue.envelope import Envelope as QueueEnvelope
from mta.smtp_incoming import Incoming

MX, SUBMISSION, SUBMISSIONS = "smtp", "submission", "submissions"


def received_header(env: QueueEnvelope, hostname: str, tls: bool, rcpt: str | None) -> bytes:
    proto = "ESMTP" + ("S" if tls else "") + ("A" if env.auth_user else "")
    ip = env.client or "unknown"
    lines = [
        f"Received: from {env.helo or 'unknown'} ([{ip}])",
        f"\tby {hostname} (mailpair) with {proto} id {env.id}",
    ]
    if rcpt:
        lines.append(f"\tfor <{rcpt}>")
    lines[-1] += f"; {formatdate(localtime=False, usegmt=False)}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def announced_size(options: list[str]) -> int:
    """The SIZE= of MAIL FROM (RFC 1870), 0 when absent or not a number."""
    for o in options:
        key, _, value = o.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def _peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


class Handler:
    """One per listener kind; aiosmtpd calls the handle_* hooks for each session."""

    def __init__(self, cfg: Config, kind: str, lookup: ipc.Client, queue: ipc.Client) -> None:
        self.cfg = cfg
        self.kind = kind
        self.lookup = lookup
        self.queue = queue
        self.log = log.get()

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        out = [r for r in responses if not (self.kind == MX and r.startswith("250-AUTH"))]
        out[-1:-1] = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        return out

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        # Refused here rather than after the data (RFC 1870 6.1: 452 at MAIL).
        refused = space.refusal(self.cfg.paths.spool, self.cfg.mta.max_message_size,
                                announced_size(options))
        if refused:
            self.log.warning("spool below its free-space reserve: MAIL refused",
                             client=_peer_ip(session), listener=self.kind)
            return refused
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.cfg.mta.max_recipients:
            return "452 4.5.3 Too many recipients"
        try:
            found = await self.lookup.call("resolve", idempotent=True, address=address)
        except ipc.IPCError as e:
            self.log.error("recipient lookup failed", error=str(e))
            return "451 4.3.0 Temporary lookup failure, try again later"
        kind = found["kind"]
        if kind == "unknown":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if kind == "remote" and not session.authenticated:
            return f"554 5.7.1 <{address}>: Relay access denied"
        targets = getattr(envelope, "targets", [])
        for t in found["targets"]:
            route = LMTP if self.cfg.is_local_domain(t.rpartition("@")[2]) else SMTP_ROUTE
            targets.append(Recipient(address=t, original=address, route=route))
        envelope.targets = targets  # type: ignore[attr-defined]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA_STREAM(self, server: SMTP, session: Session,
                                 envelope: Envelope) -> Incoming | str:
        """Before the 354: the spool file, with our Received header, for the data to come."""
        sender = "" if envelope.mail_from == "<>" else str(envelope.mail_from)
        # An alias may name a mailbox another recipient already reaches: one copy each.
        targets = list({r.address: r for r in envelope.targets}.values())  # type: ignore[attr-defined]
        options = [o.upper() for o in envelope.mail_options]
        env = QueueEnvelope(
            id="", sender=sender, recipients=targets, created=time.time(),
            helo=session.host_name or "", client=_peer_ip(session),
            auth_user=session.auth_data if session.authenticated else None,
            body_8bit="BODY=8BITMIME" in options, smtputf8=bool(envelope.smtp_utf8),
        )
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        single = envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None
        incoming = Incoming(
            env, self.queue, rcpts=list(envelope.rcpt_tos),
            hop_limit=self.cfg.limits.hop_count, listener=self.kind,
            # RFC 6409 8: a submission server completes what a client left out.
            complete_for=None if self.kind == MX else self.cfg.hostname,
            authserv=self.cfg.hostname,
        )
        try:
            refused = await incoming.open(
                lambda env: received_header(env, self.cfg.hostname, tls, single))
        except BaseException:
            incoming.discard("connection lost during DATA")
            raise
        return refused or incoming

    async def handle_VRFY(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str) -> str:
        # Never confirms an address: a VRFY answer would let anyone harvest them.
        return "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"


class SubmissionHandler(Handler):
    """Adds AUTH PLAIN and LOGIN, checked by the lookup process without blocking.

    The lookup process decides, delays and logs every refusal; this side
    counts them per connection and, after auth.failures_per_connection,
    answers 421 and closes (as Postfix does after too many errors).
    """

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        # Only a login's own addresses (common/senders.py); port 25 has no
        # such check: it takes mail from anyone for us, so a forwarder's
        # claim of a local sender is fine there, and it never relays.
        login = session.auth_data if session.authenticated else None
        if not login:
            return "530 5.7.0 Authentication required"
        if address != "<>":
            try:
                reply = await self.lookup.call("sender", idempotent=True, login=login,
                                               sender=address)
            except ipc.IPCError as e:
                self.log.error("sender lookup failed", error=str(e))
                return "451 4.3.0 Temporary lookup failure, try again later"
            if not reply["allowed"]:
                self.log.info("sender refused", user=login, sender=address,
                              client=_peer_ip(session), listener=self.kind)
                return senders.refusal(address, login)
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def _check(self, server: SMTP, user: str, password: str,
                     authzid: str = "") -> AuthResult:
        session = server.session
        try:
            reply = await self.lookup.call("auth", idempotent=True, user=user, password=password,
                                           authzid=authzid, address=_peer_ip(session),
                                           service="smtp")
        except ipc.IPCError as e:
            self.log.error("authentication lookup failed", error=str(e))
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Temporary authentication failure")
        if reply["valid"]:
            self.log.info("authenticated", user=reply["user"], client=_peer_ip(session))
            return AuthResult(success=True, auth_data=reply["user"])
        failures = getattr(session, "auth_failures", 0) + 1
        session.auth_failures = failures  # type: ignore[attr-defined]
        if failures < self.cfg.auth.failures_per_connection:
            return AuthResult(success=False, handled=False)
        await server.push("535 5.7.8 Authentication credentials invalid")
        await server.push(f"421 4.7.0 {self.cfg.hostname} Error: too many failed "
                          "authentications")
        if server.transport is not None:
            server.transport.close()  # what was written goes out first
        return AuthResult(success=False, handled=True)

    async def _response(self, server: SMTP, args: list[str], challenge: str) -> bytes | None:
        """The client's answer: given with the command, or asked for with a 334."""
        if len(args) > 1:
            raw: object = args[1]
        else:
            raw = await server.challenge_auth(challenge, encode_to_b64=True)
            if not isinstance(raw, bytes):
                return None  # aborted or undecodable: aiosmtpd has already answered
            return raw
        try:
            return sasl.decode(str(raw))
        except sasl.SASLError as e:
            await server.push(f"501 5.5.2 {e}")
            return None

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await self._response(server, args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        try:
            authzid, login, password = sasl.parse_plain(blob)
        except sasl.SASLError as e:
            await server.push(f"501 5.5.2 {e}")
            return AuthResult(success=False, handled=True)
        return await self._check(server, login, password, authzid)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        login = await self._response(server, args, "Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check(server, login.decode("utf-8", "surrogateescape"),
                                 password.decode("utf-8", "surrogateescape"))
