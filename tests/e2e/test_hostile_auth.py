"""Password guessing against the real daemons: SMTP AUTH, IMAP and POP3 from outside.

A guesser meets a growing delay per address and per account, a closed
connection after auth.failures_per_connection, a share of the hashing
threads that leaves room for everyone else, the same cost for unknown and
known users, and one log line per refusal that the shipped fail2ban filter
matches. Clients come from several loopback addresses (127.0.0.0/8 all
reaches loopback on Linux), each bound as the socket's source.
"""

from __future__ import annotations

import asyncio
import base64
import re
import smtplib
import socket
import statistics
import subprocess
import time

import pytest

from common.passwords import hash_password
from tests.conftest import PASSWORD, ROOT, Stack, client_tls, require_tool, wait_for

ALICE = "alice@example.test"
# Connections from one address well over what the conn caps allow by default:
# these tests are about passwords, not about connection counts.
WIDE_OPEN = {"connections": 5000, "connections_per_client": 1000}


def start(stack: Stack, auth: dict | None = None, log: str = "console") -> Stack:
    stack.write_config(sections={"auth": auth or {}, "limits": WIDE_OPEN,
                                 "log": {"format": log, "level": "info"}})
    stack.start("mdad")
    stack.start("mtad")
    return stack


def add_real_user(stack: Stack, address: str) -> None:
    """A user with argon2-cffi's production cost (tests' users have cheap hashes)."""
    with open(stack.root / "etc" / "users", "a") as f:
        f.write(f"{address}:{hash_password(PASSWORD)}\n")


