"""The Maildirs' filesystem full: 452 4.3.1 per recipient at LMTP, nothing half
written, the mail waits in the queue and arrives once there is room again.

The mail root is a small tmpfs (so root only); a filler file takes the room.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")

BIG = b"Subject: big\r\nX-Seq: 2\r\n\r\n" + (b"z" * 500 + b"\r\n") * 200  # ~100 KB


def fill(root: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the filesystem at root."""
    filler = root / "filler"
    st = os.statvfs(root)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def files(stack, address: str, sub: str) -> list[str]:
    d = stack.maildir(address) / sub
    return sorted(os.listdir(d)) if d.is_dir() else []


def lmtp_replies(stack, qid_prefix: str = "") -> list[tuple[str, str]]:
    """(rcpt, reply) of each LMTP delivery line in mtad's log."""
    return re.findall(r"\[info\s*\] delivery .*?queue_id=(\w+) rcpt=(\S+) reply='([^']*)' "
                      r".*?route=lmtp", stack.log("mtad"))


def test_full_maildir_filesystem_answers_452_431_and_delivers_when_room_returns(bare_stack):
    stack = bare_stack
    mail = stack.root / "mail"
    mail.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mail)],
                   check=True)
    try:
        stack.start("mdad")
        stack.start("mtad")
        # alice's Maildir exists already; bob's must be made on a full disk.
        with stack.smtp() as s:
            s.sendmail("s@remote.test", ["alice@example.test"], b"X-Seq: 1\r\n\r\nfirst\r\n")
        stack.wait_messages("alice@example.test", 1)
        before = files(stack, "alice@example.test", "new")

        # Room for a Maildir's directories, not for this message: the write
        # starts and fails part way.
        filler = fill(mail, leave=32 * 1024)
        with stack.smtp() as s:
            s.sendmail("s@remote.test", ["alice@example.test", "bob@example.test"], BIG)
        qid = stack.queue_files()[0].removesuffix(".env")

        def refused_twice():
            mine = [(r, rep) for q, r, rep in lmtp_replies(stack) if q == qid]
            return len(mine) >= 4 and mine  # two rounds of two recipients

        replies = wait_for(refused_twice, 60, "two rounds of LMTP refusals")
        for rcpt, reply in replies:
            assert rcpt in ("alice@example.test", "bob@example.test")
            assert reply.startswith(f"452 4.3.1 <{rcpt}>"), reply
        assert "delivery failed" in stack.log("mdad")
        # The queue keeps it; no partial file in tmp/ or new/, no half-made Maildir.
        assert stack.queue_files() == [f"{qid}.env"]
        assert files(stack, "alice@example.test", "new") == before
        assert files(stack, "alice@example.test", "tmp") == []
        bob = stack.maildir("bob@example.test")
        assert not bob.exists() or files(stack, "bob@example.test", "new") == []
        assert not bob.exists() or files(stack, "bob@example.test", "tmp") == []
        leftovers = [p.name for p in bob.parent.glob(".Maildir.*")] if bob.parent.exists() else []
        assert leftovers == []

        filler.unlink()
        stack.wait_messages("alice@example.test", 2, timeout=60)
        stack.wait_messages("bob@example.test", 1, timeout=60)
        wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")
        # Once each, whole.
        assert [m.count(b"z" * 500) for m in stack.messages("bob@example.test")] == [200]
        assert sorted(m.count(b"z" * 500) for m in stack.messages("alice@example.test")) == [0, 200]
        assert files(stack, "alice@example.test", "tmp") == []
    finally:
        stack.stop_all()
        subprocess.run(["umount", "-l", str(mail)], check=False)
