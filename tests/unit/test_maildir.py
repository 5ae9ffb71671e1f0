"""Maildir delivery: paths that cannot escape, tmp -> new, names, new mailboxes."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from mda.store import maildir

FOLDERS = ["Sent", "Drafts", "Trash", "Junk", "Archive"]


@pytest.mark.parametrize(
    "address",
    [
        "../x@example.org",
        "a/b@example.org",
        ".hidden@example.org",
        "..@example.org",
        "@example.org",
        "alice@",
        "alice",
        "a\0b@example.org",
        "alice@../etc",
        "alice@ex/ample.org",
        "alice@.example.org",
        "a\nb@example.org",
    ],
)
def test_maildir_path_rejects_escapes(tmp_path: Path, address: str) -> None:
    with pytest.raises(ValueError):
        maildir.maildir_path(tmp_path, address)


def test_maildir_path_layout(tmp_path: Path) -> None:
    path = maildir.maildir_path(tmp_path, "alice.smith@example.org")
    assert path == tmp_path / "example.org" / "alice.smith" / "Maildir"


def new_maildir(tmp_path: Path) -> Path:
    path = tmp_path / "example.org" / "alice" / "Maildir"
    assert maildir.ensure_maildir(path, FOLDERS)
    return path


def test_deliver_stores_lf_lines_in_new(tmp_path: Path) -> None:
    md = new_maildir(tmp_path)
    data = b"Subject: hi\r\n\r\nline one\r\nline two\r\n"
    name = maildir.deliver(md, data)
    stored = (md / "new" / name).read_bytes()
    assert stored == b"Subject: hi\n\nline one\nline two\n"
    assert os.listdir(md / "tmp") == []
    assert os.listdir(md / "cur") == []
    assert stat.S_IMODE((md / "new" / name).stat().st_mode) == 0o600


def test_name_is_standard_and_size_is_stored_size(tmp_path: Path) -> None:
    md = new_maildir(tmp_path)
    name = maildir.deliver(md, b"a\r\nb\r\n" * 100)
    assert name.rsplit(",S=", 1)[1] == str((md / "new" / name).stat().st_size) == "400"
    secs, rest = name.split(".", 1)
    assert secs.isdigit()
    assert rest.startswith("M")
    assert f"P{os.getpid()}Q" in rest


def test_names_are_unique(tmp_path: Path) -> None:
    md = new_maildir(tmp_path)
    names = {maildir.deliver(md, b"x\r\n") for _ in range(200)}
    assert len(names) == 200
    assert set(os.listdir(md / "new")) == names


def test_host_part_is_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maildir.socket, "gethostname", lambda: "a/b:c")
    name = maildir.unique_name(5)
    assert name.endswith(r".a\057b\072c,S=5")


def test_deliver_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md = new_maildir(tmp_path)
    (md / "new" / "taken,S=3").write_bytes(b"old")
    names = iter(["taken,S=3", "free,S=3"])
    monkeypatch.setattr(maildir, "unique_name", lambda size: next(names))
    assert maildir.deliver(md, b"new") == "free,S=3"
    assert (md / "new" / "taken,S=3").read_bytes() == b"old"
    assert (md / "new" / "free,S=3").read_bytes() == b"new"
    assert os.listdir(md / "tmp") == []


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md = new_maildir(tmp_path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(maildir.os, "fsync", full)
    with pytest.raises(OSError) as e:
        maildir.deliver(md, b"data\r\n")
    assert e.value.errno == errno.ENOSPC
    assert os.listdir(md / "tmp") == []
    assert os.listdir(md / "new") == []


def test_ensure_maildir_makes_folders_and_subscriptions(tmp_path: Path) -> None:
    md = new_maildir(tmp_path)
    for sub in ("cur", "new", "tmp"):
        assert (md / sub).is_dir()
    for name in FOLDERS:
        folder = md / f".{name}"
        for sub in ("cur", "new", "tmp"):
            assert (folder / sub).is_dir()
        assert (folder / "maildirfolder").read_bytes() == b""
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (md / "subscriptions").read_text() == "Sent\nDrafts\nTrash\nJunk\nArchive\n"
    for d in (md, md.parent, md.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    # nothing left over from building it under another name
    assert os.listdir(md.parent) == ["Maildir"]


def test_ensure_maildir_is_idempotent_and_keeps_user_changes(tmp_path: Path) -> None:
    md = new_maildir(tmp_path)
    name = maildir.deliver(md, b"kept\r\n")
    for sub in ("cur", "new", "tmp"):
        os.rmdir(md / ".Junk" / sub)
    os.unlink(md / ".Junk" / "maildirfolder")
    os.rmdir(md / ".Junk")
    (md / "subscriptions").write_text("Sent\n")
    assert not maildir.ensure_maildir(md, FOLDERS)
    assert not (md / ".Junk").exists()
    assert (md / "subscriptions").read_text() == "Sent\n"
    assert (md / "new" / name).read_bytes() == b"kept\n"


def test_ensure_maildir_completes_a_hand_made_one(tmp_path: Path) -> None:
    md = tmp_path / "example.org" / "bob" / "Maildir"
    (md / "cur").mkdir(parents=True)
    assert not maildir.ensure_maildir(md, FOLDERS)
    assert (md / "new").is_dir() and (md / "tmp").is_dir()
    assert not (md / ".Sent").exists()
    assert not (md / "subscriptions").exists()


def test_ensure_maildir_concurrent_creation(tmp_path: Path) -> None:
    md = tmp_path / "example.org" / "carol" / "Maildir"
    n = 8
    barrier = threading.Barrier(n)
    results: list[bool] = []
    errors: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            results.append(maildir.ensure_maildir(md, FOLDERS))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results.count(True) == 1
    assert (md / "subscriptions").read_text().splitlines() == FOLDERS
    assert os.listdir(md.parent) == ["Maildir"]


def test_ensure_maildir_rejects_bad_folder_names(tmp_path: Path) -> None:
    md = tmp_path / "example.org" / "dave" / "Maildir"
    for bad in ("", ".x", "a/b"):
        with pytest.raises(ValueError):
            maildir.ensure_maildir(md, [bad])
    assert not md.exists()


def test_blocked_user_directory_is_an_os_error(tmp_path: Path) -> None:
    (tmp_path / "example.org").mkdir()
    (tmp_path / "example.org" / "eve").write_text("in the way")
    with pytest.raises(OSError):
        maildir.ensure_maildir(tmp_path / "example.org" / "eve" / "Maildir", FOLDERS)
