"""Hostile connections: too many of them, logins that never come, junk
commands, no descriptors left. Raw sockets against the real mtad and mdad;
each test asserts the exact line a client sees."""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import re
import resource
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, Stack, wait_for

ALICE, BOB = "alice@example.test", "bob@example.test"
HOST = "mail.example.test"

GREETING = {"smtp": b"220 ", "submission": b"220 ", "imap": b"* OK ", "pop3": b"+OK "}
PER_CLIENT = {
    "smtp": f"421 4.7.0 {HOST} Too many connections from your address\r\n".encode(),
    "imap": b"* BYE [UNAVAILABLE] Too many connections from your address\r\n",
    "pop3": b"-ERR [SYS/TEMP] Too many connections from your address.\r\n",
}
TOTAL = {
    "smtp": f"421 4.7.0 {HOST} Too many connections, try again later\r\n".encode(),
    "imap": b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
    "pop3": b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n",
}
DAEMON = {"smtp": "mtad", "submission": "mtad", "imap": "mdad", "pop3": "mdad"}


def start(stack: Stack, **limits: object) -> Stack:
    stack.write_config(sections={"limits": limits})
    stack.start("mdad")
    stack.start("mtad")
    return stack


class Client:
    """A raw connection from a chosen loopback address; reads whole lines."""

    def __init__(self, stack: Stack, listener: str, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(stack.address(listener), timeout=30,
                                             source_address=(source, 0))
        self.file = self.sock.makefile("rb")

    def line(self) -> bytes:
        return self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed(self) -> bool:
        """The server closed the connection (nothing more to read)."""
        return self.file.read() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    held: list[Client] = []
    yield held
    for c in held:
        c.close()


def greeted(stack: Stack, listener: str, clients: list[Client],
            source: str = "127.0.0.1") -> Client:
    c = Client(stack, listener, source)
    clients.append(c)
    first = c.line()
    assert first.startswith(GREETING[listener]), first
    return c


def refused(stack: Stack, listener: str, source: str = "127.0.0.1") -> bytes:
    c = Client(stack, listener, source)
    try:
        first = c.line()
        assert c.closed(), "the connection stays open after the refusal"
        return first
    finally:
        c.close()


def served_again(stack: Stack, listener: str) -> bool:
    c = Client(stack, listener)
    try:
        return c.line().startswith(GREETING[listener])
    finally:
        c.close()


# -- caps on connections ------------------------------------------------------------


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_per_client_cap(bare_stack: Stack, clients: list[Client], proto: str) -> None:
    stack = start(bare_stack, connections_per_client=3)
    # SMTP counts its listeners together: 25 and 587 share the cap.
    listeners = ["smtp", "submission", "smtp"] if proto == "smtp" else [proto] * 3
    for listener in listeners:
        greeted(stack, listener, clients)
    for _ in range(5):
        assert refused(stack, proto) == PER_CLIENT[proto]
    if proto == "smtp":
        assert refused(stack, "submission") == PER_CLIENT["smtp"]
    # Another address is still served while this one is at its cap.
    greeted(stack, proto, clients, source="127.0.0.2")
    # One of the three ends: the address is served again.
    clients.pop(0).close()
    wait_for(lambda: served_again(stack, proto), 60, "a connection after one closed")
    # A flood of refusals is one log line, not one line each.
    log = stack.log(DAEMON[proto])
    assert log.count("connection refused") == 1, log


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_total_cap(bare_stack: Stack, clients: list[Client], proto: str) -> None:
    stack = start(bare_stack, connections=4, connections_per_client=10)
    for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"):
        greeted(stack, proto, clients, source)
    assert refused(stack, proto, "127.0.0.3") == TOTAL[proto]
    clients.pop().close()
    wait_for(lambda: served_again(stack, proto), 60, "a connection after one closed")


def test_exempt_loopback(bare_stack: Stack, clients: list[Client]) -> None:
    stack = start(bare_stack, connections_per_client=2, connections=3, exempt_loopback=True)
    for proto in ("smtp", "imap", "pop3"):
        for _ in range(5):
            greeted(stack, proto, clients)


# -- one user from one address, after login ---------------------------------------------


def test_imap_user_connections_per_client(bare_stack: Stack, clients: list[Client]) -> None:
    stack = start(bare_stack, user_connections_per_client=2)
    sessions = [stack.imap(ALICE), stack.imap(ALICE)]
    try:
        c = greeted(stack, "imap", clients)
        c.send(f"a LOGIN \"{ALICE}\" \"{PASSWORD}\"\r\n".encode())
        # Not a tagged OK first: the BYE is the answer to the LOGIN.
        assert c.line() == (b"* BYE [LIMIT] Too many connections for this user "
                            b"from your address\r\n")
        assert c.closed()
        # Another user from the same address, and alice from another one, log in.
        stack.imap(BOB).logout()
        c2 = Client(stack, "imap", source="127.0.0.2")
        clients.append(c2)
        c2.line()
        c2.send(f"a LOGIN \"{ALICE}\" \"{PASSWORD}\"\r\n".encode())
        assert c2.line().startswith(b"a OK ")
        # One of alice's sessions ends: she may log in again from here.
        sessions.pop().logout()

        def logs_in() -> bool:
            try:
                stack.imap(ALICE).logout()
                return True
            except imaplib.IMAP4.abort:
                return False
        wait_for(logs_in, 60, "alice's login after one of her sessions ended")
    finally:
        for s in sessions:
            with contextlib.suppress(Exception):
                s.logout()


def test_pop3_user_connections_per_client(bare_stack: Stack, clients: list[Client]) -> None:
    stack = start(bare_stack, user_connections_per_client=1)
    first = poplib.POP3(*stack.address("pop3"), timeout=30)
    first.user(ALICE)
    first.pass_(PASSWORD)
    c = greeted(stack, "pop3", clients)
    c.send(f"USER {ALICE}\r\nPASS {PASSWORD}\r\n".encode())
    assert c.line() == b"+OK\r\n"
    assert c.line() == (b"-ERR [SYS/TEMP] Too many connections for this user "
                        b"from your address.\r\n")
    assert c.closed()
    first.quit()

    def logs_in() -> bool:
        p = poplib.POP3(*stack.address("pop3"), timeout=30)
        try:
            p.user(ALICE)
            p.pass_(PASSWORD)
            return True
        except poplib.error_proto:
            return False
        finally:
            p.quit()
    wait_for(logs_in, 60, "alice's POP3 login after her session ended")


# -- the pre-login deadline ----------------------------------------------------------------

KEEP_BUSY = {
    "imap": (b"a CAPABILITY\r\n", b"* BYE Login timeout\r\n"),
    "pop3": (b"CAPA\r\n", b"-ERR Login timeout, closing the connection.\r\n"),
    "submission": (b"NOOP\r\n", f"421 4.7.0 {HOST} Error: login timeout\r\n".encode()),
}


@pytest.mark.parametrize("listener", ["imap", "pop3", "submission"])
def test_login_deadline_is_not_restarted_by_commands(bare_stack: Stack, clients: list[Client],
                                                     listener: str) -> None:
    stack = start(bare_stack, login_timeout=2)
    command, last = KEEP_BUSY[listener]
    c = greeted(stack, listener, clients)
    began = time.monotonic()
    seen = b""
    while time.monotonic() - began < 30:
        # A command after every 0.3 s of quiet; never one into a closing connection.
        if select.select([c.sock], [], [], 0.3)[0]:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            seen += chunk
        else:
            c.send(command)
    else:
        pytest.fail("still connected after 30 s with a 2 s login deadline")
    assert seen.endswith(last), seen[-300:]


def test_deadline_ends_at_login(bare_stack: Stack) -> None:
    """Logged in, and on port 25 (no login), the client is not cut off at the deadline."""
    stack = start(bare_stack, login_timeout=2)
    imap = stack.imap(ALICE)
    sub = stack.submission(ALICE)
    mx = stack.smtp()
    began = time.monotonic()
    while time.monotonic() - began < 4:
        assert imap.noop()[0] == "OK"
        assert sub.noop()[0] == 250
        assert mx.noop()[0] == 250
        time.sleep(0.3)  # the pace of the client under test, not a wait for readiness
    imap.logout()
    sub.quit()
    mx.quit()


# -- junk commands ---------------------------------------------------------------------------


def test_junk_commands_end_the_session(bare_stack: Stack, clients: list[Client]) -> None:
    stack = start(bare_stack, junk_commands=5)
    c = greeted(stack, "smtp", clients)
    replies = []
    for verb in (b"NOOP", b"RSET", b"NOOP", b"HELP", b"VRFY x", b"NOOP"):
        c.send(verb + b"\r\n")
        reply = c.line()
        while reply[3:4] == b"-":
            reply = c.line()
        replies.append(reply)
    assert not any(r.startswith(b"421") for r in replies[:5]), replies
    assert replies[5] == f"421 4.7.0 {HOST} Error: too many commands\r\n".encode()
    assert c.closed()


def test_a_few_noops_then_mail(bare_stack: Stack) -> None:
    stack = start(bare_stack, junk_commands=5)
    with stack.smtp() as s:
        s.ehlo("client.example")
        for _ in range(4):
            assert s.noop()[0] == 250
        s.sendmail("someone@remote.example", [ALICE], b"Subject: one\r\n\r\nbody\r\n")
        # An accepted message forgives what went before, as Postfix does.
        for _ in range(5):
            assert s.noop()[0] == 250
        s.sendmail("someone@remote.example", [ALICE], b"Subject: two\r\n\r\nbody\r\n")
    assert len(stack.wait_messages(ALICE, 2)) == 2


def test_protocol_errors_end_the_session(bare_stack: Stack, clients: list[Client]) -> None:
    stack = start(bare_stack)
    c = greeted(stack, "smtp", clients)
    c.send(b"EHLO client.example\r\n")
    while c.line()[3:4] == b"-":
        pass
    for _ in range(19):
        c.send(b"RCPT TO:<alice@example.test>\r\n")
        assert c.line().startswith(b"503 ")
    c.send(b"RCPT TO:<alice@example.test>\r\n")
    assert c.line().startswith(b"503 ")
    assert c.line() == f"421 4.7.0 {HOST} Error: too many errors\r\n".encode()
    assert c.closed()


# -- descriptors -------------------------------------------------------------------------------

# The daemons start with a soft limit below the hard one: each child raises it.
FD_SOFT, FD_HARD = 40, 96


def test_out_of_descriptors_is_answered_and_logged_once(bare_stack: Stack) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_SOFT, FD_HARD))
    bare_stack.preexec = low_limit
    # Not the caps but the descriptors must run out here.
    stack = start(bare_stack, exempt_loopback=True)
    smtp_pid = stack.state("mtad")["children"]["smtp"]
    limits = Path(f"/proc/{smtp_pid}/limits").read_text()
    assert re.search(rf"Max open files\s+{FD_HARD}\s+{FD_HARD}\s", limits), limits
    held: list[Client] = []
    try:
        turned_away = None
        for _ in range(FD_HARD + 10):
            c = Client(stack, "smtp")
            held.append(c)
            first = c.line()
            if not first.startswith(b"220"):
                turned_away = first
                break
        assert turned_away == b"421 4.3.2 Server too busy, try again later\r\n"
        assert FD_SOFT < len(held) < FD_HARD
        # While it lasts asyncio retries every second; more clients keep trying.
        for _ in range(5):
            late = Client(stack, "smtp")
            try:
                assert late.line() == turned_away
            finally:
                late.close()
            time.sleep(0.5)  # let asyncio's one-second retries come round
        log = stack.log("mtad")
        assert log.count("out of file descriptors") == 1, log[-5000:]
        assert "Traceback" not in log and "socket.accept() out of system resource" not in log
    finally:
        for c in held:
            c.close()
    wait_for(lambda: served_again(stack, "smtp"), 60, "a client served once descriptors are free")
    with stack.smtp() as s:
        s.sendmail("someone@remote.example", [ALICE], b"Subject: after\r\n\r\nbody\r\n")
    stack.wait_messages(ALICE, 1)


def test_units_raise_the_descriptor_limit() -> None:
    root = Path(__file__).resolve().parents[2] / "deploy"
    for unit in ("mta.service", "mda.service"):
        lines = (root / unit).read_text().splitlines()
        values = [v.partition("=")[2] for v in lines if v.startswith("LimitNOFILE=")]
        assert values and int(values[0]) >= 3 * 1000 + 1024, unit


def test_listeners_keep_the_parents_backlog(stack: Stack) -> None:
    """A burst of connections (a guesser's, a flood's) waits in the kernel's
    queue instead of being dropped: the children serve the parent's sockets
    without shrinking the queue to asyncio's default of 100."""
    import shutil
    import subprocess

    from common.supervisor import LISTEN_BACKLOG

    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed")
    for listener in ("smtp", "submission", "imap", "imaps", "pop3", "pop3s"):
        port = stack.port(listener)
        out = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, check=True).stdout.split()
        # LISTEN, Recv-Q, Send-Q (the backlog of a listening socket), ...
        assert out[0] == "LISTEN" and int(out[2]) == LISTEN_BACKLOG, (listener, out)
