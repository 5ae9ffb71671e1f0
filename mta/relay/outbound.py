"""Delivery of one message to the recipients of one domain over SMTP.

The domain's MX hosts (or the smarthost) are tried in order: a host that
cannot be reached, greets with an error, or fails the domain's TLS policy
passes the recipients to the next host; once a host answers a recipient,
its answer stands for this round. One connection carries every recipient
of the domain, and each gets its own reply.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from common.config import Config, parse_listen
from mta.relay import esmtp
from mta.relay.mx import Target
from mta.relay.resolver import Resolver, Undeliverable
from mta.relay.smtp_client import SMTPClientError, SMTPConnection, Timeouts


class _NextHost(Exception):
    """This host will not do; the reply is kept in case no other does better."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class _NoTLS(Exception):
    """Opportunistic TLS failed in the handshake: try the same host in plain text."""


@dataclass
class Outcome:
    replies: dict[str, str] = field(default_factory=dict)
    # The host that gave each reply, when a server gave it (DSN Remote-MTA).
    remote: dict[str, str] = field(default_factory=dict)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def client_context(policy: str, cafile: str) -> ssl.SSLContext:
    """'verify': a trusted certificate for the host's name; 'may': any, for privacy only."""
    ctx = ssl.create_default_context(cafile=cafile or None)
    if policy != "verify":
        # RFC 7435: opportunistic encryption beats plain text even unauthenticated.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Outbound:
    def __init__(self, cfg: Config, resolver: Resolver | None = None) -> None:
        relay = cfg.relay
        self.relay = relay
        self.hostname = cfg.hostname
        self.helo = relay.helo or cfg.hostname
        self.resolver = resolver or Resolver(relay.nameservers, relay.dns_timeout)
        self.timeouts = Timeouts(relay.connect_timeout, relay.command_timeout, relay.data_timeout)

    def _credentials(self) -> tuple[str, str] | None:
        if not self.relay.smarthost_user:
            return None
        password = Path(self.relay.smarthost_password_file).read_text().strip("\r\n")
        return self.relay.smarthost_user, password

    async def deliver(self, domain: str, sender: str, recipients: list[str], message: bytes,
                      body_8bit: bool, smtputf8: bool, log) -> Outcome:
        out = Outcome()
        try:
            if self.relay.smarthost:
                host, port = parse_listen(self.relay.smarthost)
                targets = await self.resolver.host(host)
                policy = self.relay.tls_for(host)
                creds = self._credentials()
            else:
                targets = await self.resolver.mail_hosts(domain, [self.hostname, self.helo])
                port, policy, creds = self.relay.port, self.relay.tls_for(domain), None
        except Undeliverable as e:
            log.info("no route", domain=domain, reply=e.reply)
            out.replies = {r: e.reply for r in recipients}
            return out
        except OSError as e:  # the smarthost password file
            out.replies = {r: f"451 4.3.5 smarthost credentials unreadable: {e}"
                           for r in recipients}
            return out
        utf8 = smtputf8 or esmtp.needs_smtputf8(sender, recipients, message)
        job = (sender, message, body_8bit, utf8)
        last = f"451 4.4.1 no host for {domain} could be reached"
        for target in targets:
            todo = [r for r in recipients if r not in out.replies]
            if not todo:
                break
            try:
                try:
                    await self._session(target, port, policy, creds, todo, job, out, tls=True)
                except _NoTLS as e:
                    log.info("TLS handshake failed, trying without", host=target.host,
                             address=target.address, error=str(e))
                    await self._session(target, port, policy, creds, todo, job, out, tls=False)
            except _NextHost as e:
                last = e.reply
                log.info("host skipped", host=target.host, address=target.address, reply=last)
                continue
            except SMTPClientError as e:
                last = f"451 4.4.2 {target.host}[{target.address}]: {e}"
                log.info("connection failed", host=target.host, address=target.address,
                         error=str(e), sent_data=e.sent_data)
                if e.sent_data:
                    break  # the host may have the message: another could deliver it twice
                continue
            break
        for r in recipients:
            out.replies.setdefault(r, last)
        return out

    async def _session(self, target: Target, port: int, policy: str,
                       creds: tuple[str, str] | None, todo: list[str], job: tuple,
                       out: Outcome, tls: bool) -> None:
        sender, message, body_8bit, utf8 = job
        where = f"{target.host}[{target.address}]"
        conn = await SMTPConnection.open(target.address, port, self.timeouts)
        polite = False  # QUIT only to a server that still answers
        try:
            greeting = await conn.greeting()
            if greeting.code != 220:
                # Even a 554 greeting is the host's state, not the recipients' (RFC 5321
                # 3.1): the next host may take the mail, and later this one may.
                raise _NextHost(f"451 4.4.1 {where} greeted with: {greeting}")
            hello = await conn.hello(self.helo)
            if hello.code != 250:
                raise _NextHost(f"451 4.4.1 {where} refused HELO: {hello}")
            if tls and policy != "none" and "STARTTLS" in conn.extensions:
                await self._starttls(conn, target, policy, where)
            if policy == "verify" and not conn.tls:
                raise _NextHost(f"451 4.7.4 {where} offers no STARTTLS, but TLS is required")
            if creds:
                if not conn.tls:
                    raise _NextHost(f"451 4.7.4 {where}: no TLS, so no password is sent")
                reply = await conn.auth(*creds)
                if reply.code != 235:
                    raise _NextHost(f"451 4.7.0 {where} refused authentication: {reply}")
            if utf8 and "SMTPUTF8" not in conn.extensions:
                for r in todo:
                    out.replies[r] = (f"553 5.6.7 {where} does not support SMTPUTF8, "
                                      "which this message needs")
                polite = True
                return
            limit = esmtp.size_limit(conn.extensions)
            if limit and len(message) > limit:
                for r in todo:
                    out.replies[r] = f"552 5.3.4 message too big for {where} (limit {limit})"
                polite = True
                return
            answered: dict[str, str] = {}
            try:
                await conn.transaction(sender, todo, message, answered, body_8bit, utf8)
            finally:
                for r, reply in answered.items():
                    out.replies[r] = reply
                    out.remote[r] = target.host
            polite = True
        except _NextHost:
            polite = True
            raise
        finally:
            if polite:
                await conn.quit()
            else:
                conn.close()

    async def _starttls(self, conn: SMTPConnection, target: Target, policy: str,
                        where: str) -> None:
        context = client_context(policy, self.relay.tls_ca_file)
        name = None if _is_ip(target.host) else target.host
        try:
            reply = await conn.starttls(context, name)
        except SMTPClientError as e:
            if policy == "may":
                raise _NoTLS(str(e)) from None
            raise _NextHost(f"451 4.7.5 {where}: {e}") from None
        if reply.code != 220:
            if policy == "verify":
                raise _NextHost(f"451 4.7.4 {where} refused STARTTLS: {reply}")
            return
        hello = await conn.hello(self.helo)  # RFC 3207: forget what was said before
        if hello.code != 250:
            raise _NextHost(f"{hello.code} {where} refused EHLO after STARTTLS: {hello.text}")
