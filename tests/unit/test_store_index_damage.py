"""A damaged index (SQLite's "database disk image is malformed"): found on open or in the
middle of a session, set aside, rebuilt from the Maildir with the same UIDs, logged once."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from mda.store import flags, indexrepair, maildir
from mda.store.index import FILE
from mda.store.mailstore import MailStore

USER = "alice@example.test"


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Each test is a process that has checked no index yet."""
    indexrepair._checked.clear()
    yield
    indexrepair._checked.clear()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "Maildir"
    maildir.ensure_maildir(path, ["Archive"])
    for i in range(30):
        maildir.deliver(path, f"Subject: {i}\r\n\r\n{'body ' * 200}\r\n".encode())
    return path


def uids_and_flags(store: MailStore) -> tuple[int, list[int], dict[int, frozenset[str]]]:
    folder = store.open_folder("INBOX")
    try:
        return folder.uidvalidity, list(folder.uids), folder.flags_of(folder.uids)
    finally:
        folder.close()


def garble(path: Path) -> None:
    """Overwrite every page but the first (the header and the schema survive, so
    the file opens and only a check or a query finds the damage)."""
    size = path.stat().st_size
    assert size > 8192, "the index should have pages to damage"
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(bytes((i * 7 + 13) & 0xFF for i in range(size - 4096)))


def garble_under_open_sessions(path: Path) -> None:
    """Damage the file while others have it open: a write from another
    connection first (so their caches are stale and they read the file again),
    everything checkpointed into the file, then the bytes."""
    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("INSERT OR REPLACE INTO meta VALUES('poke', ?)", (str(time.time()),))
        busy, _, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        c.close()
    garble(path)


def whole(path: Path) -> bool:
    c = sqlite3.connect(path)
    try:
        return c.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return False
    finally:
        c.close()


def damage_lines(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "index damaged"]


def set_aside(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if indexrepair.DAMAGED in p.name)


def test_damage_found_on_open_is_set_aside_and_rebuilt_with_the_same_uids(root: Path) -> None:
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        folder.store([3, 7], [flags.SEEN, flags.FLAGGED])
        folder.close()
        before = uids_and_flags(store)
    garble(root / FILE)
    indexrepair._checked.clear()  # a new process, as after a restart
    with structlog.testing.capture_logs() as logs, MailStore(root, user=USER) as store:
        assert uids_and_flags(store) == before
        assert store.status("INBOX").messages == 30
    (line,) = damage_lines(logs)
    assert line["log_level"] == "warning"
    assert line["user"] == USER and line["path"] == str(root / FILE)
    assert line["error"]  # what quick_check or SQLite said
    moved = set_aside(root)
    assert moved and moved[0].startswith(FILE + ".damaged-")
    assert line["moved_to"] == str(root / moved[0])
    # The set-aside file is the damaged one, and the new one is whole.
    assert not whole(root / moved[0])
    assert whole(root / FILE)


def test_a_file_that_is_not_a_database_at_all(root: Path) -> None:
    with MailStore(root) as store:
        before = uids_and_flags(store)
    (root / FILE).write_bytes(b"\x00garbage" * 2000)
    with structlog.testing.capture_logs() as logs, MailStore(root, user=USER) as store:
        assert uids_and_flags(store) == before
    (line,) = damage_lines(logs)
    assert "not a database" in line["error"]


