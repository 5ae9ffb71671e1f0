"""The part of a flag change that touches the disk: renaming each message
file to the info suffix that spells its new flags (Maildir keeps flags in
file names), moving files out of new/ on the way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mda.store.flags import letters_of, suffix_for
from mda.store.index import Row


class SuffixRule:
    """The new info suffix for an old one under one STORE; a folder has few
    distinct suffixes, so each is worked out once."""

    def __init__(self, mode: str, change: set[str], managed: set[str]) -> None:
        self.mode, self.change, self.managed = mode, change, managed
        self._outcomes: dict[str, tuple[str, bool]] = {}

    def __call__(self, suffix: str) -> tuple[str, bool]:
        """(new suffix, whether the flags differ)."""
        outcome = self._outcomes.get(suffix)
        if outcome is None:
            old = set(letters_of(suffix))
            if self.mode == "add":
                new = old | self.change
            elif self.mode == "remove":
                new = old - self.change
            else:
                new = (old - self.managed) | self.change
            outcome = self._outcomes[suffix] = (suffix_for(new), new != old)
        return outcome


@dataclass
class Renames:
    renamed: list[Row] = field(default_factory=list)  # where the files are now
    flagged: set[int] = field(default_factory=set)  # whose flags changed
    modified: list[int] = field(default_factory=list)  # left alone: UNCHANGEDSINCE
    missing: list[int] = field(default_factory=list)  # not in the index
    retry: list[int] = field(default_factory=list)  # file not where the index said


def rename_all(folder: Path, rows: dict[int, Row], targets: list[int], rule: SuffixRule,
               unchangedsince: int | None, out: Renames) -> None:
    # Plain strings: pathlib would cost more than the renames themselves.
    cur, new_dir = f"{folder}/cur/", f"{folder}/new/"
    for uid in targets:
        r = rows.get(uid)
        if r is None:
            out.missing.append(uid)
            continue
        if unchangedsince is not None and r.modseq > unchangedsince:
            out.modified.append(uid)
            continue
        suffix, differs = rule(r.suffix)
        if not differs and not r.in_new:
            continue
        try:
            os.rename((new_dir if r.in_new else cur) + r.base + r.suffix, cur + r.base + suffix)
        except FileNotFoundError:
            out.retry.append(uid)
            continue
        out.renamed.append(Row(uid, r.base, False, suffix, r.modseq))
        if differs:
            out.flagged.add(uid)  # a move out of new/ alone changes no flag
