"""Sessions of one user changing one INBOX at the same time, in one imap process.

Their views share the folder's arrays (mda/store/viewstate.py) whenever
they show the same state; this drives them from threads at once (STORE,
APPEND, EXPUNGE, SELECT, NOOP) while watchers poll with NOOP and keep,
as a client does, a copy built only from what they were told (EXPUNGE,
FETCH FLAGS, EXISTS). A view whose state changed without telling (or a
shared state changed under it) makes the copy differ from what a fresh
session shows at the end: adopting a snapshot of another modseq, or
changing shared arrays in place, fails it (both tried).
"""

from __future__ import annotations

import random
import re
import socket
import threading

from tests.conftest import PASSWORD, Stack

ALICE = "alice@example.test"
FLAGS = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "$Work"]
ROUNDS = 40


def state(c) -> list[tuple[int, frozenset[bytes]]]:
    typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    out = []
    for line in data:
        if not line:
            continue
        uid = int(re.search(rb"UID (\d+)", line).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).split()
        out.append((uid, frozenset(flags) - {b"\\Recent"}))
    return sorted(out)


def worker(stack: Stack, seed: int, errors: list[BaseException]) -> None:
    rnd = random.Random(seed)
    try:
        c = stack.imap(ALICE)
        assert c.select("INBOX")[0] == "OK"
        for _ in range(ROUNDS):
            action = rnd.random()
            if action < 0.2:
                typ, _ = c.append("INBOX", None, None, b"Subject: x\r\n\r\nbody\r\n")
            elif action < 0.3:
                typ, _ = c.expunge()
            elif action < 0.8:
                flag = rnd.choice(FLAGS)
                mode = rnd.choice(["+FLAGS", "-FLAGS"])
                typ, _ = c.uid("STORE", f"{rnd.randint(1, 60)}:*", mode, f"({flag})")
            elif action < 0.85:
                typ, _ = c.select("INBOX")  # a new view, perhaps of a shared state
            else:
                typ, _ = c.noop()
            assert typ == "OK"
        c.logout()
    except BaseException as e:  # reported by the test
        errors.append(e)


class Watcher:
    """A client that knows the mailbox only from the server's untagged responses,
    whichever command they came with (EXISTS, EXPUNGE, FETCH)."""

    def __init__(self, stack: Stack) -> None:
        self.sock = socket.create_connection(stack.address("imap"), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")
        self.n = 0
        self.seen: list[list] = []  # [uid, flags] by sequence number; None until fetched
        self.cmd(f'LOGIN {ALICE} "{PASSWORD}"')
        self.cmd("SELECT INBOX")
        self._fetch_unknown()

    def cmd(self, text: str) -> None:
        self.n += 1
        tag = b"w%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        while not (line := self.file.readline()).startswith(tag + b" "):
            assert line, "connection closed"
            self._untagged(line)
        assert line.startswith(tag + b" OK"), (text, line)

    def _untagged(self, line: bytes) -> None:
        if m := re.match(rb"\* (\d+) EXISTS\r\n", line):
            count = int(m.group(1))
            assert count >= len(self.seen), "EXISTS may not shrink the mailbox"
            self.seen += [[None, None] for _ in range(count - len(self.seen))]
        elif m := re.match(rb"\* (\d+) EXPUNGE\r\n", line):
            del self.seen[int(m.group(1)) - 1]
        elif m := re.match(rb"\* (\d+) FETCH \((.*)\)\r\n", line):
            entry = self.seen[int(m.group(1)) - 1]
            if u := re.search(rb"UID (\d+)", m.group(2)):
                assert entry[0] in (None, int(u.group(1))), "a sequence number changed its UID"
                entry[0] = int(u.group(1))
            if f := re.search(rb"FLAGS \(([^)]*)\)", m.group(2)):
                entry[1] = frozenset(f.group(1).split()) - {b"\\Recent"}

    def _fetch_unknown(self) -> None:
        while unknown := [i + 1 for i, (uid, _) in enumerate(self.seen) if uid is None]:
            self.cmd(f"FETCH {unknown[0]}:{unknown[-1]} (UID FLAGS)")

    def poll(self) -> None:
        self.cmd("NOOP")
        self._fetch_unknown()

    def known(self) -> list[tuple[int, frozenset[bytes]]]:
        return sorted((uid, flags) for uid, flags in self.seen)


def test_sessions_changing_one_inbox_at_once_agree(bare_stack: Stack) -> None:
    stack = bare_stack
    stack.start("mdad")
    with stack.imap(ALICE) as c:
        for i in range(50):
            assert c.append("INBOX", None, None, b"Subject: %d\r\n\r\nbody\r\n" % i)[0] == "OK"
    watchers = [Watcher(stack) for _ in range(3)]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=worker, args=(stack, seed, errors)) for seed in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for w in watchers:
            w.poll()
    for t in threads:
        t.join(120)
    assert not errors, errors

    with stack.imap(ALICE) as fresh:
        fresh.select("INBOX", readonly=True)
        truth = state(fresh)
    assert truth  # some messages survive the expunges
    for w in watchers:
        w.poll()
        assert w.known() == truth
        w.cmd("LOGOUT")
