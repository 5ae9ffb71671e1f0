"""SMTP client (RFC 5321) for one connection to another domain's MX or the smarthost.

EHLO (HELO when EHLO is refused), STARTTLS (RFC 3207), AUTH PLAIN/LOGIN,
and one transaction carrying many recipients with a reply for each: the
MAIL and RCPT commands go out together when the server offers PIPELINING
(RFC 2920), one by one otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

from mta.relay import esmtp
from mta.relay.replies import Reply, ReplyParser, dot_stuff


class SMTPClientError(Exception):
    """The connection failed or the server broke the protocol.

    sent_data says whether the message's final dot may have reached the
    server: then another host must not be tried in this round, or the
    recipients could get it twice.
    """

    def __init__(self, message: str, sent_data: bool = False) -> None:
        super().__init__(message)
        self.sent_data = sent_data


@dataclass(frozen=True)
class Timeouts:
    connect: float = 30.0
    command: float = 300.0
    data: float = 600.0


class SMTPConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeouts: Timeouts) -> None:
        self.reader = reader
        self.writer = writer
        self.timeouts = timeouts
        self.parser = ReplyParser()
        self.pending: list[Reply] = []
        self.extensions: dict[str, str] = {}
        self.tls = False
        self.esmtp = True

    @classmethod
    async def open(cls, address: str, port: int, timeouts: Timeouts) -> SMTPConnection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, limit=1 << 16), timeouts.connect)
        except TimeoutError:
            raise SMTPClientError(f"connecting to [{address}]:{port} timed out") from None
        except OSError as e:
            raise SMTPClientError(f"cannot connect to [{address}]:{port}: "
                                  f"{e.strerror or e}") from None
        return cls(reader, writer, timeouts)

    # -- the wire ------------------------------------------------------------------

    async def read_reply(self, timeout: float | None = None) -> Reply:
        while not self.pending:
            try:
                data = await asyncio.wait_for(self.reader.read(65536),
                                              timeout or self.timeouts.command)
            except TimeoutError:
                raise SMTPClientError("timed out waiting for the server") from None
            except OSError as e:
                raise SMTPClientError(f"reading a reply: {e}") from None
            if not data:
                raise SMTPClientError("the server closed the connection")
            try:
                self.pending.extend(self.parser.feed(data))
            except ValueError as e:
                raise SMTPClientError(str(e)) from None
        return self.pending.pop(0)

    async def send(self, data: bytes, timeout: float | None = None) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), timeout or self.timeouts.command)
        except TimeoutError:
            raise SMTPClientError("timed out writing to the server") from None
        except OSError as e:
            raise SMTPClientError(f"writing: {e}") from None

    async def command(self, line: str) -> Reply:
        await self.send(line.encode("utf-8") + b"\r\n")
        return await self.read_reply()

    # -- session -------------------------------------------------------------------

    async def greeting(self) -> Reply:
        return await self.read_reply()

    async def hello(self, name: str) -> Reply:
        """EHLO, or HELO when the server does not know EHLO; fills extensions."""
        reply = await self.command(f"EHLO {name}")
        if reply.code == 250:
            self.extensions = esmtp.parse_ehlo(reply)
            self.esmtp = True
            return reply
        if reply.code in (500, 501, 502, 504, 550):
            reply = await self.command(f"HELO {name}")
            self.extensions = {}
            self.esmtp = False
        return reply

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> Reply:
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            return reply
        if self.pending or self.parser.buffered:
            # Anything sent before the handshake was not protected: it would be
            # taken as said inside TLS (the STARTTLS injection of CVE-2011-0411).
            raise SMTPClientError("the server sent data right after its 220 to STARTTLS")
        try:
            await asyncio.wait_for(
                self.writer.start_tls(context, server_hostname=server_hostname),
                self.timeouts.command)
        except TimeoutError:
            raise SMTPClientError("TLS handshake timed out") from None
        except (ssl.SSLError, OSError) as e:
            raise SMTPClientError(f"TLS handshake failed: {e}") from None
        self.tls = True
        return reply

    async def auth(self, user: str, password: str) -> Reply:
        mechanisms = esmtp.auth_mechanisms(self.extensions)
        if "PLAIN" in mechanisms or "LOGIN" not in mechanisms:
            return await self.command(esmtp.auth_plain(user, password))
        first, name, secret = esmtp.auth_login(user, password)
        reply = await self.command(first)
        for answer in (name, secret):
            if reply.code != 334:
                return reply
            reply = await self.command(answer)
        return reply

    async def transaction(self, sender: str, recipients: list[str], message: bytes,
                          final: dict[str, str], body_8bit: bool = False,
                          smtputf8: bool = False) -> None:
        """One MAIL/RCPT.../DATA round, filling final with each recipient's reply.

        SMTP gives one reply after the data for every accepted recipient.
        final is filled as answers come, so a broken connection leaves the
        unanswered recipients out of it.
        """
        mail = esmtp.mail_command(sender, self.extensions, len(message), body_8bit, smtputf8)
        lines = [mail] + [f"RCPT TO:<{r}>" for r in recipients]
        if "PIPELINING" in self.extensions:
            await self.send("".join(f"{line}\r\n" for line in lines).encode("utf-8"))
            replies = [await self.read_reply() for _ in lines]
        else:
            replies = [await self.command(mail)]
            if replies[0].positive:
                replies += [await self.command(line) for line in lines[1:]]
        if not replies[0].positive:
            for r in recipients:
                final[r] = str(replies[0])
            await self.reset()
            return
        accepted = []
        for r, reply in zip(recipients, replies[1:], strict=True):
            if reply.positive:
                accepted.append(r)
            else:
                final[r] = str(reply)
        if not accepted:
            await self.reset()
            return
        data = await self.command("DATA")
        if data.code != 354:
            for r in accepted:
                final[r] = str(data)
            await self.reset()
            return
        try:
            await self.send(dot_stuff(message), self.timeouts.data)
            reply = await self.read_reply(self.timeouts.data)
        except SMTPClientError as e:
            raise SMTPClientError(str(e), sent_data=True) from None
        for r in accepted:
            final[r] = str(reply)

    async def reset(self) -> None:
        with contextlib.suppress(SMTPClientError):
            await self.command("RSET")

    async def quit(self) -> None:
        with contextlib.suppress(SMTPClientError):
            await asyncio.wait_for(self.command("QUIT"), 10)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
