"""The SQLite index: a cache that can be lost, modseqs, and opening big folders cheaply."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import pytest

from mda.store import flags, maildir, sync
from mda.store.index import FILE
from mda.store.mailstore import MailStore


def deliver(root: Path, n: int) -> None:
    for i in range(n):
        maildir.deliver(root, f"Subject: {i}\r\n\r\nbody\r\n".encode())


def drop_index(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path = root / (FILE + suffix)
        if path.exists():
            os.unlink(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "Maildir"
    maildir.ensure_maildir(path, ["Archive"])
    return path


def test_lost_index_is_rebuilt_with_the_same_uids(root: Path) -> None:
    deliver(root, 4)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        folder.store([2], [flags.SEEN, "kw"])
        folder.store([3], [flags.DELETED])
        folder.expunge()
        folder.put_parsed(1, "envelope", b"cached")
        before = store.status("INBOX")
        uids, uidvalidity = folder.uids, folder.uidvalidity
    drop_index(root)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert folder.uids == uids == [1, 2, 4]
        assert folder.uidvalidity == uidvalidity
        assert folder.flags(2) == {flags.SEEN, "kw"}
        assert folder.get_parsed(1, "envelope") is None  # cache gone, rebuilt on demand
        after = store.status("INBOX")
        assert (after.messages, after.uidnext, after.unseen) == (3, before.uidnext, 2)
        # Modseqs start above anything handed out before, so CONDSTORE clients resync.
        assert after.highestmodseq > before.highestmodseq
        assert min(folder.modseq(u) for u in folder.uids) > before.highestmodseq - 1


def test_index_deleted_under_an_open_session(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as s1:
        folder = s1.open_folder("INBOX")
        folder.store([1], [flags.SEEN])
        drop_index(root)
        with MailStore(root) as s2:
            s2.open_folder("INBOX").store([2], [flags.FLAGGED])
        changes = folder.refresh()
        assert not changes.expunged and not changes.added
        assert 2 in changes.flags and folder.flags(2) == {flags.FLAGGED}
        assert folder.flags(1) == {flags.SEEN}


def test_damaged_index_is_replaced(root: Path) -> None:
    deliver(root, 1)
    (root / FILE).write_bytes(b"this is not a database" * 100)
    with MailStore(root) as store:
        assert store.open_folder("INBOX").uids == [1]


def test_modseqs_grow_with_each_change(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        m0 = store.status("INBOX").highestmodseq
        r1 = folder.store([1], [flags.SEEN])
        assert r1.modseq == m0 + 1 == folder.modseq(1) == store.status("INBOX").highestmodseq
        assert folder.modseq(2) <= m0
        r2 = folder.store([1, 2], [flags.FLAGGED])
        assert r2.modseq == r1.modseq + 1
        assert folder.store([1], [flags.FLAGGED]).changed == {}  # no change, no new modseq
        assert store.status("INBOX").highestmodseq == r2.modseq
        store.append("INBOX", b"x\r\n")
        assert store.status("INBOX").highestmodseq == r2.modseq + 1
        assert folder.highestmodseq == r2.modseq
        folder.refresh()
        assert folder.highestmodseq == r2.modseq + 1


def test_sessions_far_behind_compare_everything(root: Path, monkeypatch) -> None:
    monkeypatch.setattr(sync, "TOMBSTONES_KEPT", 2)
    deliver(root, 8)
    with MailStore(root) as s1, MailStore(root) as s2:
        a, b = s1.open_folder("INBOX"), s2.open_folder("INBOX")
        for uid in (1, 2, 3, 4, 5):
            a.expunge([uid], require_deleted=False)
        changes = b.refresh()
        assert changes.expunged == [1, 2, 3, 4, 5]
        assert b.uids == [6, 7, 8]


class Watch:
    """Records which message files are opened and which directories listed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.opened: list[str] = []
        self.listed: list[str] = []
        msgdirs = (str(root / "cur"), str(root / "new"))

        real_open, real_os_open, real_scandir = builtins.open, os.open, os.scandir

        def note(path) -> None:
            if isinstance(path, (str, os.PathLike)) and str(path).startswith(msgdirs):
                self.opened.append(str(path))

        def fake_open(file, *args, **kwargs):
            note(file)
            return real_open(file, *args, **kwargs)

        def fake_os_open(path, *args, **kwargs):
            note(path)
            return real_os_open(path, *args, **kwargs)

        def fake_scandir(path="."):
            self.listed.append(str(path))
            return real_scandir(path)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "scandir", fake_scandir)


def test_big_folder_opens_without_reading_messages(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        os.makedirs(root / sub)
    count = 20_000
    for i in range(count):
        name = f"{1_600_000_000 + i}.M{i}P1.host,S=6" + (":2,S" if i % 3 else "")
        with open(root / ("cur" if i % 3 else "new") / name, "wb") as f:
            f.write(b"x: y\n\n")
    watch = Watch(monkeypatch, root)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert len(folder) == count and folder.uids[-1] == count
        assert watch.opened == []  # the first open lists the directories, opens no message
        assert str(root / "cur") in watch.listed
    watch.listed.clear()
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        status = store.status("INBOX")
        assert len(folder) == status.messages == count
        assert status.unseen == len(folder.unseen_uids()) == 6_667  # those from new/
    assert watch.opened == []
    # The second open trusts the index: cur/ is not even listed again.
    assert str(root / "cur") not in watch.listed


def test_big_flag_change_is_one_pass(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        os.makedirs(root / sub)
    # More than index._WHOLE_FOLDER: the rows are read in one pass over the folder.
    for i in range(6_000):
        (root / "cur" / f"{1_600_000_000 + i}.M{i}P1.host:2,").write_bytes(b"x\n")
    with MailStore(root) as store, MailStore(root) as other:
        folder = store.open_folder("INBOX")
        watcher = other.open_folder("INBOX")
        bumps = []
        real_bump = store.index.bump_modseq
        monkeypatch.setattr(store.index, "bump_modseq", lambda fid: bumps.append(fid) or
                            real_bump(fid))
        result = folder.store([*folder.uids[100:], 7_000], [flags.SEEN])
        assert len(result.changed) == 5_900 and len(bumps) == 1
        assert result.missing == [7_000]
        assert sorted(n.endswith(":2,S") for n in os.listdir(root / "cur")) == \
            [False] * 100 + [True] * 5_900
        assert folder.flags(100) == frozenset() and folder.flags(101) == {flags.SEEN}
        changes = watcher.refresh()
        assert len(changes.flags) == 5_900
        assert not folder.refresh()


def test_index_is_private_and_a_busy_one_is_not_thrown_away(root: Path, monkeypatch) -> None:
    import sqlite3
    import stat

    from mda.store import index

    deliver(root, 1)
    with MailStore(root) as store:
        store.open_folder("INBOX")
        for suffix in ("", "-wal", "-shm"):
            path = root / (FILE + suffix)
            assert not path.exists() or stat.S_IMODE(path.stat().st_mode) == 0o600
    inode = (root / FILE).stat().st_ino

    def locked(self):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(index.Index, "_connect", locked)
    with pytest.raises(sqlite3.OperationalError):
        MailStore(root)
    assert (root / FILE).stat().st_ino == inode
