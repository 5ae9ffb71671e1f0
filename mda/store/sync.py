"""One folder's three records kept in step: its files, its dovecot-uidlist, its index rows.

The files are the truth for which messages exist and their flags; the
uidlist for their UIDs; the index remembers both (and modseqs) so that
opening a folder does not need either. `FolderSync.sync()` compares and
repairs:

- a file whose base name has no UID (a delivery, a `cp` into new/) gets
  the next one under the uidlist lock, in order of delivery time (the
  `<secs>.` prefix, then the microseconds, then the name);
- a file renamed (flags, new/ -> cur/) keeps its UID; the index follows,
  with a new modseq if the flags differ;
- a UID whose file is gone is expunged: out of the index (a tombstone with
  the modseq records it for other sessions) and out of the uidlist, so
  the UID can never come back. A readdir racing a rename can miss a file
  for one listing, so a missing file is only believed after a second scan.

Scanning 100,000 names costs a tenth of a second, so the index keeps the
mtimes of new/ and cur/ and the uidlist's (inode, size, mtime) from the
last scan and nothing is listed while they are unchanged. Two limits of
mtimes are handled: a change in the same clock tick as the scan does not
move the mtime, so new/ (small, where deliveries land) is listed again
while its mtime is younger than DIRTY_NS; and changes this process makes
itself (inside the index write transaction) move the recorded mtimes
along with them (`own_change`), so a session's own APPENDs and STOREs do
not cost a rescan of cur/. What that could hide (another program's change
to cur/ in the same few milliseconds as ours) is found by the periodic full
scan (FULL_SCAN_INTERVAL) or as soon as a file is not where the index says.

Every method must be called with the index lock held (the store does);
changes run inside one index write transaction.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mda.store import content
from mda.store.errors import MessageGone, NoSuchFolder
from mda.store.flags import letters_of, split_filename
from mda.store.index import FolderRow, Index, Row
from mda.store.keywords import Keywords
from mda.store.uidlist import Record, UidList, UidListFile
from mda.store.viewstate import LetterTable, Snapshot

FULL_SCAN_INTERVAL = 120.0
# Maildir's rule: a file in tmp/ untouched for 36 hours was left by a crash.
TMP_MAX_AGE = 36 * 3600
DIRTY_NS = 100_000_000
TOMBSTONES_KEPT = 10_000
_ORDER = re.compile(r"^(\d+)\.(?:[^.]*?M(\d+))?")


def delivery_order(base: str) -> tuple[int, int, str]:
    """Sort key of a new base name: seconds, microseconds (Dovecot's M<usec>), name."""
    m = _ORDER.match(base)
    if m is None:
        return (2**63, 0, base)  # no time in the name: after everything that has one
    return (int(m.group(1)), int(m.group(2) or 0), base)


def scan_dir(path: Path) -> dict[str, str]:
    """base -> info suffix of each message file in one of new/ and cur/."""
    found: dict[str, str] = {}
    try:
        with os.scandir(path) as it:
            for entry in it:
                name = entry.name
                if name.startswith("."):
                    continue  # not a message: editor and NFS leftovers
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                except OSError:
                    continue
                base, suffix = split_filename(name)
                if base:
                    # Two files with one base (a broken copy): the first wins.
                    found.setdefault(base, suffix)
    except FileNotFoundError:
        raise NoSuchFolder(f"{path.parent} is not a folder any more") from None
    return found


@dataclass
class Plan:
    """What a comparison of disk, uidlist and index found."""

    moved: list[Row] = field(default_factory=list)  # new location; modseq kept or bumped later
    flag_changed: set[int] = field(default_factory=set)
    expunge: list[int] = field(default_factory=list)
    known: list[Row] = field(default_factory=list)  # UID in the uidlist, not in the index yet
    unknown: list[str] = field(default_factory=list)  # bases that need a UID
    stale_records: set[int] = field(default_factory=set)  # uidlist lines without a file
    restore: list[Record] = field(default_factory=list)  # index knows a UID the uidlist lost
    locations: dict[str, tuple[bool, str]] = field(default_factory=dict)


def _sig_text(sig: tuple[int, int, int] | None) -> str | None:
    return None if sig is None else "{}:{}:{}".format(*sig)


class FolderSync:
    """The on-disk side of one folder, shared by the sessions of one MailStore."""

    def __init__(self, index: Index, root: Path, dirname: str,
                 new_uidvalidity: Callable[[], int]) -> None:
        self.ix = index
        self.dirname = dirname
        self.path = root / dirname if dirname else root
        self.uidlist = UidListFile(self.path)
        self.keywords = Keywords(self.path)
        self._new_uidvalidity = new_uidvalidity
        # Shared by the Folder views of this MailStore (viewstate.py).
        self.letters = LetterTable()
        self.snapshot: Snapshot | None = None

    def close(self) -> None:
        self.uidlist.close()

    def subdir(self, in_new: bool) -> Path:
        return self.path / ("new" if in_new else "cur")

    def file_of(self, row: Row) -> Path:
        return self.path / row.subdir / row.filename

    def _mtimes(self) -> tuple[int, int]:
        try:
            return (os.stat(self.path / "new").st_mtime_ns, os.stat(self.path / "cur").st_mtime_ns)
        except FileNotFoundError:
            raise NoSuchFolder(f"{self.path} is not a folder") from None

    def _current(self, row: FolderRow) -> bool:
        m_new, m_cur = self._mtimes()
        return (
            row.snap_new == m_new
            and row.snap_cur == m_cur
            and not row.dirty_new
            and row.snap_uidlist == _sig_text(self.uidlist.signature())
            and time.time() - row.full_scan_at < FULL_SCAN_INTERVAL
        )

    # -- entry points ------------------------------------------------------

    def sync(self, *, full: bool = False) -> FolderRow:
        """Bring the index up to date with the disk; returns the folder's row."""
        with self.ix.lock:
            if not self.ix.in_write:
                self.ix.reopen_if_replaced()
            if not full and not self.ix.in_write:
                row = self.ix.folder(self.dirname)
                if row is not None and self._current(row):
                    return row
            with self.ix.write():
                for _ in range(3):
                    row = self._sync_once(full)
                    if row is not None:
                        return row
                    full = True
            raise NoSuchFolder(f"{self.path}: its uidlist keeps changing under us")

    def _sync_once(self, full: bool) -> FolderRow | None:
        t0 = time.time_ns()
        m_new, m_cur = self._mtimes()
        sig = _sig_text(self.uidlist.signature())
        row = self.ix.folder(self.dirname)
        ul = self.uidlist.read()
        if row is None:
            if ul is None:
                ul = self._create_uidlist()
                sig = _sig_text(self.uidlist.signature())
            row = self.ix.add_folder(self.dirname, ul.uidvalidity, ul.next_uid)
            full = True
        elif not full and self._current(row):
            return row
        if ul is None:
            # Deleted or unreadable: a new UIDVALIDITY, all UIDs afresh (as Dovecot).
            ul = self._create_uidlist()
            sig = _sig_text(self.uidlist.signature())
        if ul.uidvalidity != row.uidvalidity:
            self.ix.forget_messages(row.id)
            self.ix.update_folder(row.id, uidvalidity=ul.uidvalidity)
            row = self.ix.folder(self.dirname)
            assert row is not None
            full = True
        full = (
            full
            or row.snap_cur != m_cur
            or row.snap_uidlist != sig
            or time.time() - row.full_scan_at >= FULL_SCAN_INTERVAL
        )
        if not full:
            plan = self._plan_new_only(row, ul)
            if plan is None:
                full = True  # something left new/ for cur/ or vanished: look at everything
        if full:
            plan = self._plan_full(row, ul)
        assert plan is not None
        sig_after = self._apply(row, ul, plan, full=full)
        if sig_after is False:
            return None  # the uidlist changed UIDVALIDITY under us: start again
        values: dict[str, object] = {
            "snap_new": m_new,
            "dirty_new": int(t0 - m_new < DIRTY_NS),
            "snap_uidlist": sig if sig_after is None else sig_after,
        }
        if full:
            values.update(snap_cur=m_cur, full_scan_at=time.time())
            self._clean_tmp()
        self.ix.update_folder(row.id, **values)
        return self.ix.folder(self.dirname)

    def _clean_tmp(self) -> None:
        limit = time.time() - TMP_MAX_AGE
        with contextlib.suppress(FileNotFoundError), os.scandir(self.path / "tmp") as it:
            for entry in it:
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False) and \
                            entry.stat(follow_symlinks=False).st_mtime < limit:
                        os.unlink(entry.path)

    # -- comparing -----------------------------------------------------------

    def _scan(self) -> dict[str, tuple[bool, str]]:
        new = scan_dir(self.path / "new")
        cur = scan_dir(self.path / "cur")
        found = {b: (True, s) for b, s in new.items()}
        # A file seen in both (moved during the scan) is where it went: cur/.
        found.update((b, (False, s)) for b, s in cur.items())
        return found

    def _plan_full(self, row: FolderRow, ul: UidList) -> Plan:
        rows = self.ix.rows(row.id)
        plan = self._compare(rows, self._scan(), ul, full=True)
        if plan.expunge or plan.stale_records:
            plan = self._compare(rows, self._scan(), ul, full=True)
        return plan

    def _plan_new_only(self, row: FolderRow, ul: UidList) -> Plan | None:
        on_disk = {b: (True, s) for b, s in scan_dir(self.path / "new").items()}
        rows = self.ix.rows_in_new(row.id)
        if any(r.base not in on_disk for r in rows):
            return None
        known = {r.base for r in rows}
        for base in on_disk:
            if base not in known and self.ix.uid_by_base(row.id, base) is not None:
                return None  # the index has it in cur/: a full look is needed
        return self._compare(rows, on_disk, ul, full=False)

    def _compare(self, rows: list[Row], on_disk: dict[str, tuple[bool, str]], ul: UidList,
                 *, full: bool) -> Plan:
        plan = Plan(locations=on_disk)
        indexed: set[str] = set()
        for r in rows:
            record = ul.records.get(r.uid)
            where = on_disk.get(r.base)
            if record is not None and record.base != r.base:
                plan.expunge.append(r.uid)  # the uidlist gave the UID to another file
                continue
            if where is None:
                plan.expunge.append(r.uid)
                continue
            indexed.add(r.base)
            if record is None:
                # The uidlist lost a line we know (damaged, or rewritten by a tool
                # that skipped it): put it back rather than renumber the message.
                if ul.uid_of(r.base) is None:
                    plan.restore.append(Record(r.uid, r.base))
                else:
                    plan.expunge.append(r.uid)
                    indexed.discard(r.base)
                    continue
            in_new, suffix = where
            if (in_new, suffix) != (r.in_new, r.suffix):
                plan.moved.append(Row(r.uid, r.base, in_new, suffix, r.modseq))
                if letters_of(suffix) != letters_of(r.suffix):
                    plan.flag_changed.add(r.uid)
        for base, (in_new, suffix) in on_disk.items():
            if base in indexed:
                continue
            uid = ul.uid_of(base)
            if uid is not None:
                plan.known.append(Row(uid, base, in_new, suffix, 0))
            else:
                plan.unknown.append(base)
        if full:
            plan.stale_records = {u for u, rec in ul.records.items() if rec.base not in on_disk}
        return plan

    # -- applying ------------------------------------------------------------

    def _create_uidlist(self) -> UidList:
        with self.uidlist.locked():
            ul = self.uidlist.read()  # another process may have made it meanwhile
            if ul is None:
                ul = UidList(uidvalidity=self._new_uidvalidity(), nextuid=1,
                             guid=secrets.token_hex(16))
                self.uidlist.rewrite(ul)
                ul = self.uidlist.read()
                assert ul is not None
            return ul

    def _apply(self, row: FolderRow, ul: UidList, plan: Plan, *, full: bool) -> str | None | bool:
        """Carry out a plan; returns the uidlist signature after our write (None: no write),
        or False if the uidlist's UIDVALIDITY changed meanwhile."""
        sig_after: str | None = None
        assigned: list[tuple[int, str]] = []  # (uid, base): no Row for each of 100,000
        if plan.unknown or plan.stale_records or plan.restore:
            with self.uidlist.locked():
                fresh = self.uidlist.read()
                if fresh is None or fresh.uidvalidity != ul.uidvalidity:
                    return False
                ul = fresh
                changed = False
                unknown = list(plan.unknown)
                for r in plan.restore:
                    uid = ul.uid_of(r.base)
                    if uid is None and r.uid not in ul.records:
                        ul.add(r)
                        changed = True
                        continue
                    # The UID went to another file meanwhile: this one needs another.
                    plan.expunge.append(r.uid)
                    if uid is None:
                        unknown.append(r.base)
                    else:
                        plan.known.append(Row(uid, r.base, *plan.locations[r.base], 0))
                assigned, added = ul.assign(sorted(unknown, key=delivery_order))
                # Only lines that were stale when we compared: one added since
                # belongs to a file we have not listed.
                stale = plan.stale_records & set(ul.records)
                if stale or changed:
                    ul.remove(stale)
                    self.uidlist.rewrite(ul)
                elif added:
                    self.uidlist.append(ul, added)
                sig_after = _sig_text(self.uidlist.signature())
        if not (plan.known or assigned or plan.moved or plan.expunge):
            if ul.next_uid != row.nextuid:
                self.ix.update_folder(row.id, nextuid=ul.next_uid)
            return sig_after
        modseq = row.highestmodseq
        if plan.known or assigned or plan.flag_changed or plan.expunge:
            modseq = self.ix.bump_modseq(row.id)
        if plan.expunge:
            self.ix.expunge(row.id, plan.expunge, modseq)
            self.ix.prune_expunged(row.id, TOMBSTONES_KEPT)
        self.ix.relocate(row.id, [
            Row(r.uid, r.base, r.in_new, r.suffix,
                modseq if r.uid in plan.flag_changed else r.modseq)
            for r in plan.moved
        ])
        where, size = plan.locations, self._known_size
        self.ix.add_messages(row.id, modseq, (
            (uid, base, *where[base], size(ul, uid, base))
            for uid, base in [*((r.uid, r.base) for r in plan.known), *assigned]
        ))
        self.ix.update_folder(row.id, nextuid=ul.next_uid)
        return sig_after

    @staticmethod
    def _known_size(ul: UidList, uid: int, base: str) -> int | None:
        size = content.size_from_base(base)
        if size is None:
            record = ul.records.get(uid)
            # Only Dovecot's lines carry fields (W<vsize>); ours are bare.
            value = record.field("W") if record is not None and record.ext else None
            size = int(value) if value and value.isdigit() else None
        return size

    # -- changes made by this process ---------------------------------------

    @contextlib.contextmanager
    def own_change(self) -> Iterator[None]:
        """Around renames, links and unlinks we make in new/ or cur/ (in a write transaction).

        If the index was in step with a directory before, it still is after:
        the recorded mtime moves with ours instead of forcing a rescan.
        """
        assert self.ix.in_write
        row = self.ix.folder(self.dirname)
        pre_new, pre_cur = self._mtimes()
        yield
        if row is None:
            return
        post_new, post_cur = self._mtimes()
        values: dict[str, object] = {}
        if row.snap_cur == pre_cur and post_cur != pre_cur:
            values["snap_cur"] = post_cur
        if row.snap_new == pre_new and not row.dirty_new and post_new != pre_new:
            # new/ is where deliveries land: a delivery in the same tick as our
            # change would not move the mtime, so look again next time.
            values["snap_new"] = post_new
            values["dirty_new"] = int(time.time_ns() - post_new < DIRTY_NS)
        if values:
            self.ix.update_folder(row.id, **values)

    @contextlib.contextmanager
    def _uidlist_change(self, fid: int) -> Iterator[None]:
        """Hold the uidlist lock for a change of ours; if the index was in step with
        the file before, it still is after (no rescan for our own change)."""
        row = self.ix.folder(self.dirname)
        with self.uidlist.locked():
            before = _sig_text(self.uidlist.signature())
            yield
            if row is not None and row.snap_uidlist == before:
                self.ix.update_folder(fid, snap_uidlist=_sig_text(self.uidlist.signature()))

    def assign(self, fid: int, files: list[tuple[str, bool, str]],
               vsizes: dict[str, int] | None = None) -> dict[str, int]:
        """UIDs for files this process just put into the folder, in the given order.

        files: (base, in_new, suffix). The index gets their rows at once, so
        no scan is needed to see them. Returns base -> uid.
        """
        assert self.ix.in_write
        with self._uidlist_change(fid):
            ul = self.uidlist.read()
            if ul is None:
                raise NoSuchFolder(f"{self.path}: its uidlist is gone")
            if self.ix.recent_mark(fid) is None:
                # Appended or copied in before any view looked: \Recent for the first.
                self.ix.set_recent_mark(fid, ul.next_uid)
            pairs, added = ul.assign([base for base, _, _ in files])
            if added:
                self.uidlist.append(ul, added)
            nextuid = ul.next_uid
        uids = {base: uid for uid, base in pairs}
        modseq = self.ix.bump_modseq(fid)
        vsizes = vsizes or {}
        self.ix.add_messages(fid, modseq, (
            (uids[b], b, n, s, vsizes.get(b) or content.size_from_base(b)) for b, n, s in files
        ))
        self.ix.update_folder(fid, nextuid=nextuid)
        return uids

    def drop(self, fid: int, uids: list[int]) -> int:
        """Expunge UIDs whose files we deleted or moved away (in a write transaction).

        Their lines leave the uidlist, so a file with the same base name can
        never bring an expunged UID back. Returns the expunge's modseq.
        """
        assert self.ix.in_write
        with self._uidlist_change(fid):
            ul = self.uidlist.read()
            if ul is not None and set(uids) & set(ul.records):
                ul.remove(set(uids))
                self.uidlist.rewrite(ul)
        modseq = self.ix.bump_modseq(fid)
        self.ix.expunge(fid, uids, modseq)
        self.ix.prune_expunged(fid, TOMBSTONES_KEPT)
        return modseq

    # -- finding files ---------------------------------------------------

    def open_message(self, fid: int, uid: int):
        """The message file opened for reading, wherever it moved; MessageGone if expunged."""
        for attempt in range(3):
            row = self.ix.row(fid, uid)
            if row is None:
                raise MessageGone(f"message {uid} was expunged")
            try:
                return open(self.file_of(row), "rb")  # noqa: SIM115 - the caller closes it
            except FileNotFoundError:
                if attempt == 2:
                    break
                # Renamed (flags) or deleted by someone else: look again.
                self.sync(full=True)
        raise MessageGone(f"message {uid} cannot be found")
