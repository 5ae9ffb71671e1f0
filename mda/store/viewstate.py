"""What a folder view shows, stored compactly and shared between views.

A view of a 100,000-message folder needs each message's UID, flag letters
and modseq. As Python objects (a dict of tuples) that is ~18 MB per view,
and 500 clients idling on one INBOX would each hold their own. Here the
three columns are arrays (16 bytes a message), and views whose content is
the same (the folder as the index had it at one modseq) share one set of
arrays: a `Snapshot` published on the folder's `FolderSync`, which the
views of a MailStore share. A view that changes its content (its own
STORE, an expunge it may not report yet) copies the arrays first.

Flag letters are stored as codes into a `LetterTable` (one per folder and
process): a mailbox has few distinct combinations of flags.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

# UIDs are 32-bit (RFC 3501); modseqs are 63-bit (RFC 7162).
_UID, _CODE, _MODSEQ = "I", "I", "Q"
assert array(_UID).itemsize >= 4 and array(_MODSEQ).itemsize == 8


class LetterTable:
    """Flag letter strings <-> small integer codes; codes are never reused."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, letters: str) -> int:
        found = self._codes.get(letters)
        if found is None:
            found = self._codes[letters] = len(self.names)
            self.names.append(letters)
        return found

    def codes_with(self, letter: str) -> set[int]:
        return {c for c, name in enumerate(self.names) if letter in name}


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A folder's messages at one modseq; never changed once made."""

    key: tuple[str, int, int]  # (index epoch, folder id, highest modseq)
    uids: array
    codes: array
    modseqs: array


class State:
    """One view's messages, ascending by UID; copies shared arrays before changing them."""

    __slots__ = ("uids", "codes", "modseqs", "_shared")

    def __init__(self, uids: array, codes: array, modseqs: array, *, shared: bool) -> None:
        self.uids, self.codes, self.modseqs = uids, codes, modseqs
        self._shared = shared

    @classmethod
    def empty(cls) -> State:
        return cls(array(_UID), array(_CODE), array(_MODSEQ), shared=False)

    @classmethod
    def of(cls, snap: Snapshot) -> State:
        return cls(snap.uids, snap.codes, snap.modseqs, shared=True)

    @classmethod
    def from_columns(cls, uids: list[int], codes: list[int], modseqs: list[int]) -> State:
        """From three lists of the same length, ascending by UID."""
        return cls(array(_UID, uids), array(_CODE, codes), array(_MODSEQ, modseqs), shared=False)

    def publish(self, key: tuple[str, int, int]) -> Snapshot:
        """Share this content as a snapshot; the next change here copies first."""
        self._shared = True
        return Snapshot(key, self.uids, self.codes, self.modseqs)

    def is_of(self, snap: Snapshot | None) -> bool:
        return snap is not None and self.uids is snap.uids

    def _own(self) -> None:
        if self._shared:
            self.uids, self.codes = array(_UID, self.uids), array(_CODE, self.codes)
            self.modseqs = array(_MODSEQ, self.modseqs)
            self._shared = False

    # -- reading ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self.uids)

    def pos(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def __contains__(self, uid: int) -> bool:
        return self.pos(uid) is not None

    def positions(self, uids: Iterable[int]) -> Iterator[tuple[int, int]]:
        """(uid, position) of those uids that are here, in the order given.

        Ascending runs (1:*, a range) cost one comparison a message instead
        of a binary search.
        """
        all_uids = self.uids
        n = len(all_uids)
        i = 0
        for uid in uids:
            if not (i < n and all_uids[i] == uid):
                i = bisect.bisect_left(all_uids, uid)
                if not (i < n and all_uids[i] == uid):
                    continue
            yield uid, i
            i += 1

    def get(self, uid: int) -> tuple[int, int] | None:
        """(code, modseq) of a message, None if not here."""
        i = self.pos(uid)
        return None if i is None else (self.codes[i], self.modseqs[i])

    def between(self, low: int, high: int) -> list[int]:
        lo = bisect.bisect_left(self.uids, low)
        hi = bisect.bisect_right(self.uids, high)
        return self.uids[lo:hi].tolist()

    # -- changing --------------------------------------------------------

    def update(self, changes: Sequence[tuple[int, int, int]]) -> None:
        """Set (uid, code, modseq) of messages here; others are added (UIDs only grow,
        so an addition is nearly always an append)."""
        if not changes:
            return
        self._own()
        adds: dict[int, tuple[int, int]] = {}  # the last change of a uid wins
        present = dict(self.positions(uid for uid, _, _ in changes))
        for uid, code, modseq in changes:
            i = present.get(uid)
            if i is None:
                adds[uid] = (code, modseq)
            else:
                self.codes[i], self.modseqs[i] = code, modseq
        for uid, (code, modseq) in sorted(adds.items()):
            i = bisect.bisect_left(self.uids, uid)
            if i == len(self.uids):
                self.uids.append(uid)
                self.codes.append(code)
                self.modseqs.append(modseq)
            else:
                self.uids.insert(i, uid)
                self.codes.insert(i, code)
                self.modseqs.insert(i, modseq)

    def remove(self, uids: Iterable[int]) -> tuple[list[int], list[int]]:
        """Take messages out; (their uids ascending, their seqs highest first)."""
        where = sorted(i for _, i in self.positions(sorted(set(uids))))
        if not where:
            return [], []
        removed = [self.uids[i] for i in where]
        cols = []
        for col in (self.uids, self.codes, self.modseqs):
            kept = array(col.typecode)
            start = 0
            for i in where:
                kept.extend(col[start:i])
                start = i + 1
            kept.extend(col[start:])
            cols.append(kept)
        self.uids, self.codes, self.modseqs = cols
        self._shared = False
        return removed, [i + 1 for i in reversed(where)]
