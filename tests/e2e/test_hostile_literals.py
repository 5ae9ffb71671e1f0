"""Hostile IMAP literals: announced sizes the server must refuse without reading them.

Before login no literal over MAX_LITERAL_BEFORE_LOGIN is read: a synchronizing
one gets a tagged NO (the client sends none of it), a non-synchronizing one
(`{n+}`, LITERAL+) `* BYE` and the connection is closed. After login
mta.max_message_size is APPEND's limit for both kinds, and APPENDLIMIT says so.
The imap process's memory must not grow by what a client announces.
"""

from __future__ import annotations

import re
import socket

import pytest

from mda.imap.prelogin import MAX_LITERAL_BEFORE_LOGIN
from tests.conftest import PASSWORD, Stack

ALICE = "alice@example.test"
LIMIT = 1_000_000  # mta.max_message_size in these tests
# Under the old 64M parser cap, so without the limits the server read all of it.
HUGE = 50_000_000
GROWTH_BOUND_KB = 20_000


@pytest.fixture
def stack(bare_stack: Stack) -> Stack:
    bare_stack.write_config(max_message_size=LIMIT)
    bare_stack.start("mdad")
    return bare_stack


class Raw:
    def __init__(self, stack: Stack, login: bool = False) -> None:
        self.sock = socket.create_connection(stack.address("imap"), timeout=20)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")
        if login:
            self.send(b'l LOGIN %s "%s"' % (ALICE.encode(), PASSWORD.encode()))
            assert self.tagged(b"l")[-1].startswith(b"l OK")

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\r\n")

    def line(self) -> bytes:
        return self.file.readline()

    def tagged(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            assert line, f"connection closed; got {lines}"
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def closed(self) -> bool:
        try:
            return self.file.readline() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def inbox_count(stack: Stack) -> int:
    with stack.imap(ALICE) as c:
        return int(c.select("INBOX")[1][0])


def imap_rss_kb(stack: Stack, role: str = "imap") -> int:
    """Before login the client talks to imap-login, after it to imap."""
    pid = stack.state("mdad")["children"][role]
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def stream(raw: Raw, size: int) -> None:
    """Send size bytes of literal, or as many as the server takes before it closes."""
    chunk = b"x" * (1 << 20)
    sent = 0
    try:
        while sent < size:
            raw.sock.sendall(chunk[: size - sent])
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass


# -- before login -------------------------------------------------------------------


def test_synchronizing_literal_over_the_limit_before_login_gets_no(stack: Stack) -> None:
    c = Raw(stack)
    for line in (b"a APPEND INBOX {60000000}", b"b LOGIN {%d}" % (MAX_LITERAL_BEFORE_LOGIN + 1)):
        c.send(line)
        tag = line.split()[0]
        assert c.line() == tag + b" NO Log in first: literals over %d octets need a login\r\n" % (
            MAX_LITERAL_BEFORE_LOGIN)
    # No `+` was sent, so the client sent none of it: the session goes on.
    c.send(b"c NOOP")
    assert c.line() == b"c OK NOOP completed\r\n"
    c.close()


def test_literals_under_the_limit_before_login_are_read(stack: Stack) -> None:
    c = Raw(stack)
    c.send(b"a LOGIN {%d}" % len(ALICE))
    assert c.line().startswith(b"+ ")
    c.send(ALICE.encode() + b" {%d+}\r\n" % len(PASSWORD) + PASSWORD.encode())
    assert c.tagged(b"a")[-1].startswith(b"a OK [CAPABILITY ")
    c.close()


def test_non_synchronizing_literal_over_the_limit_before_login_gets_bye(stack: Stack) -> None:
    c = Raw(stack)
    c.send(b"a APPEND INBOX {60000000+}")
    assert c.line() == b"* BYE Literal too large before login\r\n"
    assert c.closed()
    # Just over the limit, on any command, is the same.
    c = Raw(stack)
    c.send(b"a LOGIN {%d+}" % (MAX_LITERAL_BEFORE_LOGIN + 1))
    assert c.line() == b"* BYE Literal too large before login\r\n"
    assert c.closed()
    assert inbox_count(stack) == 0


def test_huge_literal_before_login_does_not_grow_the_login_process(stack: Stack) -> None:
    before = imap_rss_kb(stack, "imap-login")
    for _ in range(3):
        c = Raw(stack)
        c.send(b"a APPEND INBOX {%d+}" % HUGE)
        stream(c, HUGE)
        c.close()
    growth = imap_rss_kb(stack, "imap-login") - before
    assert growth < GROWTH_BOUND_KB, f"the imap-login process grew by {growth} kB"


# -- after login -----------------------------------------------------------------------


def test_appendlimit_is_advertised_after_login(stack: Stack) -> None:
    c = Raw(stack)
    c.send(b"a CAPABILITY")
    assert b"APPENDLIMIT" not in b"".join(c.tagged(b"a"))
    c.send(b'l LOGIN %s "%s"' % (ALICE.encode(), PASSWORD.encode()))
    assert b" APPENDLIMIT=%d" % LIMIT in c.tagged(b"l")[-1]
    c.send(b"b CAPABILITY")
    assert b" APPENDLIMIT=%d" % LIMIT in c.tagged(b"b")[0]
    c.close()


def test_append_over_max_message_size_synchronizing_gets_toobig(stack: Stack) -> None:
    c = Raw(stack, login=True)
    c.send(b"a APPEND INBOX {%d}" % (LIMIT + 1))
    assert c.line() == b"a NO [TOOBIG] Message too large\r\n"
    c.send(b"b NOOP")
    assert c.tagged(b"b")[-1] == b"b OK NOOP completed\r\n"
    c.close()
    assert inbox_count(stack) == 0


def test_append_at_max_message_size_is_stored_either_way(stack: Stack) -> None:
    message = b"Subject: big\r\n\r\n" + b"x" * (LIMIT - 16)
    assert len(message) == LIMIT
    c = Raw(stack, login=True)
    c.send(b"a APPEND INBOX {%d}" % LIMIT)
    assert c.line().startswith(b"+ ")
    c.send(message)
    assert c.tagged(b"a")[-1].startswith(b"a OK [APPENDUID ")
    c.send(b"b APPEND INBOX {%d+}\r\n" % LIMIT + message)
    assert c.tagged(b"b")[-1].startswith(b"b OK [APPENDUID ")
    c.close()
    assert inbox_count(stack) == 2


def test_append_over_max_message_size_non_synchronizing_is_refused_and_closed(
        stack: Stack) -> None:
    c = Raw(stack, login=True)
    c.send(b"a APPEND INBOX {%d+}" % (LIMIT + 1))
    assert c.line() == b"a NO [TOOBIG] Message too large\r\n"
    assert c.line() == b"* BYE Literal too large, closing the connection\r\n"
    assert c.closed()
    # The same with the message on its way: none of it is stored.
    c = Raw(stack, login=True)
    c.send(b"a APPEND INBOX {%d+}" % (5 * LIMIT))
    stream(c, 5 * LIMIT)
    c.close()
    assert inbox_count(stack) == 0


def test_huge_literal_after_login_does_not_grow_the_imap_process(stack: Stack) -> None:
    Raw(stack, login=True).close()  # the user's store is opened and cached once
    before = imap_rss_kb(stack)
    for _ in range(3):
        c = Raw(stack, login=True)
        c.send(b"a APPEND INBOX {%d+}" % HUGE)
        stream(c, HUGE)
        c.close()
    growth = imap_rss_kb(stack) - before
    assert growth < GROWTH_BOUND_KB, f"the imap process grew by {growth} kB"
    assert inbox_count(stack) == 0


def test_other_commands_keep_the_small_literal_limit_after_login(stack: Stack) -> None:
    c = Raw(stack, login=True)
    c.send(b"a SELECT {%d}" % (LIMIT // 2))
    assert c.line() == b"a NO [TOOBIG] Literal too large\r\n"
    c.send(b"b NOOP")
    assert c.tagged(b"b")[-1] == b"b OK NOOP completed\r\n"
    c.send(b"c SELECT {%d+}" % (LIMIT // 2))
    assert c.line() == b"c BAD Literal too large\r\n"
    assert c.line() == b"* BYE Literal too large, closing the connection\r\n"
    assert c.closed()
