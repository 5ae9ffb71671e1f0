"""One user's store work must not stall another user's: the per-user cap.

The store blocks, so IMAP runs its calls in a pool of threads shared by the
imap process. Before the cap, one user's sessions could fill that pool with
long `SEARCH BODY`s (8 of them took another user's STATUS from 8 ms to
9.4 s). Now a user runs at most limits.store_threads_per_user calls at once.

Without timing: more of alice's searches than the pool has threads are under
way, and bob's STATUS must be answered while most of them still wait. Without
the cap it waits for a pool thread, behind the pool's worth of searches.
"""

from __future__ import annotations

import socket

from mda.imap.session import STORE_THREADS
from tests.conftest import PASSWORD, Stack, wait_for
from tests.e2e.test_imap_idle_memory import fill

ALICE = "alice@example.test"
BOB = "bob@example.test"
# Three times the pool: without the cap, two pools' worth wait ahead of bob.
SEARCHES = 3 * STORE_THREADS
# Enough that each search takes a while, small enough to write in a few seconds.
MESSAGES = 3000


class Client:
    def __init__(self, stack: Stack, user: str) -> None:
        self.sock = socket.create_connection(stack.address("imap"), timeout=120)
        self.seen = b""  # received, not yet taken by wait()
        self.wait(b"*")  # the greeting
        self.command(b'a LOGIN %s "%s"' % (user.encode(), PASSWORD.encode()))

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\r\n")

    def command(self, line: bytes) -> None:
        self.send(line)
        self.wait(line.split()[0])

    def answered(self, tag: bytes) -> bool:
        """Whether the command's tagged OK has arrived, without waiting for it."""
        self.sock.settimeout(0)
        try:
            while data := self.sock.recv(1 << 20):
                self.seen += data
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(120)
        return self._tagged(tag)

    def wait(self, tag: bytes) -> None:
        while not self._tagged(tag):
            data = self.sock.recv(1 << 20)
            assert data, "connection closed"
            self.seen += data
        self.seen = b""

    def _tagged(self, tag: bytes) -> bool:
        text = b"\r\n" + self.seen
        i = text.find(b"\r\n" + tag + b" ")
        if i < 0 or not text.endswith(b"\r\n"):
            return False
        assert text[i + 2:].startswith(tag + b" OK"), text[i:]
        return True


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in ticks of 1/100 s


def test_one_users_searches_leave_room_for_another_users_status(bare_stack: Stack) -> None:
    stack = bare_stack
    stack.write_config(sections={"limits": {"exempt_loopback": True,
                                            "user_connections_per_client": 1000}})
    fill(stack.maildir(ALICE), MESSAGES)
    stack.start("mdad")
    imap_pid = stack.state("mdad")["children"]["imap"]
    bob = Client(stack, BOB)
    bob.command(b"w STATUS INBOX (MESSAGES)")
    alices = [Client(stack, ALICE) for _ in range(SEARCHES)]
    for c in alices:
        c.command(b"b SELECT INBOX")

    start = cpu_seconds(imap_pid)
    for c in alices:
        c.send(b"s SEARCH BODY nowhere-to-be-found")
    # Every search has been read and handed on once the process is busy with them.
    wait_for(lambda: cpu_seconds(imap_pid) > start + 0.3, 60, "alice's searches to run")
    bob.send(b"t STATUS INBOX (MESSAGES UNSEEN)")

    bob.wait(b"t")
    # Which of alice's searches had been answered when bob's STATUS was.
    answered = [c for c in alices if c.answered(b"s")]
    for c in alices:
        c.wait(b"s")
    # With the cap, alice's searches run two at a time and bob's STATUS at
    # once; without it, it waits behind every search the pool took first.
    assert len(answered) < SEARCHES // 2, (
        f"bob's STATUS was answered after {len(answered)} of alice's {SEARCHES} searches")
