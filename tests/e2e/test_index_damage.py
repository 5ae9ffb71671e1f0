"""A damaged index against the real mdad: its bytes garbled while mdad is stopped, and while
an IMAP session has the mailbox selected. Either way the session goes on, the UIDs and flags
are those of before, and the damage is logged once."""

from __future__ import annotations

import re
import smtplib
import sqlite3
import time
from pathlib import Path

import pytest

from mda.store.index import FILE
from tests.conftest import Stack, wait_for

ALICE = "alice@example.test"
COUNT = 40
BODY = "some text of a line\r\n" * 40


@pytest.fixture
def mdad(bare_stack: Stack) -> Stack:
    bare_stack.start("mdad")
    with smtplib.LMTP(str(bare_stack.lmtp_socket), timeout=60) as lmtp:
        for i in range(COUNT):
            lmtp.sendmail("a@example.net", [ALICE],
                          (f"From: a@example.net\r\nTo: {ALICE}\r\nSubject: message {i}\r\n"
                           f"\r\n{BODY}").encode())
    bare_stack.wait_messages(ALICE, COUNT, 60)
    return bare_stack


def listing(c) -> dict[int, bytes]:
    """UID -> FLAGS (but \\Recent) of every message in the selected folder."""
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
    assert typ == "OK", data
    out = {}
    for d in data:
        m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)", d)
        assert m, d
        uid = int(m.group(1) or m.group(4))
        found = m.group(2) if m.group(1) else m.group(3)
        # \Recent is the index's to give (the first session to see a message);
        # a rebuilt index may give it again.
        out[uid] = b" ".join(sorted(f for f in found.split() if f != b"\\Recent"))
    return out


def prime(stack: Stack):
    """A session that selected INBOX, set flags, and fetched enough to fill the index."""
    c = stack.imap()
    assert c.select("INBOX")[0] == "OK"
    c.uid("STORE", "3,9", "+FLAGS", r"(\Flagged \Seen)")
    c.uid("STORE", "12", "+FLAGS", "(Important)")
    typ, _ = c.uid("FETCH", "1:*", "(ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE)")
    assert typ == "OK"
    return c


def garble(path: Path) -> None:
    """Every page but the first: the file still opens; its tables are garbage."""
    size = path.stat().st_size
    assert size > 8192
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(bytes((i * 7 + 13) & 0xFF for i in range(size - 4096)))


def damage_lines(stack: Stack) -> list[str]:
    return [line for line in stack.log("mdad").splitlines() if "index damaged" in line]


def set_aside(maildir: Path) -> list[str]:
    return sorted(p.name for p in maildir.iterdir() if p.name.startswith(FILE + ".damaged-"))


def test_index_damaged_while_mdad_was_stopped(mdad: Stack) -> None:
    c = prime(mdad)
    uidvalidity = c.response("UIDVALIDITY")[1]
    before = listing(c)
    assert len(before) == COUNT
    c.logout()
    assert mdad.stop("mdad") == 0
    index = mdad.maildir(ALICE) / FILE
    assert not Path(f"{index}-wal").exists() or Path(f"{index}-wal").stat().st_size == 0
    garble(index)
    mdad.start("mdad")
    c = mdad.imap()
    assert c.select("INBOX") == ("OK", [str(COUNT).encode()])
    assert c.response("UIDVALIDITY")[1] == uidvalidity
    assert listing(c) == before
    assert c.status("INBOX", "(MESSAGES)")[0] == "OK"
    c.logout()
    c = mdad.imap()  # the next login finds a whole index: nothing more to say
    c.select("INBOX")
    assert listing(c) == before
    c.logout()
    (line,) = damage_lines(mdad)
    assert ALICE in line and str(index) in line
    assert set_aside(mdad.maildir(ALICE))


def test_index_damaged_under_an_open_session(mdad: Stack) -> None:
    c = prime(mdad)
    before = listing(c)
    index = mdad.maildir(ALICE) / FILE

    # Another program writes to the index first (so mdad's cached pages are
    # stale and it reads the file again), everything goes into the file, then
    # the bytes are garbled under mdad's open connection.
    def checkpointed() -> bool:
        db = sqlite3.connect(index, isolation_level=None, timeout=60)
        try:
            db.execute("INSERT OR REPLACE INTO meta VALUES('poke', ?)", (str(time.time()),))
            return db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        finally:
            db.close()
    wait_for(checkpointed, 60, "a checkpoint of the index")
    garble(index)

    # The same session, the same connection: it goes on, with the same UIDs and flags.
    assert listing(c) == before
    typ, data = c.noop()
    assert typ == "OK"
    c.uid("STORE", "20", "+FLAGS", r"(\Answered)")
    after = listing(c)
    assert b"\\Answered" in after[20]
    c.logout()
    c = mdad.imap()
    c.select("INBOX")
    assert listing(c) == after
    c.logout()
    (line,) = damage_lines(mdad)
    assert ALICE in line and str(index) in line
    assert set_aside(mdad.maildir(ALICE))
