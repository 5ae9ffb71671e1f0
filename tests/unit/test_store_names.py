"""Folder names: what is refused, where the rest lives on disk, nothing created outside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mda.store import names
from mda.store.errors import InvalidName, NoSuchFolder
from mda.store.mailstore import MailStore

ESCAPES = [
    "../x",
    "/etc",
    "/etc/passwd",
    "~bob",
    "~",
    "INBOX/../../",
    "INBOX/../../x",
    "a/../../b",
    "..",
    ".",
    ".hidden",
    "a.b",
    "Archive/2024.old",
    "a\0b",
    "a\nb",
    "tab\there",
    "del\x7f",
    "c1\x85",
    "A//B",
    "A/",
    "/",
    "",
    "*",
    "a%b",
    "x" * 300,
    "bad\udc80surrogate",
]


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize("name", ESCAPES)
def test_escaping_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        names.dirname(name)


@pytest.mark.parametrize("name", ESCAPES)
def test_store_creates_nothing_for_a_refused_name(tmp_path: Path, name: str) -> None:
    root = tmp_path / "user" / "Maildir"
    with MailStore(root, default_folders=["Sent"]) as store:
        before = tree(tmp_path)
        with pytest.raises(InvalidName):
            store.create_folder(name)
        with pytest.raises(InvalidName):
            store.rename_folder("Sent", name)
        with pytest.raises(InvalidName):
            store.subscribe(name)
        with pytest.raises(InvalidName):
            store.open_folder(name)
        with pytest.raises(InvalidName):
            store.append(name, b"x\r\n")
        assert tree(tmp_path) == before
        assert (root / ".Sent").is_dir()


def test_mapping_to_maildir_plus_plus() -> None:
    assert names.dirname("INBOX") == ""
    assert names.dirname("inbox") == ""
    assert names.normalize("iNbOx/Sub") == "INBOX/Sub"
    assert names.dirname("Archive/2024") == ".Archive.2024"
    assert names.dirname("Entwürfe") == ".Entw&APw-rfe"
    assert names.dirname("R&D") == ".R&-D"
    assert names.dirname("日本語/x") == ".&ZeVnLIqe-.x"
    assert names.from_dirname(".Archive.2024") == "Archive/2024"
    assert names.from_dirname(".Entw&APw-rfe") == "Entwürfe"
    assert names.from_dirname(".R&-D") == "R&D"
    # Not folders: our own work directories, INBOX's shadow, empty levels.
    for entry in ("..mailpair-new-1", ".INBOX", ".a..b", ".", "..", ".a.", "cur"):
        assert names.from_dirname(entry) is None
    assert names.special_use("Sent") == "\\Sent"
    assert names.special_use("Archive/2024") is None


def test_a_level_that_is_not_mutf7_is_shown_as_it_is() -> None:
    # Written as UTF-8 (or by hand) by another tool: the name is the bytes.
    for raw in ("&", "&AOQ", "&AGE-", "ü", "&A-", "日本"):
        assert names.decode_level(raw) == raw
    assert names.from_dirname(".Entwürfe") == "Entwürfe"
    assert names.decode_level("Entw&APw-rfe") == "Entwürfe"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_level_round_trip(text: str) -> None:
    encoded = names.encode_level(text)
    assert encoded.isascii()
    assert names.decode_level(encoded) == text


@given(st.text(max_size=30))
def test_normalize_never_lets_a_dot_dir_or_slash_through(text: str) -> None:
    try:
        d = names.dirname(text)
    except InvalidName:
        return
    assert d == "" or (d.startswith(".") and not d.startswith(".."))
    assert "/" not in d and "\0" not in d


def test_utf8_directory_made_by_another_tool_is_usable(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with MailStore(root) as store:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(root / ".Entwürfe" / sub)
        assert "Entwürfe" in [f.name for f in store.list_folders()]
        assert store.append("Entwürfe", b"Subject: hi\r\n\r\n").uid == 1
        assert len(os.listdir(root / ".Entwürfe" / "cur")) == 1
        assert not (root / ".Entw&APw-rfe").exists()


def test_symlinked_folder_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    outside = tmp_path / "outside"
    for sub in ("cur", "new", "tmp"):
        os.makedirs(outside / sub)
    with MailStore(root) as store:
        os.symlink(outside, root / ".Evil")
        assert "Evil" not in [f.name for f in store.list_folders()]
        with pytest.raises(NoSuchFolder):
            store.append("Evil", b"x\r\n")
        assert os.listdir(outside / "cur") == []


def test_every_listed_folder_can_be_opened(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    with MailStore(root) as store:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(root / ".inbox.lower" / sub)
        listed = [f.name for f in store.list_folders()]
        assert listed == ["INBOX", "INBOX/lower"]
        assert store.append("INBOX/lower", b"x\r\n").uid == 1
        assert len(os.listdir(root / ".inbox.lower" / "cur")) == 1
