"""mda-ctl mailbox: what is in a user's Maildir, counted from the files alone.

Read-only, and it needs no index: INBOX is the Maildir itself, each
Maildir++ folder a `.Name` directory in it (`.Archive.2024` is Archive/2024,
`.Entw&APw-rfe` is Entwürfe: levels in modified UTF-7, as the store writes them).
A message is a file in new/ or cur/; it is unseen while in new/ or without
the S flag in the `:2,` info of its name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mda.store import names

INFO_SEPARATOR = ":2,"


@dataclass(frozen=True)
class Folder:
    name: str
    new: int
    cur: int
    unseen: int
    bytes: int

    @property
    def messages(self) -> int:
        return self.new + self.cur

    def as_dict(self) -> dict[str, object]:
        return {"folder": self.name, "messages": self.messages, "new": self.new,
                "cur": self.cur, "unseen": self.unseen, "bytes": self.bytes}


def display_name(dirname: str) -> str:
    """'.Archive.2024' -> 'Archive/2024', '.Entw&APw-rfe' -> 'Entwürfe': the name
    IMAP clients see, by the store's own rule (mda/store/names.py). A directory
    the store does not show as a folder (its own work directories, `.INBOX`)
    is still counted, under its levels as they are."""
    name = names.from_dirname(dirname)
    return name if name is not None else dirname[1:].replace(".", "/")


def is_seen(filename: str) -> bool:
    _, sep, flags = filename.partition(INFO_SEPARATOR)
    return bool(sep) and "S" in flags


def _messages(directory: Path) -> list[tuple[str, int]]:
    """(name, size) of each message file; dot-files are not messages."""
    found = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                found.append((entry.name, entry.stat(follow_symlinks=False).st_size))
    except FileNotFoundError:
        pass
    return found


def scan_folder(name: str, path: Path) -> Folder:
    new = _messages(path / "new")
    cur = _messages(path / "cur")
    unseen = len(new) + sum(1 for n, _ in cur if not is_seen(n))
    size = sum(s for _, s in new) + sum(s for _, s in cur)
    return Folder(name, len(new), len(cur), unseen, size)


def folders(maildir: Path) -> list[Folder]:
    """INBOX first, then every folder by name. Symlinked folders are skipped:
    nothing outside the mail root is read."""
    found = [scan_folder("INBOX", maildir)]
    subdirs = []
    with os.scandir(maildir) as it:
        for entry in it:
            if entry.name.startswith(".") and len(entry.name) > 1 \
                    and entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
    for dirname in sorted(subdirs, key=display_name):
        found.append(scan_folder(display_name(dirname), maildir / dirname))
    return found


def totals(found: list[Folder]) -> dict[str, int]:
    return {
        "messages": sum(f.messages for f in found),
        "unseen": sum(f.unseen for f in found),
        "bytes": sum(f.bytes for f in found),
        "folders": len(found),
    }
