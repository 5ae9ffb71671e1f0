"""Idle clients on one big INBOX share the imap process's copy of the folder.

A view of a 20,000-message folder needs 320 kB of arrays for its UIDs,
flags and modseqs (3.5 MB as Python objects); shared between the views of
a process (mda/store/viewstate.py), an idle session costs only its
connection, a kilobyte or two. The bound is far above that and a third of
what unshared arrays cost: it catches sharing lost, not small growth.
(Speed is for `make bench`, not tests.)
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

from tests.conftest import PASSWORD, Stack, wait_for

ALICE = "alice@example.test"
COUNT = 20_000
SESSIONS = 30
BOUND_KB_PER_SESSION = 100


def fill(maildir: Path, count: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = f"{1_600_000_000 + i}.M{i}P1.host,S=30:2,{'S' if i % 3 else ''}"
        (maildir / "cur" / name).write_bytes(b"Subject: m %d\n\nbody\n" % i)
    if os.geteuid() == 0:
        for p in [maildir.parent.parent, maildir.parent, maildir, *maildir.rglob("*")]:
            shutil.chown(p, "vmail", "vmail")


def rss_kb(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()  # noqa: SIM115 - one read of a proc file
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


class Idler:
    def __init__(self, stack: Stack) -> None:
        self.sock = socket.create_connection(stack.address("imap"), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")
        self.cmd(b"a LOGIN %s \"%s\"" % (ALICE.encode(), PASSWORD.encode()), b"a OK")
        self.cmd(b"b SELECT INBOX", b"b OK")
        self.cmd(b"c IDLE", b"+ ")

    def cmd(self, line: bytes, until: bytes) -> None:
        self.sock.sendall(line + b"\r\n")
        while not (got := self.file.readline()).startswith(until):
            assert got and b" NO " not in got and b" BAD " not in got, got

    def close(self) -> None:
        self.cmd(b"DONE", b"c OK")
        self.sock.close()


def test_idle_sessions_on_a_big_inbox_share_the_folder(bare_stack: Stack) -> None:
    stack = bare_stack
    # 31 sessions of one user from 127.0.0.1: over user_connections_per_client
    # (10), which is not what this test is about.
    stack.write_config(sections={"limits": {"exempt_loopback": True}})
    fill(stack.maildir(ALICE), COUNT)
    stack.start("mdad")
    imap_pid = stack.state("mdad")["children"]["imap"]
    first = Idler(stack)  # indexes the folder and keeps the user's store open
    before = rss_kb(imap_pid)
    idlers = [Idler(stack) for _ in range(SESSIONS)]
    after = rss_kb(imap_pid)
    per_session = (after - before) / SESSIONS
    assert per_session < BOUND_KB_PER_SESSION, f"{per_session:.0f} kB per idle session"

    # Shared, but each still sees news: a delivery reaches every idler.
    with stack.imap(ALICE) as c:
        assert c.append("INBOX", None, None, b"Subject: new\r\n\r\nhi\r\n")[0] == "OK"
    for idler in [first, *idlers]:
        wait_for(lambda i=idler: i.file.readline() == b"* %d EXISTS\r\n" % (COUNT + 1),
                 60, "EXISTS in IDLE")
    for idler in [first, *idlers]:
        idler.close()