def test_damage_met_mid_session_is_repaired_and_the_call_goes_on(root: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        store = MailStore(root, user=USER)
        other = MailStore(root, user=USER)  # another session, its own connection
        try:
            folder = store.open_folder("INBOX")
            folder.store([5], [flags.ANSWERED])
            uids = list(folder.uids)
            before = uids_and_flags(other)
            garble_under_open_sessions(root / FILE)
            # The next calls read the damaged pages; they repair and go on.
            assert folder.refresh().expunged == []
            assert list(folder.uids) == uids
            assert sorted(folder.sizes()) == uids
            assert flags.ANSWERED in folder.flags(5)
            assert store.status("INBOX").messages == 30
            # The other session follows the new file; nothing is logged twice.
            assert uids_and_flags(other) == before
            assert other.status("Archive").messages == 0
            folder.store([6], [flags.SEEN])
            assert flags.SEEN in uids_and_flags(other)[2][6]
            folder.close()
        finally:
            store.close()
            other.close()
    assert len(damage_lines(logs)) == 1
    # One set: the file, and beside it its -wal and -shm.
    moved = set_aside(root)
    assert {n.removeprefix(moved[0]) for n in moved} == {"", "-wal", "-shm"}


def test_an_append_that_meets_damage_is_not_run_twice(root: Path) -> None:
    with MailStore(root, user=USER) as store:
        store.status("INBOX")
        garble_under_open_sessions(root / FILE)
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(sqlite3.DatabaseError):
                store.append("INBOX", b"Subject: new\r\n\r\nx\r\n")
            # Recovered all the same: the client's next try works.
            result = store.append("INBOX", b"Subject: new\r\n\r\nx\r\n")
        assert len(damage_lines(logs)) == 1
        assert result.uid == 31
        assert store.status("INBOX").messages == 31


def test_other_errors_are_not_damage() -> None:
    assert indexrepair.is_damage(sqlite3.DatabaseError("database disk image is malformed"))
    assert not indexrepair.is_damage(sqlite3.OperationalError("database is locked"))
    assert not indexrepair.is_damage(OSError("disk full"))
    c = sqlite3.connect(":memory:")
    try:
        c.execute("SELECT * FROM nothing")
    except sqlite3.Error as e:
        assert not indexrepair.is_damage(e)
    finally:
        c.close()


def test_a_whole_index_is_checked_once_per_process(root: Path, monkeypatch) -> None:
    with MailStore(root) as store:
        store.status("INBOX")
    checks = []
    real = indexrepair.check_once

    def counting(conn, path):
        checks.append(path)
        return real(conn, path)
    monkeypatch.setattr(indexrepair, "check_once", counting)
    for _ in range(3):
        with MailStore(root) as store:
            store.status("INBOX")
    assert len(checks) == 3
    assert len(indexrepair._checked) == 1
    assert os.path.exists(root / FILE)


def test_many_sessions_meeting_the_damage_at_once_set_it_aside_once(root: Path) -> None:
    """Threads sharing one store (IMAP's sessions of a user in one process) and
    stores of their own (other processes): one move, one line, all go on."""
    import threading

    shared = MailStore(root, user=USER)
    own = [MailStore(root, user=USER) for _ in range(3)]
    try:
        views = [shared.open_folder("INBOX") for _ in range(4)] + [
            s.open_folder("INBOX") for s in own]
        uids = list(views[0].uids)
        garble_under_open_sessions(root / FILE)
        start = threading.Barrier(len(views))
        results: list[object] = []

        def session(view) -> None:
            start.wait()
            try:
                view.refresh()
                results.append(sorted(view.sizes()))
            except Exception as e:  # noqa: BLE001 - reported below
                results.append(e)
        with structlog.testing.capture_logs() as logs:
            threads = [threading.Thread(target=session, args=(v,)) for v in views]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        assert results == [uids] * len(views)
        assert len(damage_lines(logs)) == 1
        assert len({n.split("-wal")[0].split("-shm")[0] for n in set_aside(root)}) == 1
        for v in views:
            v.close()
    finally:
        shared.close()
        for s in own:
            s.close()


def test_a_second_report_of_the_same_damage_moves_nothing(root: Path) -> None:
    """Two calls of one store failed on the damaged file; the second to report it
    must not set aside the new file that the first one made."""
    with MailStore(root, user=USER) as store:
        store.status("INBOX")
        failed_on = store.index.generation
        garble_under_open_sessions(root / FILE)
        error = sqlite3.DatabaseError("database disk image is malformed")
        with structlog.testing.capture_logs() as logs:
            assert store.index.recover(error, failed_on)
            new = (root / FILE).stat().st_ino
            assert store.index.recover(error, failed_on)
        assert (root / FILE).stat().st_ino == new
        assert len(damage_lines(logs)) == 1
        assert store.status("INBOX").messages == 30