class Wire:
    """A line-by-line client from a chosen source address."""

    def __init__(self, addr: tuple[str, int], source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(addr, timeout=60, source_address=(source, 0))
        self.file = self.sock.makefile("rb")

    def line(self) -> bytes:
        return self.file.readline()

    def cmd(self, data: bytes) -> bytes:
        self.sock.sendall(data + b"\r\n")
        return self.line()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def imap(stack: Stack, source: str = "127.0.0.1") -> Wire:
    w = Wire(stack.address("imap"), source)
    assert w.line().startswith(b"* OK")
    return w


def pop3(stack: Stack, source: str = "127.0.0.1") -> Wire:
    w = Wire(stack.address("pop3"), source)
    assert w.line().startswith(b"+OK")
    return w


def submission(stack: Stack, source: str = "127.0.0.1") -> smtplib.SMTP:
    s = smtplib.SMTP(*stack.address("submission"), timeout=60, source_address=(source, 0))
    s.starttls(context=client_tls())
    s.ehlo("client.example.test")
    return s


def plain(user: str, password: bytes | str, authzid: str = "") -> str:
    pw = password.encode() if isinstance(password, str) else password
    return base64.b64encode(authzid.encode() + b"\0" + user.encode() + b"\0" + pw).decode()


def failure_line(address: str, user: str, service: str) -> str:
    return f"login failed: address={address} user={user} service={service}"


def log_count(stack: Stack, daemon: str, text: str) -> int:
    return stack.log(daemon).count(text)


def wait_logged(stack: Stack, daemon: str, text: str, count: int = 1) -> None:
    wait_for(lambda: log_count(stack, daemon, text) >= count, 60, f"{count} × {text!r}")


# -- the disconnect after N failures on one connection -----------------------------------


def test_smtp_answers_421_and_closes_after_three_failures(bare_stack: Stack) -> None:
    stack = start(bare_stack)
    s = submission(stack, "127.0.0.4")
    for _ in range(2):
        assert s.docmd("AUTH", "PLAIN " + plain(ALICE, "wrong")) == (
            535, b"5.7.8 Authentication credentials invalid")
    code, _ = s.docmd("AUTH", "LOGIN " + base64.b64encode(ALICE.encode()).decode())
    assert code == 334
    assert s.docmd(base64.b64encode(b"wrong").decode()) == (
        535, b"5.7.8 Authentication credentials invalid")
    assert s.getreply() == (
        421, b"4.7.0 mail.example.test Error: too many failed authentications")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.getreply()
    s.close()
    # One fixed line per failure, from the lookup process only.
    line = failure_line("127.0.0.4", ALICE, "smtp")
    wait_logged(stack, "mtad", line, 3)
    log = stack.log("mtad")
    assert log.count(line) == 3
    assert len(re.findall(r"login failed|authentication failed", log)) == 3
    # Another connection starts its own count, and a right password still works.
    s = submission(stack, "127.0.0.4")
    assert s.login(ALICE, PASSWORD)[0] == 235
    s.quit()


def test_imap_says_bye_and_closes_after_three_failures(bare_stack: Stack) -> None:
    stack = start(bare_stack)
    w = imap(stack, "127.0.0.4")
    assert w.cmd(b"a LOGIN alice@example.test wrong") == (
        b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
    assert w.cmd(b"b AUTHENTICATE PLAIN " + plain(ALICE, "wrong").encode()) == (
        b"b NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
    assert w.cmd(b"c LOGIN nobody@example.test wrong") == (
        b"c NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
    assert w.line() == b"* BYE Too many failed authentications\r\n"
    assert w.line() == b""  # closed
    w.close()
    for user in (ALICE, ALICE, "nobody@example.test"):
        wait_logged(stack, "mdad", failure_line("127.0.0.4", user, "imap"))
    log = stack.log("mdad")
    assert len(re.findall(r"login failed|authentication failed", log)) == 3
    # Logging in as someone else is a refusal like a wrong password, decided
    # (and logged) by the auth process.
    w = imap(stack, "127.0.0.4")
    blob = plain(ALICE, PASSWORD, authzid="bob@example.test").encode()
    assert w.cmd(b"d AUTHENTICATE PLAIN " + blob) == (
        b"d NO [AUTHENTICATIONFAILED] Authentication failed\r\n")
    assert w.cmd(b"e LOGIN alice@example.test " + b'"' + PASSWORD.encode() + b'"').startswith(
        b"e OK [CAPABILITY")
    w.close()
    assert log_count(stack, "mdad", failure_line("127.0.0.4", ALICE, "imap")) == 3


def test_pop3_closes_after_the_configured_number_of_failures(bare_stack: Stack) -> None:
    stack = start(bare_stack, auth={"failures_per_connection": 2})
    w = pop3(stack, "127.0.0.4")
    assert w.cmd(b"USER alice@example.test") == b"+OK\r\n"
    assert w.cmd(b"PASS wrong") == b"-ERR [AUTH] Authentication failed.\r\n"
    assert w.cmd(b"AUTH PLAIN " + plain(ALICE, "wrong").encode()) == (
        b"-ERR [AUTH] Authentication failed; too many failures, closing.\r\n")
    assert w.line() == b""
    w.close()
    wait_logged(stack, "mdad", failure_line("127.0.0.4", ALICE, "pop3"), 2)
    assert len(re.findall(r"login failed|authentication failed", stack.log("mdad"))) == 2


# -- any password bytes, and unknown users ---------------------------------------------


def test_a_0xff_password_is_a_normal_failure_everywhere(bare_stack: Stack) -> None:
    stack = start(bare_stack)
    for user in (ALICE, "nobody@example.test"):
        s = submission(stack, "127.0.0.5")
        assert s.docmd("AUTH", "PLAIN " + plain(user, b"\xff")) == (
            535, b"5.7.8 Authentication credentials invalid")
        s.close()
        wait_logged(stack, "mtad", failure_line("127.0.0.5", user, "smtp"))

        w = imap(stack, "127.0.0.5")
        assert w.cmd(f"a LOGIN {user} {{1}}".encode()).startswith(b"+ ")
        assert w.cmd(b"\xff") == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
        w.close()
        wait_logged(stack, "mdad", failure_line("127.0.0.5", user, "imap"))

        w = pop3(stack, "127.0.0.5")
        assert w.cmd(f"USER {user}".encode()) == b"+OK\r\n"
        assert w.cmd(b"PASS \xff\xfe") == b"-ERR [AUTH] Authentication failed.\r\n"
        w.close()
        wait_logged(stack, "mdad", failure_line("127.0.0.5", user, "pop3"))
    for daemon in ("mtad", "mdad"):
        assert "Traceback" not in stack.log(daemon)
        assert "UnicodeEncodeError" not in stack.log(daemon)


def test_unknown_and_known_users_fail_alike(bare_stack: Stack) -> None:
    """Unknown users are checked against a dummy hash of the production cost.
    The figures are printed (pytest -s); only the answers are asserted."""
    add_real_user(bare_stack, "real@example.test")
    # A tiny failure delay, so that the hashing is what the time shows.
    stack = start(bare_stack, auth={"failure_delay": 0.01, "failure_delay_max": 0.01})
    times: dict[str, list[float]] = {"real@example.test": [], "nobody@example.test": []}
    sources = (f"127.0.1.{n}" for n in range(1, 255))  # fresh ones: no address penalty
    for _ in range(5):
        for user in times:
            source = next(sources)
            w = imap(stack, source)
            started = time.monotonic()
            reply = w.cmd(f"a LOGIN {user} wrong".encode())
            times[user].append(time.monotonic() - started)
            w.close()
            assert reply == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
            wait_logged(stack, "mdad", failure_line(source, user, "imap"))
    print({u: f"median {statistics.median(t) * 1000:.0f} ms, "
              f"{min(t) * 1000:.0f}-{max(t) * 1000:.0f} ms" for u, t in times.items()})


# -- the growing delay -------------------------------------------------------------------


def timed_login(stack: Stack, source: str, user: str, password: str) -> tuple[bytes, float]:
    w = imap(stack, source)
    started = time.monotonic()
    reply = w.cmd(f'a LOGIN {user} "{password}"'.encode())
    took = time.monotonic() - started
    w.close()
    return reply, took


def test_failures_from_one_address_double_the_delay_and_a_success_clears_it(
        bare_stack: Stack) -> None:
    stack = start(bare_stack, auth={"failure_delay": 1, "failure_delay_max": 8})
    took = []
    for n in range(3):
        reply, t = timed_login(stack, "127.0.0.6", f"user{n}@example.test", "wrong")
        assert reply.startswith(b"a NO [AUTHENTICATIONFAILED]")
        took.append(t)
    # 1 s, then 2 s, then 4 s (lower bounds only: a loaded machine adds, never removes).
    assert took[0] >= 0.95 and took[1] >= 1.95 and took[2] >= 3.95, took
    # A right password from that address is held as long as its record says (4 s)...
    reply, t = timed_login(stack, "127.0.0.6", ALICE, PASSWORD)
    assert reply.startswith(b"a OK") and t >= 3.95, t
    # ... and clears it: the next failure is back to 1 s, far from the 8 s it would be.
    reply, t = timed_login(stack, "127.0.0.6", "bob@example.test", "wrong")
    assert reply.startswith(b"a NO [AUTHENTICATIONFAILED]") and 0.95 <= t < 6, t


def test_failures_for_one_account_slow_its_failures_not_its_owner(bare_stack: Stack) -> None:
    stack = start(bare_stack, auth={"failure_delay": 1, "failure_delay_max": 8})
    for n, source in enumerate(("127.0.0.7", "127.0.0.8", "127.0.0.14")):
        # Another guess each time (the same wrong password again would count once).
        reply, t = timed_login(stack, source, ALICE, f"guess {n}")
        assert reply.startswith(b"a NO") and t >= 0.95 * 2 ** n, (n, t)
    # Alice, from her own address, is not held by what others tried on her
    # account (held, she would wait the 4 s of its three failures).
    reply, t = timed_login(stack, "127.0.0.9", ALICE, PASSWORD)
    assert reply.startswith(b"a OK") and t < 3.5, t
    # A wrong password for her account from a fresh address waits for the account's count.
    reply, t = timed_login(stack, "127.0.0.10", ALICE, "wrong")
    assert reply.startswith(b"a NO") and t >= 7.95, t
    # Another account from another fresh address is not slowed by hers.
    reply, t = timed_login(stack, "127.0.0.11", "bob@example.test", "wrong")
    assert reply.startswith(b"a NO") and 0.95 <= t < 3.5, t


# -- one address's guesses do not starve another's login -----------------------------------


def test_300_parallel_guesses_do_not_starve_a_login_from_elsewhere(bare_stack: Stack) -> None:
    add_real_user(bare_stack, "real@example.test")
    stack = start(bare_stack)
    host, port = stack.address("imap")
    guesses, bound = 300, 20.0

    async def connect(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        r, w = await asyncio.open_connection(host, port, local_addr=(source, 0))
        assert (await r.readline()).startswith(b"* OK")
        return r, w

    async def main() -> tuple[float, int, list[bytes]]:
        # Every connection is made and greeted first (50 at a time: asyncio
        # listens with a backlog of 100, and a SYN dropped from a full queue is
        # retried only seconds later); then all 300 guesses go out at once.
        conns = []
        for first in range(0, guesses, 50):
            conns += await asyncio.gather(*(connect("127.0.0.2") for _ in range(first,
                                                                                   first + 50)))
        r, w = await connect("127.0.0.3")
        answers: list[bytes] = []

        async def guess(n: int, gr: asyncio.StreamReader, gw: asyncio.StreamWriter) -> None:
            gw.write(f"g{n} LOGIN real@example.test guess{n}\r\n".encode())
            await gw.drain()
            answers.append(await gr.readline())

        tasks = [asyncio.create_task(guess(n, *c)) for n, c in enumerate(conns)]
        await asyncio.sleep(0.5)  # the guesses reach the auth process first
        started = time.monotonic()
        w.write(f'a LOGIN real@example.test "{PASSWORD}"\r\n'.encode())
        try:
            reply = await asyncio.wait_for(r.readline(), bound)
        except TimeoutError:
            pytest.fail(f"the right password got no answer within {bound} s")
        took = time.monotonic() - started
        answered = len(answers)
        assert reply.startswith(b"a OK"), reply
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, cw in [*conns, (r, w)]:
            cw.close()
        return took, answered, answers

    took, answered, answers = asyncio.run(main())
    print(f"the right password from 127.0.0.3 took {took:.2f} s; "
          f"{answered} of {guesses} guesses had been answered by then")
    assert took < bound, f"{took:.1f} s"
    # The guesses were still being checked when the login went through.
    assert answered < guesses
    assert all(a.startswith(b"g") and b" NO " in a for a in answers), answers[:3]


# -- the log line and the fail2ban filter ----------------------------------------------


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_fail2ban_filter_finds_the_guessing_address(bare_stack: Stack, fmt: str) -> None:
    fail2ban_regex = require_tool("fail2ban-regex")
    stack = start(bare_stack, log=fmt)
    guesser, user = "127.0.0.12", "127.0.0.13"
    s = submission(stack, guesser)
    assert s.docmd("AUTH", "PLAIN " + plain(ALICE, "wrong"))[0] == 535
    s.close()
    w = imap(stack, guesser)
    assert w.cmd(b"a LOGIN nobody@example.test wrong").startswith(b"a NO")
    # A user name that tries to plant a second address in the line.
    assert w.cmd(b'b LOGIN "x address=192.0.2.66 user=y" wrong').startswith(b"b NO")
    w.close()
    w = pop3(stack, guesser)
    assert w.cmd(b"USER alice@example.test") == b"+OK\r\n"
    assert w.cmd(b"PASS wrong").startswith(b"-ERR [AUTH]")
    w.close()
    # A success from another address: no match.
    w = imap(stack, user)
    assert w.cmd(f'a LOGIN {ALICE} "{PASSWORD}"'.encode()).startswith(b"a OK")
    w.close()
    wait_for(lambda: stack.log("mtad").count("login failed") == 1
             and stack.log("mdad").count("login failed") == 3, 60, "the four failure lines")
    found: list[str] = []
    for daemon in ("mtad", "mdad"):
        r = subprocess.run(
            [fail2ban_regex, "-o", "ip", str(stack.logs[daemon]),
             str(ROOT / "deploy" / "fail2ban" / "filter.d" / "mailpair.conf")],
            capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        found += r.stdout.split()
    assert found == [guesser] * 4, found


def test_the_jail_watches_both_units_and_every_port() -> None:
    jail = (ROOT / "deploy" / "fail2ban" / "jail.d" / "mailpair.conf").read_text()
    assert re.search(r"^backend\s*=\s*systemd$", jail, re.M)
    assert re.search(r"^port\s*=\s*25,465,587,143,993,110,995$", jail, re.M)
    filt = (ROOT / "deploy" / "fail2ban" / "filter.d" / "mailpair.conf").read_text()
    assert "journalmatch = _SYSTEMD_UNIT=mta.service + _SYSTEMD_UNIT=mda.service" in filt

