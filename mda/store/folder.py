"""A session's view of one folder: its messages in UID order, numbered 1..n.

IMAP SELECT/EXAMINE and a POP3 login each open one (MailStore.open_folder).
The view changes only when its own session acts (store, expunge, move) or
asks for news with refresh(); that is what lets IMAP keep sequence numbers
steady between commands and lets POP3 keep the snapshot it took at login.

Flags are frozensets of strings: "\\Seen", "\\Answered", "\\Flagged",
"\\Deleted", "\\Draft" and keywords (flags.py). \\Recent is not stored:
is_recent() says whether this view was the first to see a message (it
moved it from new/ to cur/ on open or refresh); a read-only view counts
what is still in new/ and moves nothing.

Every method blocks and takes the MailStore's lock: call them from a
worker thread, one session per MailStore for parallelism.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mda.store import indexrepair, keywords
from mda.store.errors import MessageGone, NoSuchFolder, ReadOnly, UidValidityChanged
from mda.store.flagrename import Renames, SuffixRule, rename_all
from mda.store.flags import (
    DELETED_LETTER,
    INFO_PREFIX,
    SEEN_LETTER,
    canonical,
    decode,
    letters_of,
)
from mda.store.folderdata import MessageData
from mda.store.index import Row
from mda.store.results import Changes, CopyResult, ExpungeResult, StoreResult
from mda.store.sync import FolderSync
from mda.store.viewstate import State

if TYPE_CHECKING:
    from mda.store.mailstore import MailStore

MODES = ("add", "remove", "replace")


# A damaged index is set aside and rebuilt, and these calls run once more
# (copy and move only recover: a second run could copy twice).
_repaired = indexrepair.recovering(lambda folder: folder._ix)
_repaired_no_retry = indexrepair.recovering(lambda folder: folder._ix, again=False)


class Folder(MessageData):
    def __init__(self, store: MailStore, name: str, fs: FolderSync, *, readonly: bool) -> None:
        self.mailstore = store
        self.name = name
        self.readonly = readonly
        self._fs = fs
        self._ix = store.index
        self._lock = store.lock
        self._state = State.empty()
        self._recent: set[int] = set()
        self._pending: set[int] = set()  # expunged, not yet reported (refresh(allow_expunge=False))
        self._decoded: dict[tuple[int, int], frozenset[str]] = {}
        with self._lock:
            self._load()

    # -- loading and refreshing -------------------------------------------

    def _key(self) -> tuple[str, int, int]:
        return (self._epoch, self._fid, self._modseq)

    def _load(self) -> None:
        self._fs.sync()
        with self._ix.read():
            row = self._ix.folder(self._fs.dirname)
            if row is None:
                raise NoSuchFolder(f"{self.name} is gone")
            key = (self._ix.epoch, row.id, row.highestmodseq)
            snap = self._fs.snapshot
            if snap is not None and snap.key == key:
                state = State.of(snap)
            else:
                rows = self._ix.view_rows(row.id)
                code = self._fs.letters.code
                by_suffix = {s: code(letters_of(s)) for s in {r[1] for r in rows}}
                state = State.from_columns([r[0] for r in rows], [by_suffix[r[1]] for r in rows],
                                           [r[2] for r in rows])
                self._fs.snapshot = state.publish(key)
            in_new = self._ix.rows_in_new(row.id)
        self._fid, self.uidvalidity = row.id, row.uidvalidity
        self._modseq, self._uidnext, self._epoch = row.highestmodseq, row.nextuid, self._ix.epoch
        self._fid_epoch = self._epoch
        self._state = state
        self._claim_recent(in_new)
        self._claim_marked(state.uids)

    def _claim_recent(self, rows: list[Row]) -> None:
        """Move messages nobody has seen from new/ to cur/; they are \\Recent in this view."""
        if not rows:
            return
        if self.readonly:
            self._recent.update(r.uid for r in rows)
            return
        moved = []
        with self._ix.write(), self._fs.own_change():
            for r in rows:
                suffix = r.suffix if r.suffix.startswith(INFO_PREFIX) else INFO_PREFIX
                try:
                    os.rename(self._fs.file_of(r), self._fs.path / "cur" / (r.base + suffix))
                except FileNotFoundError:
                    continue  # another session took it first: recent there, not here
                moved.append(Row(r.uid, r.base, False, suffix, r.modseq))
            self._ix.relocate(self._fid, moved)
        self._recent.update(r.uid for r in moved)

    def _claim_marked(self, appeared: Sequence[int]) -> None:
        """Of the UIDs that just appeared in this view (ascending), those at or above the
        folder's recent mark are \\Recent here (appended or copied in: index.recent_mark)."""
        if not appeared:
            return
        mark = self._ix.recent_mark(self._fid)
        if not self.readonly and (mark is None or mark < self._uidnext):
            # A write only when the mark moves: 500 clients selecting an
            # unchanged INBOX take no write lock.
            with self._ix.write():
                mark = self._ix.recent_mark(self._fid)  # another view may have moved it
                if mark is None or mark < self._uidnext:
                    self._ix.set_recent_mark(self._fid, self._uidnext)
        if mark is not None:
            self._recent.update(appeared[bisect.bisect_left(appeared, mark):])

    @_repaired
    def refresh(self, *, allow_expunge: bool = True) -> Changes:
        """Take in what others did: new messages, expunges, flag changes.

        With allow_expunge=False (IMAP during FETCH, STORE, SEARCH by
        sequence number) expunged messages stay in the view, unreadable,
        until a later refresh that allows them.
        """
        with self._lock:
            try:
                self._fs.sync()
            except NoSuchFolder:
                return self._vanish(Changes(gone=True))
            with self._ix.read():
                row = self._ix.folder(self._fs.dirname)
                if row is None:
                    return self._vanish(Changes(gone=True))
                if row.uidvalidity != self.uidvalidity:
                    return self._vanish(Changes(uidvalidity_changed=True))
                full = (self._ix.epoch != self._epoch or row.id != self._fid
                        or self._modseq < row.tomb_floor)
                if full:
                    rows = self._ix.rows(row.id)
                    present = {r.uid for r in rows}
                    gone = [u for u in self._state.uids if u not in present]
                elif row.highestmodseq != self._modseq:
                    rows = self._ix.changed_since(row.id, self._modseq)
                    gone = self._ix.expunged_since(row.id, self._modseq)
                else:
                    rows, gone = [], []
            self._fid, self._epoch = row.id, self._ix.epoch
            self._fid_epoch = self._epoch
            self._modseq, self._uidnext = row.highestmodseq, row.nextuid
            return self._take_in(rows, gone, allow_expunge)

    def _take_in(self, rows: list[Row], gone: list[int], allow_expunge: bool) -> Changes:
        state = self._state
        changes = Changes()
        self._pending.update(u for u in gone if u in state)
        expunge_now = allow_expunge and bool(self._pending)
        if expunge_now:
            where = sorted(i for _, i in state.positions(sorted(self._pending)))
            changes.expunged = [state.uids[i] for i in where]
            changes.expunged_seqs = [i + 1 for i in reversed(where)]
        code = self._fs.letters.code
        update: list[tuple[int, int, int]] = []
        fresh: list[Row] = []
        for r in rows:
            if r.uid in self._pending and not expunge_now:
                continue
            new = (code(letters_of(r.suffix)), r.modseq)
            old = state.get(r.uid)
            if old is None:
                fresh.append(r)
                changes.added.append(r.uid)
            elif old == new:
                continue
            else:
                changes.flags.append(r.uid)
            update.append((r.uid, *new))
        snap = self._fs.snapshot
        if expunge_now or not self._pending:
            # The view now shows the folder as the index has it at self._modseq:
            # the same as every other up-to-date view, so share their arrays.
            self._pending.clear()
            if snap is not None and snap.key == self._key():
                if not state.is_of(snap):
                    self._state = State.of(snap)
            else:
                if expunge_now:
                    state.remove(changes.expunged)
                state.update(update)
                self._fs.snapshot = state.publish(self._key())
        else:
            state.update(update)
        self._recent.difference_update(changes.expunged)
        self._claim_recent([r for r in fresh if r.in_new])
        self._claim_marked(changes.added)
        return changes

    def _folder_id(self, *, sync: bool = False) -> int:
        """The folder's id in the index, following a rebuilt index (same UIDs, new ids).

        sync: look at the disk first (before changes). UidValidityChanged if
        the view's UIDs no longer mean what they meant.
        """
        if not sync:
            self._ix.reopen_if_replaced()
            if self._ix.epoch == self._fid_epoch:
                return self._fid
        row = self._fs.sync()
        if row.uidvalidity != self.uidvalidity:
            raise UidValidityChanged(f"{self.name} was replaced: its UIDs changed")
        # Modseqs are not comparable across indexes: refresh() compares all
        # (self._epoch stays as it was until then).
        self._fid, self._fid_epoch = row.id, self._ix.epoch
        return row.id

    def _advance(self, modseq: int) -> None:
        """After our own change: if it took the very next modseq, nobody else changed
        anything since our last refresh, so the next one need not read our change back."""
        if modseq == self._modseq + 1:
            self._modseq = modseq

    def _vanish(self, changes: Changes) -> Changes:
        n = len(self._state)
        changes.expunged = self._state.uids.tolist()
        changes.expunged_seqs = list(range(n, 0, -1))
        self._state = State.empty()
        self._pending.clear()
        self._recent.clear()
        return changes

    def _remove(self, uids: set[int]) -> tuple[list[int], list[int]]:
        """Take uids out of the view; (uids ascending, their seqs highest first)."""
        self._recent -= uids
        return self._state.remove(uids)

    # -- what the view shows ---------------------------------------------

    def __len__(self) -> int:
        return len(self._state)

    @property
    def uids(self) -> list[int]:
        """All UIDs, ascending; seq n is uids[n - 1]. A copy."""
        with self._lock:
            return self._state.uids.tolist()

    @property
    def uid_column(self) -> Sequence[int]:
        """All UIDs, ascending, without the copy `uids` makes (100,000 of them for a
        FETCH of three): read it at once, before anything changes the view."""
        return self._state.uids

    @property
    def uidnext(self) -> int:
        return self._uidnext

    @property
    def highestmodseq(self) -> int:
        return self._modseq

    def uid_at(self, seq: int) -> int:
        """The UID of sequence number seq (1-based); IndexError outside 1..len."""
        uids = self._state.uids
        if not 1 <= seq <= len(uids):
            raise IndexError(f"no message {seq}")
        return uids[seq - 1]

    def seq_of(self, uid: int) -> int | None:
        i = self._state.pos(uid)
        return None if i is None else i + 1

    def uids_between(self, low: int, high: int) -> list[int]:
        """UIDs in the view with low <= uid <= high (a UID range, * resolved by the caller)."""
        with self._lock:
            return self._state.between(low, high)

    @property
    def keywords(self) -> list[str]:
        """The keywords defined in this folder (for IMAP's FLAGS)."""
        with self._lock:
            self._fs.keywords.refresh()
            return self._fs.keywords.names()

    @property
    def can_create_keywords(self) -> bool:
        """False once all 26 letters are used (IMAP drops \\* from PERMANENTFLAGS)."""
        with self._lock:
            self._fs.keywords.refresh()
            return self._fs.keywords.has_room()

    def _decode(self, code: int) -> frozenset[str]:
        kw = self._fs.keywords
        key = (code, kw.version)
        found = self._decoded.get(key)
        if found is None:
            if len(self._decoded) > 4096:
                self._decoded.clear()
            found = self._decoded[key] = decode(self._fs.letters.names[code], kw.by_letter)
        return found

    def flags(self, uid: int) -> frozenset[str]:
        """The message's flags and keywords as this view last saw them; KeyError if not in it."""
        with self._lock:
            self._fs.keywords.refresh()
            found = self._state.get(uid)
            if found is None:
                raise KeyError(uid)
            return self._decode(found[0])

    def flags_of(self, uids: Iterable[int]) -> dict[int, frozenset[str]]:
        with self._lock:
            self._fs.keywords.refresh()
            codes, decode_ = self._state.codes, self._decode
            return {u: decode_(codes[i]) for u, i in self._state.positions(uids)}

    def modseq(self, uid: int) -> int:
        found = self._state.get(uid)
        if found is None:
            raise KeyError(uid)
        return found[1]

    def is_recent(self, uid: int) -> bool:
        return uid in self._recent

    @property
    def recent_count(self) -> int:
        return len(self._recent)

    def unseen_uids(self) -> list[int]:
        """UIDs without \\Seen, ascending (UNSEEN count; the first one for SELECT)."""
        with self._lock:
            seen = self._fs.letters.codes_with(SEEN_LETTER)
            st = self._state
            return [u for u, c in zip(st.uids, st.codes, strict=True) if c not in seen]

    @_repaired
    def expunged_since(self, modseq: int) -> list[int] | None:
        """UIDs expunged from the folder after modseq (QRESYNC's VANISHED (EARLIER)).

        None when the records of that time were pruned (or the index was
        rebuilt since): the caller then reports whatever it cannot account for.
        """
        with self._lock:
            fid = self._folder_id()
            row = self._ix.folder(self._fs.dirname)
            if row is None or row.id != fid or modseq < row.tomb_floor or \
                    self._epoch != self._ix.epoch:
                return None
            return self._ix.expunged_since(fid, modseq)

    @_repaired
    def base_name(self, uid: int) -> str:
        """The message's Maildir base name (unique and stable; a POP3 UIDL may use it)."""
        with self._lock:
            row = self._ix.row(self._folder_id(), uid)
            if row is None:
                raise MessageGone(f"message {uid} was expunged")
            return row.base

    def is_expunged(self, uid: int) -> bool:
        """Expunged by another session but still shown (see refresh)."""
        return uid in self._pending

    # -- changing flags ------------------------------------------------------

    @_repaired
    def store(self, uids: Iterable[int], flag_names: Iterable[str], mode: str = "add", *,
              unchangedsince: int | None = None) -> StoreResult:
        """Add, remove or replace flags on messages (IMAP STORE, POP3 marking \\Seen).

        One rename per message whose flags change (new/ files move to cur/),
        one index transaction and one new modseq for them all. With
        unchangedsince (CONDSTORE), messages whose modseq is higher are left
        alone and listed in .modified. Unknown keywords in "remove" are
        ignored; a keyword that does not fit the folder's 26 raises
        TooManyKeywords before anything changes.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if self.readonly:
            raise ReadOnly(f"{self.name} is open read-only")
        wanted = [canonical(f) for f in flag_names]
        targets = sorted(set(uids))
        with self._lock:
            fid = self._folder_id(sync=True)
            return self._store(fid, targets, wanted, mode, unchangedsince)

    def _store(self, fid: int, targets: list[int], wanted: list[str], mode: str,
               unchangedsince: int | None) -> StoreResult:
        with self._ix.write(), self._fs.own_change():
            kw = self._fs.keywords
            kw.refresh()
            if mode == "remove":
                change = keywords.letters_to_remove(wanted, kw)
            else:
                change = keywords.letters_for(wanted, kw, create=True)
            managed = keywords.managed_letters(kw)
            rows = self._ix.rows_for(fid, targets)
            rule = SuffixRule(mode, change, managed)
            done = Renames()
            for attempt in (1, 2):
                rename_all(self._fs.path, rows, targets, rule, unchangedsince, done)
                if not done.retry or attempt == 2:
                    done.missing.extend(done.retry)
                    break
                # Renamed or removed by someone else since the index saw it.
                self._fs.sync(full=True)
                targets, done.retry = done.retry, []
                rows = self._ix.rows_for(fid, targets)
            renamed, flagged = done.renamed, done.flagged
            modseq = self._ix.bump_modseq(fid) if flagged else self._modseq
            self._ix.relocate(fid, [
                Row(r.uid, r.base, False, r.suffix, modseq if r.uid in flagged else r.modseq)
                for r in renamed
            ])
            self._advance(modseq)
            changed: dict[int, frozenset[str]] = {}
            update = []
            code_of, state = self._fs.letters.code, self._state
            for r in renamed:
                if r.uid not in flagged:
                    continue
                code = code_of(letters_of(r.suffix))
                update.append((r.uid, code, modseq))
                changed[r.uid] = self._decode(code)
            present = dict(state.positions(u for u, _, _ in update))
            state.update([u for u in update if u[0] in present])
            return StoreResult(changed, sorted(done.modified), sorted(set(done.missing)), modseq)

    # -- removing, copying, moving -----------------------------------------

    @_repaired
    def expunge(self, uids: Iterable[int] | None = None, *,
                require_deleted: bool = True) -> ExpungeResult:
        """Delete messages for good and take them out of the view.

        By default the messages flagged \\Deleted (IMAP EXPUNGE), limited to
        uids if given (UID EXPUNGE). require_deleted=False deletes exactly
        the given uids whatever their flags (POP3 DELE at QUIT).
        """
        if self.readonly:
            raise ReadOnly(f"{self.name} is open read-only")
        with self._lock:
            fid = self._folder_id(sync=True)
            return self._expunge(fid, uids, require_deleted)

    def _expunge(self, fid: int, uids: Iterable[int] | None,
                 require_deleted: bool) -> ExpungeResult:
        with self._ix.write(), self._fs.own_change():
            state = self._state
            candidates = state.uids.tolist() if uids is None else \
                [u for u, _ in state.positions(sorted(set(uids)))]
            removed: list[int] = []
            for attempt in (1, 2):
                rows = self._ix.rows_for(fid, candidates)
                retry = []
                for uid in candidates:
                    r = rows.get(uid)
                    if r is None:
                        removed.append(uid)  # already gone: expunged by someone else
                        continue
                    if require_deleted and DELETED_LETTER not in letters_of(r.suffix):
                        continue
                    try:
                        os.unlink(self._fs.file_of(r))
                    except FileNotFoundError:
                        retry.append(uid)
                        continue
                    removed.append(uid)
                if not retry:
                    break
                if attempt == 2:
                    removed.extend(retry)  # gone, whoever took it
                    break
                self._fs.sync(full=True)
                candidates = retry
            modseq = self._fs.drop(fid, removed) if removed else self._modseq
            self._advance(modseq)
            gone, seqs = self._remove(set(removed))
            self._pending -= set(removed)
            return ExpungeResult(gone, seqs, modseq)

    @_repaired_no_retry
    def copy(self, uids: Iterable[int], dest: str) -> CopyResult:
        """Copy messages into folder dest (IMAP COPY); new UIDs in .pairs for COPYUID."""
        with self._lock:
            self._folder_id(sync=True)
            return self.mailstore.transfer(self._fs, sorted(set(uids)), dest, move=False)

    @_repaired_no_retry
    def move(self, uids: Iterable[int], dest: str) -> CopyResult:
        """Move messages into folder dest (IMAP MOVE); the result also says what left the view."""
        if self.readonly:
            raise ReadOnly(f"{self.name} is open read-only")
        with self._lock:
            self._folder_id(sync=True)
            result = self.mailstore.transfer(self._fs, sorted(set(uids)), dest, move=True)
            gone, seqs = self._remove({s for s, _ in result.pairs} | set(result.missing))
            self._pending -= set(gone)
            return CopyResult(result.uidvalidity, result.pairs, result.missing, gone, seqs)

    # -- the rest --------------------------------------------------------

    def watch_paths(self) -> list[str]:
        """What changes when the folder does (for inotify-based IDLE): new/, cur/, the uidlist."""
        return [str(self._fs.path / "new"), str(self._fs.path / "cur"),
                str(self._fs.uidlist.path)]

    def close(self) -> None:
        """Nothing to release (the MailStore owns the files); here for symmetry."""
        with self._lock:
            self._state = State.empty()
