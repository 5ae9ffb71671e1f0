"""dovecot-keywords: which keyword each lowercase info letter stands for, per folder.

One line per keyword, `<index> <name>`; index 0 is letter a, 25 is z:

    0 $Junk
    1 todo

so a file named `...:2,Sb` is seen and has keyword "todo". 26 letters
means at most 26 keywords in a folder. Letters are never reused for
another name (a message may still carry the old one), so the file only
grows; it is changed under `dovecot-keywords.lock` and replaced by a
rename, as Dovecot does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mda.store import flags
from mda.store.errors import TooManyKeywords
from mda.store.files import read_or_none, replace_file
from mda.store.lock import DotLock

NAME = "dovecot-keywords"
MAX_KEYWORDS = 26


def letter(index: int) -> str:
    return chr(ord("a") + index)


def parse(data: bytes) -> dict[int, str]:
    """index -> name; lines that are not `<0..25> <name>` are skipped."""
    found: dict[int, str] = {}
    taken: set[str] = set()
    for raw in os.fsdecode(data).split("\n"):
        index_text, _, name = raw.partition(" ")
        name = name.rstrip("\r")
        if not index_text.isascii() or not index_text.isdigit() or not name:
            continue
        index = int(index_text)
        if index >= MAX_KEYWORDS or index in found or name.lower() in taken:
            continue
        if any(c.isspace() for c in name):
            continue
        found[index] = name
        taken.add(name.lower())
    return found


def serialize(names: dict[int, str]) -> bytes:
    return os.fsencode("".join(f"{i} {names[i]}\n" for i in sorted(names)))


class Keywords:
    """The keyword letters of one folder, re-read when the file changes."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / NAME
        self._sig: tuple[int, int, int] | None = None
        self._names: dict[int, str] = {}
        self._by_letter: dict[str, str] = {}
        self._by_lower: dict[str, str] = {}
        self.version = 0  # grows with each change read, for caches of decoded flags

    def _load(self, names: dict[int, str]) -> None:
        if names != self._names:
            self.version += 1
        self._names = names
        self._by_letter = {letter(i): n for i, n in names.items()}
        self._by_lower = {n.lower(): letter(i) for i, n in names.items()}

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._sig = None
            self._load({})
            return
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        if sig != self._sig:
            data = read_or_none(self.path)
            self._load(parse(data or b""))
            self._sig = sig

    @property
    def by_letter(self) -> dict[str, str]:
        """letter -> keyword name."""
        return self._by_letter

    def names(self) -> list[str]:
        return [self._names[i] for i in sorted(self._names)]

    def letter(self, name: str) -> str | None:
        """The letter of a keyword, matched without regard to case."""
        return self._by_lower.get(name.lower())

    def has_room(self) -> bool:
        return len(self._names) < MAX_KEYWORDS

    def ensure(self, names: Iterable[str]) -> dict[str, str]:
        """name -> letter for each name, adding the missing ones to the file.

        TooManyKeywords (and nothing written) when they do not all fit.
        """
        self.refresh()
        wanted = list(dict.fromkeys(names))
        if all(self.letter(n) is not None for n in wanted):
            return {n: self.letter(n) for n in wanted}  # type: ignore[misc]
        with DotLock(self.path):
            self._sig = None
            self.refresh()  # another process may have added some meanwhile
            names_now = dict(self._names)
            free = (i for i in range(MAX_KEYWORDS) if i not in names_now)
            for n in wanted:
                taken = {v.lower() for v in names_now.values()}
                if self.letter(n) is None and n.lower() not in taken:
                    index = next(free, None)
                    if index is None:
                        raise TooManyKeywords(
                            f"a folder holds at most {MAX_KEYWORDS} keywords; {n!r} does not fit"
                        )
                    names_now[index] = n
            if names_now != self._names:
                replace_file(self.path, serialize(names_now))
                self._sig = None
                self.refresh()
        return {n: self.letter(n) for n in wanted}  # type: ignore[misc]


def letters_for(flag_names: Iterable[str], keywords: Keywords, *, create: bool,
                drop_overflow: bool = False) -> set[str]:
    """The info letters of canonical flag names in one folder.

    create: give new keywords a letter (TooManyKeywords if they do not fit,
    unless drop_overflow, which leaves out those that do not). Without
    create, unknown keywords have no letter. $Forwarded is Maildir's P,
    unless the folder already has it as a keyword (Dovecot writes it so).
    """
    letters: set[str] = set()
    wanted: list[str] = []
    for name in flag_names:
        system = flags.system_letter(name)
        if system is not None:
            letters.add(system)
        elif name.lower() == flags.FORWARDED.lower():
            letters.add(keywords.letter(name) or "P")
        else:
            wanted.append(name)
    if not wanted:
        return letters
    if not create:
        letters.update(x for x in map(keywords.letter, wanted) if x is not None)
        return letters
    try:
        letters.update(keywords.ensure(wanted).values())
    except TooManyKeywords:
        if not drop_overflow:
            raise
        for name in wanted:
            try:
                letters.update(keywords.ensure([name]).values())
            except TooManyKeywords:
                continue
    return letters


def letters_to_remove(flag_names: Iterable[str], keywords: Keywords) -> set[str]:
    """Letters to take away for these flags; $Forwarded is both P and any keyword letter."""
    names = list(flag_names)
    letters = letters_for(names, keywords, create=False)
    if any(n.lower() == flags.FORWARDED.lower() for n in names):
        letters.add("P")
    return letters


def managed_letters(keywords: Keywords) -> set[str]:
    """Letters a flag replacement sets or clears; others (unknown ones) are left as they are."""
    return set(flags.SYSTEM_LETTERS) | set(keywords.by_letter)
