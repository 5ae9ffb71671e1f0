"""The maildrop over the real store: lock, snapshot, UIDL form, deletion and \\Seen at the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mda.pop3.maildrop import LOCK_NAME, InUse, Maildrop, dovecot_uidl
from mda.store import flags, maildir
from mda.store.content import to_crlf
from mda.store.errors import MessageGone
from mda.store.mailstore import MailStore

ROOT_DIR = Path(__file__).resolve().parents[3]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "Maildir"
    maildir.ensure_maildir(path, [])
    for i in range(3):
        maildir.deliver(path, f"Subject: {i}\n\nbody {i}\n".encode())
    return path


def test_uidl_is_dovecots_default_form() -> None:
    assert dovecot_uidl(1, 0x5F3A1B2C) == "000000015f3a1b2c"
    assert dovecot_uidl(0x1234ABCD, 1) == "1234abcd00000001"


def test_snapshot_with_crlf_sizes_and_uidl(root: Path) -> None:
    drop = Maildrop(root)
    try:
        assert [u for u, _ in drop.messages] == [1, 2, 3]
        for uid, size in drop.messages:
            data = drop.read(uid)
            assert data.endswith(b"\r\n") and b"\r\n\r\n" in data
            assert len(data) == size
        assert drop.uidl(2) == f"00000002{drop.uidvalidity:08x}"
        # A delivery during the session is for the next one.
        maildir.deliver(root, b"Subject: late\n\nx\n")
        assert [u for u, _ in drop.messages] == [1, 2, 3]
    finally:
        drop.close()
    drop = Maildrop(root)
    assert [u for u, _ in drop.messages] == [1, 2, 3, 4]
    drop.close()


def test_second_maildrop_is_in_use_until_the_first_closes(root: Path) -> None:
    first = Maildrop(root)
    with pytest.raises(InUse):
        Maildrop(root)
    assert (root / LOCK_NAME).exists()
    first.close()
    first.close()  # twice is harmless
    Maildrop(root).close()


def test_lock_holds_against_another_process(root: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from mda.pop3.maildrop import InUse, Maildrop
        try:
            Maildrop(Path({str(root)!r})).close()
        except InUse:
            sys.exit(3)
    """)
    drop = Maildrop(root)
    try:
        held = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, timeout=60)
        assert held.returncode == 3
    finally:
        drop.close()
    free = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, timeout=60)
    assert free.returncode == 0


def test_finish_deletes_and_marks_seen(root: Path) -> None:
    drop = Maildrop(root)
    assert drop.finish(deleted=[2], seen=[1, 2]) == 1
    drop.close()
    with MailStore(root) as store:
        inbox = store.open_folder("INBOX")
        assert inbox.uids == [1, 3]
        assert inbox.flags(1) == {flags.SEEN}
        assert inbox.flags(3) == frozenset()


def test_message_expunged_elsewhere_is_gone_but_the_rest_works(root: Path) -> None:
    drop = Maildrop(root)
    try:
        with MailStore(root) as imap:
            imap.open_folder("INBOX").expunge([2], require_deleted=False)
        with pytest.raises(MessageGone):
            drop.read(2)
        assert drop.read(3).startswith(b"Subject: 2")
        assert drop.finish(deleted=[2, 3], seen=[]) == 2
    finally:
        drop.close()
    assert os.listdir(root / "new") == [] and len(os.listdir(root / "cur")) == 1


@pytest.mark.parametrize("data", [
    b"", b"a\n", b"a\r\n", b"a\r\r\n", b"\n\n.\n", b"mixed\r\nbare\nend", b"\r", b"x\r\n\n\r\n",
    b"Subject: s\n\n" + b"line\n" * 500 + b"no end"])
def test_to_crlf_is_the_stores(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "Maildir"
    maildir.ensure_maildir(path, [])
    (path / "cur" / "1700000000.M1P1.test:2,").write_bytes(data)
    drop = Maildrop(path)
    try:
        assert drop.folder is not None
        assert drop.read(1) == drop.folder.read_crlf(1) == to_crlf(data)
        # The definition: every LF not already after a CR becomes CRLF.
        assert to_crlf(data) == re.sub(rb"(?<!\r)\n", b"\r\n", data)
        assert drop.messages == [(1, len(to_crlf(data)))]
    finally:
        drop.close()
