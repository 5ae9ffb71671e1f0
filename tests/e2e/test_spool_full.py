"""A full spool: 452 4.3.1 at SMTP, nothing half-written left, no bounce lost.

The spool is a small tmpfs of its own, filled by a file the test writes
there as root (the reserve below is Postfix's queue_minfree: new mail is
refused while less than 1.5 x max_message_size is free).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")

MAX_SIZE = 256 * 1024
RESERVE = int(1.5 * MAX_SIZE)
NO_ROOM = (452, "4.3.1")


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Filler:
    """A file that takes the spool's space, leaving as much free as a test wants."""

    def __init__(self, spool: Path) -> None:
        self.path = spool / "filler"
        self.spool = spool

    def leave(self, room: int) -> None:
        """Grow or shrink the file until about room bytes are free."""
        size = self.path.stat().st_size if self.path.exists() else 0
        target = max(0, size + free(self.spool) - room)
        with open(self.path, "ab") as f:
            f.truncate(min(size, target))
            while f.tell() < target:
                f.write(b"\0" * min(64 * 1024, target - f.tell()))
                f.flush()

    def fill(self) -> None:
        """Every byte, until the filesystem says ENOSPC."""
        with open(self.path, "ab", buffering=0) as f:
            while True:
                try:
                    f.write(b"\0" * 4096)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    return

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def small_spool(bare_stack):
    stack = bare_stack
    spool = stack.root / "spool"
    spool.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(spool)],
                   check=True)
    stack.write_config(max_message_size=MAX_SIZE)
    try:
        yield stack, Filler(spool)
    finally:
        stack.stop_all()
        subprocess.run(["umount", "-l", str(spool)], check=False)


def reply(resp: tuple[int, bytes]) -> tuple[int, str]:
    return resp[0], resp[1].decode().split(" ", 1)[0]


def leftovers(stack) -> list[str]:
    spool = stack.root / "spool"
    return sorted(p.name for p in (spool / "incoming").iterdir()) + sorted(
        p.name for p in (spool / "queue").iterdir()
        if p.suffix != ".env" and not p.with_suffix(".env").exists())


def test_below_the_reserve_mail_is_refused_at_mail_from_and_after_the_data(small_spool):
    stack, filler = small_spool
    stack.start("mdad")
    stack.start("mtad")
    body = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 100  # 100 KB
    with stack.smtp() as s:
        s.ehlo()
        filler.leave(RESERVE - 64 * 1024)
        assert reply(s.mail("s@remote.test")) == NO_ROOM
        # Room again: MAIL is taken, but not when its SIZE= would eat into the reserve.
        filler.leave(RESERVE + 200 * 1024)
        assert reply(s.mail("s@remote.test", ["SIZE=250000"])) == NO_ROOM
        assert s.mail("s@remote.test", ["SIZE=100000"])[0] == 250
        assert s.rcpt("alice@example.test")[0] == 250
        # The disk fills while the data comes: 452 after the end of it, nothing left behind.
        s.putcmd("data")
        assert s.getreply()[0] == 354
        s.send(body[: len(body) // 2])
        wait_for(lambda: list((stack.root / "spool" / "incoming").iterdir()), 60,
                 "the message file to be opened")
        filler.fill()
        s.send(body[len(body) // 2:] + b".\r\n")
        assert reply(s.getreply()) == NO_ROOM
        assert leftovers(stack) == []
        assert stack.queue_files() == []
        # The session goes on; with room again the same message is taken.
        filler.remove()
        s.sendmail("s@remote.test", ["alice@example.test"], body)
    (got,) = stack.wait_messages("alice@example.test", 1)
    assert got.endswith(body.replace(b"\r\n", b"\n"))
    log = stack.log("mtad")
    assert "spool below its free-space reserve" in log
    assert re.search(r"spooling failed .*No space left on device", log)


def test_a_bounce_that_meets_a_full_spool_is_sent_once_there_is_room(small_spool):
    stack, filler = small_spool
    # Retries far enough apart for the test to fill the disk again between two.
    stack.write_config(max_message_size=MAX_SIZE, retry_schedule=[3, 3, 3])
    stack.start("mtad")  # no MDA yet: what is accepted waits in the queue
    with stack.smtp() as s:
        s.sendmail("alice@example.test", ["bob@example.test"], b"Subject: to bob\r\n\r\nb\r\n")
        s.sendmail("s@remote.test", ["carol@example.test"], b"Subject: to carol\r\n\r\nc\r\n")
    assert len(stack.queue_files()) == 2
    # bob is gone by the time the MDA takes mail: his copy bounces, to alice.
    users = stack.root / "etc" / "users"
    users.write_text("".join(line for line in users.read_text().splitlines(keepends=True)
                             if not line.startswith("bob@")))
    filler.fill()
    stack.start("mdad")
    # What waited is delivered from a full spool; its removal frees a little.
    (carol,) = stack.wait_messages("carol@example.test", 1, timeout=60)
    assert b"to carol" in carol
    wait_for(lambda: len(stack.queue_files()) == 1, 60, "carol's copy to leave the queue")
    filler.fill()
    wait_for(lambda: "DSN not written" in stack.log("mtad"), 60, "the DSN to meet the full disk")
    # Rounds later the message is still there, its DSN owed, and new mail is refused.
    wait_for(lambda: stack.log("mtad").count("DSN not written") >= 3, 60, "more DSN attempts")
    assert len(stack.queue_files()) == 1
    assert stack.messages("alice@example.test") == []
    with stack.smtp() as s:
        s.ehlo()
        assert reply(s.mail("s@remote.test")) == NO_ROOM
    filler.remove()
    (dsn,) = stack.wait_messages("alice@example.test", 1, timeout=60)
    assert b"bob@example.test" in dsn and b"5.1.1" in dsn
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")
    assert leftovers(stack) == []
    assert len(stack.messages("alice@example.test")) == 1  # one DSN, not one per attempt
