"""The outbound SMTP client and its host-trying rules, against scripted fake SMTP servers.

Each fake listens on its own loopback address (127.0.0.2, .3, ...) at one
shared port, as MX hosts all listen on port 25, and records what it got.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import config
from common.tls import ensure_self_signed
from mta.relay.mx import Target
from mta.relay.outbound import Outbound

TEST_TIMEOUT = 20.0
MESSAGE = b"From: a@example.test\r\nSubject: t\r\n\r\nfirst\r\n.dot\r\nlast\r\n"
EXTENSIONS = ["PIPELINING", "SIZE 1000000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]


class FakeSMTP:
    def __init__(self, host: str) -> None:
        self.host = host
        self.greeting = "220 fake ESMTP"
        self.extensions = list(EXTENSIONS)
        self.ehlo_reply: str | None = None  # e.g. "502 5.5.1 no" to force HELO
        self.mail_reply = "250 2.1.0 ok"
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply = "250 2.0.0 queued"
        self.close_after_dot = False
        self.inject_after_starttls = False
        self.auth_ok = True
        self.tls_context: ssl.SSLContext | None = None
        self.connections = 0
        self.commands: list[str] = []
        self.chunks: list[bytes] = []
        self.bodies: list[bytes] = []
        self.tls_used = False
        self.server: asyncio.AbstractServer | None = None

    async def start(self, port: int) -> int:
        self.server = await asyncio.start_server(self.handle, self.host, port)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        buf = b""

        async def say(*lines: str) -> None:
            writer.write("".join(f"{x}\r\n" for x in lines).encode())
            await writer.drain()

        try:
            await say(self.greeting)
            if not self.greeting.startswith("2"):
                return
            while True:
                while b"\r\n" not in buf:
                    data = await reader.read(65536)
                    if not data:
                        return
                    self.chunks.append(data)
                    buf += data
                line, buf = buf.split(b"\r\n", 1)
                cmd = line.decode()
                self.commands.append(cmd)
                verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "EHLO":
                    if self.ehlo_reply:
                        await say(self.ehlo_reply)
                        continue
                    exts = [x for x in self.extensions
                            if not (x == "STARTTLS" and self.tls_used)]
                    lines = ["fake.test", *exts]
                    await say(*[f"250-{x}" for x in lines[:-1]], f"250 {lines[-1]}")
                elif verb == "HELO":
                    await say("250 fake.test")
                elif verb == "STARTTLS":
                    if self.inject_after_starttls:
                        await say("220 go ahead", "250 injected")
                        continue
                    await say("220 2.0.0 go ahead")
                    assert self.tls_context is not None
                    await writer.start_tls(self.tls_context)
                    self.tls_used = True
                elif verb == "AUTH":
                    await say("235 2.7.0 ok" if self.auth_ok else "535 5.7.8 bad credentials")
                elif verb == "MAIL":
                    await say(self.mail_reply)
                elif verb == "RCPT":
                    addr = re.search(r"<([^>]*)>", cmd).group(1)
                    await say(self.rcpt_replies.get(addr, "250 2.1.5 ok"))
                elif verb == "DATA":
                    await say("354 go")
                    while b"\r\n.\r\n" not in buf:
                        data = await reader.read(65536)
                        if not data:
                            return
                        buf += data
                    body, buf = buf.split(b"\r\n.\r\n", 1)
                    self.bodies.append(body + b"\r\n")
                    if self.close_after_dot:
                        return
                    await say(self.data_reply)
                elif verb == "RSET":
                    await say("250 2.0.0 ok")
                elif verb == "QUIT":
                    await say("221 2.0.0 bye")
                    return
                else:
                    await say("502 5.5.1 what")
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


class FakeResolver:
    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets

    async def mail_hosts(self, domain: str, ourselves: list[str]) -> list[Target]:
        return self.targets

    async def host(self, name: str) -> list[Target]:
        return self.targets


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def info(self, event: str, **kw) -> None:
        self.lines.append((event, kw))


@pytest.fixture(scope="module")
def server_tls() -> Iterator[ssl.SSLContext]:
    d = Path(tempfile.mkdtemp(prefix="smtpc"))
    try:
        ensure_self_signed(d / "cert.pem", d / "key.pem", "mx1.remote.test")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
        yield ctx
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(setup, body, hosts=("127.0.0.2", "127.0.0.3"), relay: dict | None = None):
    """Start fakes on hosts at one port, hand body an Outbound aimed at them in order."""
    async def go():
        fakes = [FakeSMTP(h) for h in hosts]
        for f in fakes:
            if setup:
                setup(f)
        port = 0
        for f in fakes:
            port = await f.start(port)
        extra = {k: v.format(port=port) if isinstance(v, str) else v
                 for k, v in (relay or {}).items()}
        cfg = config.from_dict({"hostname": "mail.example.test",
                                "relay": {"port": port, "connect_timeout": 2,
                                          "command_timeout": 5, **extra}})
        targets = [Target(f"mx{i + 1}.remote.test", h) for i, h in enumerate(hosts)]
        out = Outbound(cfg, FakeResolver(targets))
        try:
            return fakes, await asyncio.wait_for(body(out), TEST_TIMEOUT)
        finally:
            for f in fakes:
                await f.stop()
    return asyncio.run(go())


def deliver(rcpts, message=MESSAGE, sender="a@example.test", smtputf8=False, log=None):
    async def body(out: Outbound):
        return await out.deliver("remote.test", sender, rcpts, message, False, smtputf8,
                                 log or Log())
    return body


def test_one_transaction_with_a_reply_per_recipient_pipelined():
    def setup(f):
        f.rcpt_replies = {"gone@remote.test": "550 5.1.1 no such user",
                          "busy@remote.test": "452 4.2.2 mailbox full"}
    rcpts = ["rob@remote.test", "gone@remote.test", "busy@remote.test", "ann@remote.test"]
    (first, second), out = run(setup, deliver(rcpts))
    assert out.replies == {"rob@remote.test": "250 2.0.0 queued",
                           "gone@remote.test": "550 5.1.1 no such user",
                           "busy@remote.test": "452 4.2.2 mailbox full",
                           "ann@remote.test": "250 2.0.0 queued"}
    assert set(out.remote.values()) == {"mx1.remote.test"}
    assert first.connections == 1 and second.connections == 0
    assert first.commands[0] == "EHLO mail.example.test"
    assert first.commands[1] == f"MAIL FROM:<a@example.test> SIZE={len(MESSAGE)}"
    # PIPELINING: MAIL and every RCPT went out in one write.
    assert any(c.count(b"RCPT TO") == 4 and b"MAIL FROM" in c for c in first.chunks)
    assert first.bodies == [b"From: a@example.test\r\nSubject: t\r\n\r\nfirst\r\n..dot\r\n"
                            b"last\r\n"]
    assert first.commands[-1] == "QUIT"


def test_without_pipelining_one_command_at_a_time():
    def setup(f):
        f.extensions = ["SIZE", "8BITMIME"]
    (first, _), out = run(setup, deliver(["rob@remote.test", "ann@remote.test"]))
    assert set(out.replies.values()) == {"250 2.0.0 queued"}
    assert not any(c.count(b"\r\n") > 1 for c in first.chunks if b"RCPT" in c)


def test_a_host_that_greets_with_an_error_passes_to_the_next():
    def setup(f):
        if f.host == "127.0.0.2":
            f.greeting = "421 4.3.2 too busy"
    (first, second), out = run(setup, deliver(["rob@remote.test"]))
    assert out.replies == {"rob@remote.test": "250 2.0.0 queued"}
    assert out.remote == {"rob@remote.test": "mx2.remote.test"}
    assert first.connections == 1 and second.bodies


def test_a_host_that_refuses_connections_passes_to_the_next():
    async def body(out: Outbound):
        out.resolver.targets.insert(0, Target("mx0.remote.test", "127.0.0.9"))
        return await deliver(["rob@remote.test"])(out)
    (first,), out = run(None, body, hosts=("127.0.0.2",))
    assert out.replies == {"rob@remote.test": "250 2.0.0 queued"}


def test_when_every_host_fails_the_recipients_wait():
    def setup(f):
        f.greeting = "554 5.3.2 no service"
    _, out = run(setup, deliver(["rob@remote.test"]))
    reply = out.replies["rob@remote.test"]
    assert reply.startswith("451 4.4.1") and "554 5.3.2" in reply  # temporary, not a bounce


def test_no_other_host_once_the_data_may_have_arrived():
    def setup(f):
        f.close_after_dot = True
    (first, second), out = run(setup, deliver(["rob@remote.test"]))
    assert out.replies["rob@remote.test"].startswith("451 ")
    assert len(first.bodies) == 1 and second.connections == 0


def test_smtputf8_needed_but_not_offered_fails_for_good():
    def setup(f):
        f.extensions = ["PIPELINING", "8BITMIME"]
    (first, _), out = run(setup, deliver(["rob@remote.test"], sender="jörg@example.test"))
    assert out.replies["rob@remote.test"].startswith("553 5.6.7")
    assert not any(c.startswith("MAIL") for c in first.commands)


def test_smtputf8_is_asked_for_when_offered():
    (first, _), out = run(None, deliver(["rob@remote.test"], sender="jörg@example.test",
                                        smtputf8=True))
    assert out.replies["rob@remote.test"] == "250 2.0.0 queued"
    assert first.commands[1].endswith(" SMTPUTF8")


def test_helo_when_ehlo_is_refused():
    def setup(f):
        f.ehlo_reply = "502 5.5.1 what is EHLO"
    (first, _), out = run(setup, deliver(["rob@remote.test"]))
    assert out.replies["rob@remote.test"] == "250 2.0.0 queued"
    assert first.commands[:3] == ["EHLO mail.example.test", "HELO mail.example.test",
                                  "MAIL FROM:<a@example.test>"]


def test_a_message_over_the_servers_size_fails_for_good():
    def setup(f):
        f.extensions = ["SIZE 10"]
    _, out = run(setup, deliver(["rob@remote.test"]))
    assert out.replies["rob@remote.test"].startswith("552 5.3.4")


def test_starttls_when_offered(server_tls):
    def setup(f):
        f.extensions = ["STARTTLS", *EXTENSIONS]
        f.tls_context = server_tls
    (first, _), out = run(setup, deliver(["rob@remote.test"]))
    assert out.replies["rob@remote.test"] == "250 2.0.0 queued"
    assert first.tls_used
    assert [c for c in first.commands if c.startswith("EHLO")] == ["EHLO mail.example.test"] * 2


def test_no_starttls_under_policy_none(server_tls):
    def setup(f):
        f.extensions = ["STARTTLS", *EXTENSIONS]
        f.tls_context = server_tls
    (first, _), out = run(setup, deliver(["rob@remote.test"]),
                          relay={"tls_policy": {"remote.test": "none"}})
    assert out.replies["rob@remote.test"] == "250 2.0.0 queued"
    assert not first.tls_used and "STARTTLS" not in first.commands


def test_verify_policy_refuses_an_untrusted_certificate(server_tls):
    def setup(f):
        f.extensions = ["STARTTLS", *EXTENSIONS]
        f.tls_context = server_tls
    (first, second), out = run(setup, deliver(["rob@remote.test"]),
                               relay={"tls_policy": {"remote.test": "verify"}})
    assert out.replies["rob@remote.test"].startswith("451 4.7.5")
    assert not first.bodies and not second.bodies


def test_data_injected_after_starttls_is_not_believed():
    def setup(f):
        f.extensions = ["STARTTLS", *EXTENSIONS]
        f.inject_after_starttls = True
    log = Log()
    (first,), out = run(setup, deliver(["rob@remote.test"], log=log), hosts=("127.0.0.2",))
    # Opportunistic TLS failed: the same host again in plain text, and the mail goes.
    assert out.replies["rob@remote.test"] == "250 2.0.0 queued"
    assert first.connections == 2
    (error,) = [kw["error"] for e, kw in log.lines if e == "TLS handshake failed, trying without"]
    assert "right after its 220" in error


def test_smarthost_auth_plain_over_tls(server_tls, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")

    def setup(f):
        f.extensions = ["STARTTLS", "AUTH PLAIN LOGIN", *EXTENSIONS]
        f.tls_context = server_tls
    (first,), out = run(setup, deliver(["rob@remote.test"]), hosts=("127.0.0.2",),
                        relay={"smarthost": "127.0.0.2:{port}", "smarthost_user": "u@x.test",
                               "smarthost_password_file": str(secret)})
    assert out.replies["rob@remote.test"] == "250 2.0.0 queued"
    (auth,) = [c for c in first.commands if c.startswith("AUTH")]
    assert base64.b64decode(auth.split()[2]) == b"\0u@x.test\0s3cret"
    assert first.tls_used


def test_smarthost_never_sends_a_password_in_plain_text(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")

    def setup(f):
        f.extensions = ["AUTH PLAIN", *EXTENSIONS]
    (first,), out = run(setup, deliver(["rob@remote.test"]), hosts=("127.0.0.2",),
                        relay={"smarthost": "127.0.0.2:{port}", "smarthost_user": "u@x.test",
                               "smarthost_password_file": str(secret)})
    assert out.replies["rob@remote.test"].startswith("451 4.7.4")
    assert not any(c.startswith("AUTH") for c in first.commands)


def test_bare_lf_and_cr_in_the_spool_go_out_as_crlf_lines_dot_stuffed():
    # Smuggling: without the rule a lenient MX ends the data at "\n.\r\n"
    # and runs the MAIL FROM after it as a transaction of ours.
    message = b"Subject: t\n\nsee\n.\r\nMAIL FROM:<ceo@bank.example>\r\n.\rx"
    (first, _), out = run(None, deliver(["rob@remote.test"], message))
    assert out.replies == {"rob@remote.test": "250 2.0.0 queued"}
    assert first.bodies == [b"Subject: t\r\n\r\nsee\r\n..\r\nMAIL FROM:<ceo@bank.example>\r\n"
                            b"..\r\nx\r\n"]
