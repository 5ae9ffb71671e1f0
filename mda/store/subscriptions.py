"""The `subscriptions` file at the Maildir root: which folders a client shows.

Dovecot 2.3 and older write one folder per line in its on-disk form,
levels joined by "." and each in modified UTF-7 (`Archive.2024`). Newer
versions may begin the file with `V<tab>2` and a blank line and put a tab
between levels, with \\001 escapes. We read both and write the first form,
which every version reads. A name may be subscribed without existing
(RFC 3501). Changes are made under `subscriptions.lock` and by rename.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mda.store import names
from mda.store.errors import InvalidName
from mda.store.files import read_or_none, replace_file
from mda.store.lock import DotLock

NAME = "subscriptions"
_V2_HEADER = b"V\t2\n\n"
_TAB_UNESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n", "0": "\0"}


def _tab_unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\x01" and i + 1 < len(text):
            out.append(_TAB_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(data: bytes) -> list[str]:
    """Folder names in file order, each once; lines that are no valid name are skipped."""
    v2 = data.startswith(_V2_HEADER)
    if v2:
        data = data[len(_V2_HEADER) :]
    found: dict[str, None] = {}
    for line in os.fsdecode(data).split("\n"):
        line = line.rstrip("\r")
        if v2:
            levels = [_tab_unescape(p) for p in line.split("\t")]
        else:
            # Our names hold neither "." nor "/", so either one separates levels.
            levels = line.replace("/", ".").split(".")
        while levels and levels[-1] == "":
            levels.pop()  # a trailing separator, as some old clients wrote
        if not levels:
            continue
        try:
            name = names.normalize(names.SEPARATOR.join(names.decode_level(p) for p in levels))
        except InvalidName:
            continue
        found[name] = None
    return list(found)


def storage_form(name: str) -> str:
    canonical = names.normalize(name)
    if canonical == names.INBOX:
        return canonical
    return ".".join(names.encode_level(p) for p in canonical.split(names.SEPARATOR))


def serialize(subscribed: list[str]) -> bytes:
    return os.fsencode("".join(storage_form(n) + "\n" for n in subscribed))


def read(root: Path) -> list[str]:
    return parse(read_or_none(root / NAME) or b"")


def update(root: Path, change: Callable[[list[str]], list[str]]) -> list[str]:
    """Apply change to the current list under the lock; write only if it changed."""
    path = root / NAME
    with DotLock(path):
        current = read(root)
        new = list(dict.fromkeys(change(list(current))))
        if new != current:
            replace_file(path, serialize(new))
        return new
