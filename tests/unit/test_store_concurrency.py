"""Several sessions and processes on one folder: UIDs stay unique, nothing crashes or is lost."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mda.store import flags, maildir, sync, uidlist
from mda.store.mailstore import MailStore


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "Maildir"
    maildir.ensure_maildir(path, ["Archive"])
    return path


def records(root: Path) -> dict[int, str]:
    parsed = uidlist.parse((root / uidlist.NAME).read_bytes())
    assert parsed is not None
    return {u: r.base for u, r in parsed[0].records.items()}


def run_threads(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            target(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_threads_appending_get_distinct_uids(root: Path) -> None:
    got: list[list[int]] = [[] for _ in range(4)]

    def append(i: int) -> None:
        with MailStore(root) as store:
            for j in range(25):
                got[i].append(store.append("INBOX", f"Subject: {i}-{j}\r\n\r\n".encode()).uid)

    assert run_threads(4, append) == []
    every = sorted(u for g in got for u in g)
    assert every == list(range(1, 101))
    assert all(g == sorted(g) for g in got)
    assert sorted(records(root)) == every
    with MailStore(root) as store:
        assert store.status("INBOX").messages == 100
        assert store.open_folder("INBOX").uids == every


def _process_appends(root: str, who: int, n: int) -> list[int]:
    with MailStore(Path(root)) as store:
        return [store.append("INBOX", f"Subject: p{who}-{j}\r\n\r\n".encode()).uid
                for j in range(n)]


def _process_delivers(root: str, n: int) -> None:
    for j in range(n):
        maildir.deliver(Path(root), f"Subject: lmtp {j}\r\n\r\n".encode())


def _process_reads(root: str, rounds: int) -> int:
    seen = 0
    with MailStore(Path(root)) as store:
        folder = store.open_folder("INBOX")
        for _ in range(rounds):
            folder.refresh()
            for uid in folder.uids[-3:]:
                folder.read(uid)
            folder.store(folder.uids[-2:], [flags.SEEN])
            seen = len(folder)
    return seen


def test_processes_share_one_folder(root: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(5) as pool:
        appends = [pool.apply_async(_process_appends, (str(root), w, 15)) for w in range(2)]
        delivery = pool.apply_async(_process_delivers, (str(root), 20))
        readers = [pool.apply_async(_process_reads, (str(root), 20)) for _ in range(2)]
        uids = [u for a in appends for u in a.get(timeout=120)]
        delivery.get(timeout=120)
        for r in readers:
            r.get(timeout=120)
    assert len(set(uids)) == 30
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert len(folder) == 50
        assert sorted(records(root)) == folder.uids
        assert set(uids) <= set(folder.uids)
        assert len(set(records(root).values())) == 50


def test_flag_storm_and_refreshes_do_not_crash(root: Path) -> None:
    for j in range(30):
        maildir.deliver(root, f"Subject: {j}\r\n\r\n".encode())
    with MailStore(root) as store:
        store.open_folder("INBOX")  # assign UIDs

    def work(i: int) -> None:
        with MailStore(root) as store:
            folder = store.open_folder("INBOX")
            for k in range(15):
                if i % 2:
                    mode = "add" if k % 2 else "remove"
                    folder.store(folder.uids, [flags.FLAGGED, f"kw{i}"], mode)
                else:
                    folder.refresh()
                    for uid in folder.uids[:5]:
                        assert folder.read(uid).startswith(b"Subject: ")

    assert run_threads(4, work) == []
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert folder.uids == list(range(1, 31))
        assert len(os.listdir(root / "cur")) == 30


def test_file_hidden_from_one_listing_is_not_expunged(root: Path, monkeypatch) -> None:
    names = [maildir.deliver(root, f"Subject: {j}\r\n\r\n".encode()) for j in range(3)]
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        real = sync.scan_dir
        hidden = {"left": 1}

        def racing_scan(path: Path) -> dict[str, str]:
            found = real(path)
            if path.name == "cur" and hidden["left"]:
                hidden["left"] -= 1
                found.pop(names[1], None)  # as if a rename raced the readdir
            return found

        monkeypatch.setattr(sync, "scan_dir", racing_scan)
        # Someone else's change to cur/ makes the next refresh list it again.
        os.rename(root / "cur" / f"{names[0]}:2,", root / "cur" / f"{names[0]}:2,S")
        changes = folder.refresh()
        assert hidden["left"] == 0
        assert changes.expunged == [] and changes.flags == [1]
        assert sorted(records(root)) == [1, 2, 3]


def test_a_stale_uidlist_lock_does_not_block_forever(root: Path) -> None:
    # Left by a process of this host that crashed: taken over at once, as
    # Dovecot does (a lock from elsewhere waits 120 s: tests/unit/test_store_lock.py).
    crashed = subprocess.Popen([sys.executable, "-c", "pass"])
    crashed.wait()
    lock = root / "dovecot-uidlist.lock"
    lock.write_text(f"{crashed.pid}:{socket.gethostname()}\n")
    with MailStore(root) as store:
        assert store.append("INBOX", b"x\r\n").uid == 1
    assert not lock.exists()


def test_many_sessions_open_a_new_index_at_once(tmp_path: Path) -> None:
    # SQLite switches a new file to WAL without calling its busy handler: all
    # but the first of several sessions opening a new user's index at the same
    # moment used to fail with "database is locked".
    from mda.store.index import Index

    for n in range(40):
        path = tmp_path / str(n)
        maildir.ensure_maildir(path, [])

        def open_index(i: int, path: Path = path) -> None:
            Index(path).close()

        assert run_threads(8, open_index) == []
        index = Index(path)
        assert index.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        index.close()
