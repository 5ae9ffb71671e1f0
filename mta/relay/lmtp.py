"""LMTP client (RFC 2033) to the MDA's Unix socket.

After DATA an LMTP server answers once for every recipient it accepted, in
RCPT order; this client reads exactly that many replies, so one mailbox's
failure never passes for another's success.

A failure of the socket itself is told apart in the replies it makes up
(RFC 3463): 4.4.1, no answer (nobody listening, no greeting, LHLO refused),
when the MDA is down and the queue should wait for it; 4.4.2, the connection
was lost during a transaction, when the MDA went away midway (or one
connection broke) and the message may be tried again at once.
"""

from __future__ import annotations

import asyncio
import contextlib

from mta.relay.replies import Reply, ReplyParser, dot_stuff

COMMAND_TIMEOUT = 60.0
DATA_TIMEOUT = 600.0
NO_ANSWER, CONNECTION_LOST = "4.4.1", "4.4.2"


class LMTPError(Exception):
    """status: the enhanced code of the reply it becomes (NO_ANSWER or CONNECTION_LOST)."""

    def __init__(self, message: str, status: str = CONNECTION_LOST) -> None:
        super().__init__(message)
        self.status = status


class LMTPConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = ReplyParser()
        self.pending: list[Reply] = []
        self.extensions: set[str] = set()
        self.broken = False
        # While idle in the pool: notices a server that says goodbye (421) or closes.
        self._idle_watch: asyncio.Task | None = None

    def park(self) -> None:
        self._idle_watch = asyncio.create_task(self.reader.read(4096))

    async def unpark(self) -> bool:
        """Take the connection out of the pool; False if the server spoke or left meanwhile."""
        watch, self._idle_watch = self._idle_watch, None
        if watch is None:
            return True
        if watch.done():
            return False
        watch.cancel()
        # The reader allows one waiter: this one must be gone before the next read.
        try:
            await watch
        except asyncio.CancelledError:
            return True
        return False  # it got data or end-of-file just before the cancel

    @classmethod
    async def open(cls, path: str, hostname: str) -> LMTPConnection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(path, limit=1 << 16), COMMAND_TIMEOUT)
        except (OSError, TimeoutError) as e:
            raise LMTPError(f"cannot connect to {path}: {e or 'timed out'}", NO_ANSWER) from None
        conn = cls(reader, writer)
        try:
            greeting = await conn.read_reply()
            if greeting.code != 220:
                raise LMTPError(f"greeting: {greeting}")
            lhlo = await conn.command(f"LHLO {hostname}")
            if lhlo.code != 250:
                raise LMTPError(f"LHLO: {lhlo}")
        except LMTPError as e:
            conn.close()
            # Nothing was handed over yet: to the queue this is an MDA not answering.
            raise LMTPError(str(e), NO_ANSWER) from None
        conn.extensions = {line.split(" ", 1)[0].upper() for line in lhlo.lines[1:]}
        return conn

    async def read_reply(self, timeout: float = COMMAND_TIMEOUT) -> Reply:
        while not self.pending:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except (OSError, TimeoutError) as e:
                self.broken = True
                raise LMTPError(f"reading a reply: {e or 'timed out'}") from None
            if not data:
                self.broken = True
                raise LMTPError("the server closed the connection")
            try:
                self.pending.extend(self.parser.feed(data))
            except ValueError as e:
                self.broken = True
                raise LMTPError(str(e)) from None
        return self.pending.pop(0)

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as e:
            self.broken = True
            raise LMTPError(f"writing: {e}") from None

    async def command(self, line: str) -> Reply:
        await self.send(line.encode("utf-8") + b"\r\n")
        return await self.read_reply()

    async def transaction(
        self, sender: str, recipients: list[str], message: bytes, final: dict[str, str],
        body_8bit: bool = False, smtputf8: bool = False,
    ) -> None:
        """One MAIL/RCPT.../DATA round, filling final with each recipient's last word.

        final is filled as answers arrive, so when the connection breaks
        midway the caller still knows which recipients were answered.
        """
        params = ""
        if body_8bit and "8BITMIME" in self.extensions:
            params += " BODY=8BITMIME"
        if smtputf8 and "SMTPUTF8" in self.extensions:
            params += " SMTPUTF8"
        # The envelope commands go out together (PIPELINING, which LMTP servers
        # offer); their replies come back in the same order.
        lines = [f"MAIL FROM:<{sender}>{params}"] + [f"RCPT TO:<{r}>" for r in recipients]
        await self.send("".join(line + "\r\n" for line in lines).encode("utf-8"))
        mail = await self.read_reply()
        if mail.code == 421:  # the server is closing: nothing was answered yet
            self.broken = True
            raise LMTPError(f"MAIL: {mail}")
        accepted = []
        for r in recipients:
            rep = await self.read_reply()
            if not mail.positive:
                final[r] = str(mail)
            elif rep.positive:
                accepted.append(r)
            else:
                final[r] = str(rep)
        if not accepted:
            await self.command("RSET")
            return
        data = await self.command("DATA")
        if data.code != 354:
            for r in accepted:
                final[r] = str(data)
            await self.command("RSET")
            return
        await self.send(dot_stuff(message))
        for r in accepted:
            final[r] = str(await self.read_reply(DATA_TIMEOUT))

    def close(self) -> None:
        if self._idle_watch is not None:
            self._idle_watch.cancel()
        with contextlib.suppress(Exception):
            self.writer.close()


class LMTPPool:
    """Keeps idle connections for reuse: LHLO once, many transactions."""

    def __init__(self, path: str, hostname: str, max_idle: int = 8) -> None:
        self.path = path
        self.hostname = hostname
        self.max_idle = max_idle
        self.idle: list[LMTPConnection] = []

    async def deliver(
        self, sender: str, recipients: list[str], message: bytes,
        body_8bit: bool = False, smtputf8: bool = False,
    ) -> dict[str, str]:
        """Replies per recipient; a failure of the connection is a 4xx for those unanswered."""
        final: dict[str, str] = {}
        conn = None
        while self.idle:
            conn = self.idle.pop()
            if not await conn.unpark():
                conn.close()
                conn = None
                continue
            try:
                await conn.transaction(sender, recipients, message, final, body_8bit, smtputf8)
                break
            except LMTPError:
                conn.close()
                conn = None
                if final:  # answers came: the message went out, do not send it twice
                    break
        try:
            if conn is None and not final:
                # An idle connection may have been closed by a restarted MDA:
                # those failures above are not the MDA's answer, a new one is.
                conn = await LMTPConnection.open(self.path, self.hostname)
                await conn.transaction(sender, recipients, message, final, body_8bit, smtputf8)
        except LMTPError as e:
            if conn is not None:
                conn.close()
                conn = None
            for r in recipients:
                final.setdefault(r, f"451 {e.status} LMTP to {self.path}: {e}")
        for r in recipients:
            final.setdefault(r, f"451 {CONNECTION_LOST} LMTP to {self.path}: connection lost")
        self._keep(conn)
        return final

    async def probe(self) -> str | None:
        """Whether the MDA answers: None if it greets and takes LHLO, else what went wrong."""
        try:
            conn = await LMTPConnection.open(self.path, self.hostname)
        except LMTPError as e:
            return str(e)
        with contextlib.suppress(LMTPError):
            await conn.command("QUIT")
        conn.close()
        return None

    def _keep(self, conn: LMTPConnection | None) -> None:
        if conn is not None:
            if len(self.idle) < self.max_idle and not conn.broken:
                conn.park()
                self.idle.append(conn)
            else:
                conn.close()
