"""Folder operations: list, create, delete, rename, subscriptions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mda.store import flags, maildir
from mda.store.errors import CannotDelete, CannotRename, FolderExists, NoSuchFolder
from mda.store.mailstore import MailStore

FOLDERS = ["Sent", "Drafts", "Trash", "Junk", "Archive"]


@pytest.fixture
def store(tmp_path: Path):
    with MailStore(tmp_path / "Maildir", default_folders=FOLDERS) as s:
        yield s


def listing(store: MailStore) -> dict[str, tuple[str, ...]]:
    return {f.name: f.attributes() for f in store.list_folders()}


def test_new_mailbox_lists_special_use_folders(store: MailStore) -> None:
    infos = store.list_folders()
    assert infos[0].name == "INBOX"
    assert listing(store) == {
        "INBOX": ("\\HasNoChildren",),
        "Archive": ("\\HasNoChildren", "\\Archive"),
        "Drafts": ("\\HasNoChildren", "\\Drafts"),
        "Junk": ("\\HasNoChildren", "\\Junk"),
        "Sent": ("\\HasNoChildren", "\\Sent"),
        "Trash": ("\\HasNoChildren", "\\Trash"),
    }
    assert all(f.subscribed for f in infos if f.name != "INBOX")


def test_create_makes_parents_and_children_show(store: MailStore) -> None:
    store.create_folder("Projects/2024/Q1")
    found = listing(store)
    assert found["Projects"] == ("\\HasChildren",)
    assert found["Projects/2024"] == ("\\HasChildren",)
    assert found["Projects/2024/Q1"] == ("\\HasNoChildren",)
    root = store.root
    for d in (".Projects", ".Projects.2024", ".Projects.2024.Q1"):
        assert {"cur", "new", "tmp", "maildirfolder"} <= set(os.listdir(root / d))
    assert not [e for e in os.listdir(root) if e.startswith("..")]
    with pytest.raises(FolderExists):
        store.create_folder("Projects/2024")
    with pytest.raises(FolderExists):
        store.create_folder("inbox")
    store.create_folder("INBOX/child")
    assert listing(store)["INBOX"] == ("\\HasChildren",)
    assert (root / ".INBOX.child").is_dir()


def test_parent_without_directory_is_noselect(store: MailStore) -> None:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(store.root / ".A.B" / sub)  # Maildir++ allows .A.B without .A
    assert listing(store)["A"] == ("\\Noselect", "\\HasChildren")
    assert not store.folder_exists("A")
    with pytest.raises(NoSuchFolder):
        store.open_folder("A")
    store.create_folder("A")  # gives it a directory of its own
    assert listing(store)["A"] == ("\\HasChildren",)


def test_delete(store: MailStore) -> None:
    with pytest.raises(CannotDelete):
        store.delete_folder("INBOX")
    with pytest.raises(CannotDelete):
        store.delete_folder("inbox")
    with pytest.raises(NoSuchFolder):
        store.delete_folder("Nope")
    store.append("Junk", b"Subject: spam\r\n\r\n")
    uidvalidity = store.status("Junk").uidvalidity
    store.delete_folder("Junk")
    assert "Junk" not in listing(store)
    assert not (store.root / ".Junk").exists()
    assert not [e for e in os.listdir(store.root) if e.startswith("..")]
    # Made again at once, it still gets a new UIDVALIDITY and starts at UID 1.
    store.create_folder("Junk")
    status = store.status("Junk")
    assert status.messages == 0 and status.uidnext == 1
    assert status.uidvalidity > uidvalidity


def test_delete_folder_with_children_keeps_them(store: MailStore) -> None:
    store.create_folder("A/B")
    store.append("A", b"Subject: in A\r\n\r\n")
    store.append("A/B", b"Subject: in B\r\n\r\n")
    store.delete_folder("A")
    assert listing(store)["A"] == ("\\Noselect", "\\HasChildren")
    assert store.status("A/B").messages == 1
    with pytest.raises(NoSuchFolder):
        store.delete_folder("A")  # only a parent now
    with pytest.raises(NoSuchFolder):
        store.status("A")


def test_rename_keeps_uids_and_moves_children(store: MailStore) -> None:
    store.create_folder("Old/Child")
    uid = store.append("Old", b"Subject: 1\r\n\r\n", [flags.SEEN]).uid
    child_uid = store.append("Old/Child", b"Subject: 2\r\n\r\n").uid
    before = store.status("Old")
    store.subscribe("Old/Child")
    store.rename_folder("Old", "New/Place")
    found = listing(store)
    assert "Old" not in found and "Old/Child" not in found
    assert found["New"] == ("\\HasChildren",)
    assert found["New/Place"] == ("\\HasChildren",)
    assert found["New/Place/Child"] == ("\\HasNoChildren",)
    after = store.status("New/Place")
    assert (after.uidvalidity, after.uidnext, after.messages) == (
        before.uidvalidity, before.uidnext, 1)
    folder = store.open_folder("New/Place")
    assert folder.uids == [uid] and folder.flags(uid) == {flags.SEEN}
    assert store.open_folder("New/Place/Child").uids == [child_uid]
    assert "New/Place/Child" in store.subscriptions()
    assert "Old/Child" not in store.subscriptions()


def test_rename_refusals(store: MailStore) -> None:
    store.create_folder("A/B")
    with pytest.raises(FolderExists):
        store.rename_folder("Sent", "Drafts")
    with pytest.raises(FolderExists):
        store.rename_folder("Sent", "A")
    with pytest.raises(FolderExists):
        store.rename_folder("Sent", "INBOX")
    with pytest.raises(CannotRename):
        store.rename_folder("A", "A/B/C")
    with pytest.raises(CannotRename):
        store.rename_folder("A", "A")
    with pytest.raises(NoSuchFolder):
        store.rename_folder("Nope", "Other")
    assert store.folder_exists("Sent") and store.folder_exists("A/B")


def test_rename_inbox_moves_messages_and_leaves_it_empty(store: MailStore) -> None:
    root = store.root
    maildir.deliver(root, b"Subject: one\r\n\r\n")
    maildir.deliver(root, b"Subject: two\r\n\r\n")
    inbox = store.open_folder("INBOX")
    inbox.store([inbox.uids[0]], [flags.FLAGGED, "todo"])
    store.create_folder("INBOX/kept")
    store.rename_folder("INBOX", "Old mail")
    assert store.status("INBOX").messages == 0
    assert os.listdir(root / "cur") == [] and os.listdir(root / "new") == []
    assert store.folder_exists("INBOX/kept")
    moved = store.open_folder("Old mail")
    assert len(moved) == 2
    assert moved.flags(moved.uids[0]) == {flags.FLAGGED, "todo"}
    assert moved.read(moved.uids[1]).endswith(b"Subject: two\n\n")
    changes = inbox.refresh()
    assert changes.expunged == [1, 2] and len(inbox) == 0


def test_subscriptions(store: MailStore) -> None:
    assert store.subscriptions() == FOLDERS
    store.subscribe("Archive/2024")
    store.subscribe("Entwürfe")
    store.subscribe("Sent")  # once only
    store.subscribe("Not/There")  # allowed (RFC 3501)
    assert store.unsubscribe("Drafts")
    assert not store.unsubscribe("Drafts")
    assert store.subscriptions() == [
        "Sent", "Trash", "Junk", "Archive", "Archive/2024", "Entwürfe", "Not/There"]
    # Dovecot's on-disk form: "." between levels, modified UTF-7.
    assert (store.root / "subscriptions").read_bytes() == (
        b"Sent\nTrash\nJunk\nArchive\nArchive.2024\nEntw&APw-rfe\nNot.There\n")
    assert not (store.root / "subscriptions.lock").exists()
    subscribed = {f.name for f in store.list_folders() if f.subscribed}
    assert subscribed == {"Sent", "Trash", "Junk", "Archive"}


def test_newer_dovecot_subscriptions_are_read_and_rewritten_simply(store: MailStore) -> None:
    (store.root / "subscriptions").write_bytes(b"V\t2\n\nSent\nArchive\t2024\n")
    assert store.subscriptions() == ["Sent", "Archive/2024"]
    store.subscribe("Trash")
    assert (store.root / "subscriptions").read_bytes() == b"Sent\nArchive.2024\nTrash\n"


def test_leftovers_of_a_crash_are_cleaned(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    maildir.ensure_maildir(root, ["Sent"])
    (root / "..mailpair-deleted-abc" / "cur").mkdir(parents=True)
    (root / "..mailpair-new-old" / "cur").mkdir(parents=True)
    os.utime(root / "..mailpair-new-old", (1_000_000_000, 1_000_000_000))
    (root / "..mailpair-new-fresh").mkdir()  # another process is making a folder now
    (root / "tmp" / "left-by-a-crash").write_bytes(b"x")
    os.utime(root / "tmp" / "left-by-a-crash", (1_000_000_000, 1_000_000_000))
    (root / "tmp" / "being-written").write_bytes(b"x")
    with MailStore(root) as store:
        store.status("INBOX")
        assert sorted(e for e in os.listdir(root) if e.startswith("..")) == [
            "..mailpair-new-fresh"]
        assert os.listdir(root / "tmp") == ["being-written"]
        assert [f.name for f in store.list_folders()] == ["INBOX", "Sent"]


def test_new_mailbox_with_non_ascii_default_folder(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with MailStore(root, default_folders=["Entwürfe", "Sent"]) as store:
        assert (root / ".Entw&APw-rfe" / "maildirfolder").exists()
        assert (root / "subscriptions").read_bytes() == b"Entw&APw-rfe\nSent\n"
        assert store.subscriptions() == ["Entwürfe", "Sent"]
        assert [f.name for f in store.list_folders()] == ["INBOX", "Entwürfe", "Sent"]
    with pytest.raises(ValueError):
        maildir.ensure_maildir(tmp_path / "other", ["a.b"])
