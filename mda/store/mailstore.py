"""One user's mail: the folders of a Maildir, their subscriptions, and the way into each.

    store = MailStore(maildir_path, default_folders=cfg.mda.folders)
    for info in store.list_folders(): ...
    folder = store.open_folder("INBOX")          # a session's view (folder.py)
    store.append("Sent", data, [flags.SEEN])     # -> AppendResult(uidvalidity, uid)
    store.close()

Everything blocks (file I/O and SQLite); call it from a worker thread. A
MailStore and the Folders opened from it share one lock, so any thread may
call them, one call at a time; a session that wants to run in parallel with
another opens its own MailStore (sessions in other processes are kept in
step through the Maildir, dovecot-uidlist and the index).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from common.fsutil import fsync_dir
from mda.store import content, indexrepair, keywords, maildir, names, subscriptions
from mda.store.errors import (
    CannotDelete,
    CannotRename,
    FolderExists,
    NoSuchFolder,
)
from mda.store.files import read_or_none, replace_file
from mda.store.flags import canonical, decode, letters_of, suffix_for
from mda.store.folder import Folder
from mda.store.index import Index, Row
from mda.store.lock import DotLock
from mda.store.results import AppendResult, CopyResult, FolderInfo, FolderStatus
from mda.store.sync import FolderSync

# The last UIDVALIDITY given to a new uidlist, so that a folder deleted and
# made again within the same second still gets a new one.
UIDVALIDITY_FILE = "mailpair-uidvalidity"
# Our work directories in the Maildir root (never folders: they start with "..").
_DELETING = f"{names.PRIVATE_PREFIX}mailpair-deleted-"
_CREATING = f"{names.PRIVATE_PREFIX}mailpair-new-"
# A folder is built in its work directory within milliseconds; one older than
# this was left by a crash.
_CREATING_MAX_AGE = 3600


def _is_real_dir(path: Path) -> bool:
    """A directory and not a symlink to one: nothing outside the Maildir is used."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


# A damaged index is set aside and rebuilt; calls that only read or set state
# run once more, those that add mail or change folders do not (their first run
# may have done part of it).
_repaired = indexrepair.recovering(lambda store: store.index)
_repaired_no_retry = indexrepair.recovering(lambda store: store.index, again=False)


class MailStore:
    def __init__(self, root: Path, *, default_folders: Sequence[str] = (),
                 user: str | None = None) -> None:
        """Open the Maildir at root, making it (with default_folders) if it is not there.
        user: whose it is, for the log."""
        maildir.ensure_maildir(root, default_folders)
        self.root = root
        self.index = Index(root, user=user)
        self._syncs: dict[str, FolderSync] = {}
        self._clean_leftovers()

    def _clean_leftovers(self) -> None:
        """Finish deletions and drop half-made folders that a crash interrupted."""
        limit = time.time() - _CREATING_MAX_AGE
        with os.scandir(self.root) as it:
            for entry in it:
                if entry.name.startswith(_DELETING) or (
                        entry.name.startswith(_CREATING)
                        and entry.stat(follow_symlinks=False).st_mtime < limit):
                    shutil.rmtree(entry.path, ignore_errors=True)

    @property
    def lock(self):
        return self.index.lock

    def close(self) -> None:
        with self.lock:
            for fs in self._syncs.values():
                fs.close()
            self._syncs.clear()
            self.index.close()

    def __enter__(self) -> MailStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- names and directories -------------------------------------------

    def _find_dir(self, name: str) -> str | None:
        """The directory of an existing, selectable folder, or None."""
        canonical_name = names.normalize(name)
        if canonical_name == names.INBOX:
            return ""
        for candidate in dict.fromkeys((names.dirname(canonical_name),
                                        names.literal_dirname(canonical_name))):
            if _is_real_dir(self.root / candidate):
                return candidate
        # Whatever list_folders shows can be opened, however another tool
        # spelt its directory (".inbox.x" for INBOX/x, say).
        return self._folder_dirs().get(canonical_name)

    def _dir_of(self, name: str) -> str:
        found = self._find_dir(name)
        if found is None:
            raise NoSuchFolder(f"no folder {names.normalize(name)!r}")
        return found

    def _sync_for(self, dirname: str) -> FolderSync:
        fs = self._syncs.get(dirname)
        if fs is None:
            fs = FolderSync(self.index, self.root, dirname, self._new_uidvalidity)
            self._syncs[dirname] = fs
        return fs

    def _forget_sync(self, dirname: str) -> None:
        fs = self._syncs.pop(dirname, None)
        if fs is not None:
            fs.close()

    def _new_uidvalidity(self) -> int:
        path = self.root / UIDVALIDITY_FILE
        with DotLock(path):
            text = (read_or_none(path) or b"").decode("ascii", "replace").strip()
            last = int(text) if text.isdigit() else 0
            value = max(int(time.time()), last + 1)
            replace_file(path, f"{value}\n".encode())
        return value

    def _folder_dirs(self) -> dict[str, str]:
        """name -> directory of every folder that has one (INBOX excluded)."""
        found: dict[str, str] = {}
        with os.scandir(self.root) as it:
            for entry in it:
                if not entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                name = names.from_dirname(entry.name)
                if name is not None:
                    found.setdefault(name, entry.name)
        return found

    # -- listing -----------------------------------------------------------

    @_repaired
    def list_folders(self) -> list[FolderInfo]:
        """Every folder, INBOX first, then by name level by level.

        Parents that have no directory of their own (`.A.B` without `.A`, as
        Maildir++ allows) are listed as not selectable.
        """
        dirs = self._folder_dirs()
        every = set(dirs) | {a for n in dirs for a in names.ancestors(n)}
        every.add(names.INBOX)
        subscribed = set(self.subscriptions())
        with_children = {a for n in every for a in names.ancestors(n)}
        infos = []
        for name in sorted(every, key=lambda n: (n != names.INBOX, n.split(names.SEPARATOR))):
            infos.append(FolderInfo(
                name=name,
                selectable=name == names.INBOX or name in dirs,
                has_children=name in with_children,
                special_use=names.special_use(name),
                subscribed=name in subscribed,
            ))
        return infos

    def folder_exists(self, name: str) -> bool:
        """True for a folder that can be opened."""
        return self._find_dir(name) is not None

    # -- creating, deleting, renaming ---------------------------------

    def _make_dir(self, dirname: str) -> None:
        """A new Maildir++ folder directory, complete before it appears under its name."""
        staging = self.root / f"{_CREATING}{secrets.token_hex(6)}"
        os.mkdir(staging, maildir.DIR_MODE)
        try:
            for sub in maildir.SUBDIRS:
                os.mkdir(staging / sub, maildir.DIR_MODE)
            (staging / "maildirfolder").touch(maildir.FILE_MODE)
            fsync_dir(staging)
            if _is_real_dir(self.root / dirname):
                raise FolderExists(f"{dirname} exists")
            os.rename(staging, self.root / dirname)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            if _is_real_dir(self.root / dirname):
                raise FolderExists(f"{dirname} exists") from e
            raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self.root)

    @_repaired_no_retry
    def create_folder(self, name: str) -> None:
        """Create a folder and any missing parents; FolderExists if it is there."""
        canonical_name = names.normalize(name)
        if canonical_name == names.INBOX or self.folder_exists(canonical_name):
            raise FolderExists(f"{canonical_name} exists")
        with self.lock:
            for level in [*names.ancestors(canonical_name), canonical_name]:
                if self._find_dir(level) is None:
                    with contextlib.suppress(FolderExists):  # a parent made meanwhile
                        self._make_dir(names.dirname(level))

    @_repaired_no_retry
    def delete_folder(self, name: str) -> None:
        """Delete a folder and its messages; its children stay (RFC 3501).

        A folder with children loses its own directory, so it is listed
        afterwards as a parent that cannot be selected (\\Noselect). INBOX
        cannot be deleted (CannotDelete), nor a name that is only a parent
        (NoSuchFolder). Subscriptions are left alone (RFC 3501 allows
        subscribing to names that do not exist).
        """
        canonical_name = names.normalize(name)
        if canonical_name == names.INBOX:
            raise CannotDelete("INBOX cannot be deleted")
        with self.lock:
            dirname = self._dir_of(canonical_name)
            # Out of sight in one rename, then removed at leisure.
            doomed = self.root / f"{_DELETING}{secrets.token_hex(6)}"
            os.rename(self.root / dirname, doomed)
            fsync_dir(self.root)
            self._forget_sync(dirname)
            self.index.drop_folder(dirname)
        shutil.rmtree(doomed, ignore_errors=True)

    @_repaired_no_retry
    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and everything below it; UIDs and UIDVALIDITY go with them.

        Renaming INBOX moves its messages into a new folder and leaves
        INBOX empty (its children stay where they are), as RFC 3501 says.
        """
        src, dst = names.normalize(old), names.normalize(new)
        if dst == names.INBOX:
            raise FolderExists("INBOX exists")
        if dst == src or dst.startswith(src + names.SEPARATOR):
            raise CannotRename(f"cannot rename {src} to {dst}: it is the same or below it")
        with self.lock:
            if src == names.INBOX:
                self._rename_inbox(dst)
                return
            dirs = self._folder_dirs()
            moving = {n: d for n, d in dirs.items()
                      if n == src or n.startswith(src + names.SEPARATOR)}
            if not moving:
                raise NoSuchFolder(f"no folder {src!r}")
            if any(n == dst or n.startswith(dst + names.SEPARATOR) for n in dirs):
                raise FolderExists(f"{dst} exists")
            for level in names.ancestors(dst):
                if self._find_dir(level) is None:
                    with contextlib.suppress(FolderExists):
                        self._make_dir(names.dirname(level))
            for n in sorted(moving, key=len):
                target = names.dirname(dst + n[len(src):])
                self._forget_sync(moving[n])
                os.rename(self.root / moving[n], self.root / target)
                self.index.rename_folder(moving[n], target)
            fsync_dir(self.root)
        prefix = src + names.SEPARATOR

        def renamed(subs: list[str]) -> list[str]:
            return [dst + s[len(src):] if s == src or s.startswith(prefix) else s for s in subs]

        subscriptions.update(self.root, renamed)

    def _rename_inbox(self, dst: str) -> None:
        if self.folder_exists(dst):
            raise FolderExists(f"{dst} exists")
        self.create_folder(dst)
        inbox = self._sync_for("")
        row = inbox.sync()
        uids = [r.uid for r in self.index.rows(row.id)]
        self.transfer(inbox, uids, dst, move=True)

    # -- subscriptions -------------------------------------------------

    @_repaired
    def subscriptions(self) -> list[str]:
        """Subscribed names in file order (they need not exist)."""
        return subscriptions.read(self.root)

    @_repaired
    def subscribe(self, name: str) -> None:
        canonical_name = names.normalize(name)
        names.dirname(canonical_name)  # refuse what could never be a folder
        subscriptions.update(self.root, lambda subs: [*subs, canonical_name])

    @_repaired
    def unsubscribe(self, name: str) -> bool:
        """False if the name was not subscribed."""
        canonical_name = names.normalize(name)
        was = []

        def drop(subs: list[str]) -> list[str]:
            was.append(canonical_name in subs)
            return [s for s in subs if s != canonical_name]

        subscriptions.update(self.root, drop)
        return was[0]

    # -- status, opening -------------------------------------------------

    @_repaired
    def status(self, name: str) -> FolderStatus:
        """STATUS counts from the index (after a check for changes), no message opened."""
        with self.lock:
            fs = self._sync_for(self._dir_of(name))
            row = fs.sync()
            messages, recent, unseen = self.index.counts(row.id)
            return FolderStatus(messages, recent, row.nextuid, row.uidvalidity, unseen,
                                row.highestmodseq)

    @_repaired
    def open_folder(self, name: str, *, readonly: bool = False) -> Folder:
        """A session's view of a folder (IMAP SELECT, or EXAMINE with readonly)."""
        with self.lock:
            canonical_name = names.normalize(name)
            return Folder(self, canonical_name, self._sync_for(self._dir_of(canonical_name)),
                          readonly=readonly)

    # -- adding messages ---------------------------------------------------

    @_repaired_no_retry
    def append(self, name: str, data: bytes, flag_names: Iterable[str] = (),
               internal_date: float | None = None) -> AppendResult:
        """Store a message in a folder; returns its UID (for APPENDUID).

        data may have CRLF (as from the wire) or LF lines; it is stored with
        LF. internal_date (seconds since the epoch) becomes the file's
        mtime, which is what Dovecot and we read back as the internal date;
        default now. TooManyKeywords if a new keyword does not fit.
        """
        wanted = [canonical(f) for f in flag_names]
        body = content.to_lf(data)
        vsize = content.crlf_size(body)
        with self.lock:
            fs = self._sync_for(self._dir_of(name))
            row = fs.sync()
            letters = keywords.letters_for(wanted, fs.keywords, create=True)
            suffix = suffix_for(letters)
            tmp, base = maildir.write_tmp(fs.path, body, extra=f",W={vsize}",
                                          mtime=internal_date)
            try:
                with self.index.write(), fs.own_change():
                    if not maildir.publish(tmp, fs.path / "cur" / (base + suffix)):
                        raise FileExistsError(f"{base} exists")
                    fsync_dir(fs.path / "cur")
                    uid = fs.assign(row.id, [(base, False, suffix)], {base: vsize})[base]
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            if internal_date is not None:
                self.index.set_column(row.id, "idate", {uid: int(internal_date)})
            return AppendResult(row.uidvalidity, uid)

    def transfer(self, source: FolderSync, uids: Sequence[int], dest_name: str, *,
                 move: bool) -> CopyResult:
        """Copy or move messages of one folder into another (Folder.copy and move use it).

        Copies are hard links under new base names (a copy by bytes where
        links fail); a move renames the file and drops the source UIDs.
        Flags go along; keywords are translated to the destination's letters
        (keywords beyond its 26 are dropped, as Dovecot does). The expunged
        fields of the result are left for the caller to fill.
        """
        with self.lock:
            dest = self._sync_for(self._dir_of(dest_name))
            dest_row = dest.sync()
            src_row = source.sync()
            source.keywords.refresh()
            wanted = sorted(set(uids))
            with self.index.write(), source.own_change(), dest.own_change():
                rows = self.index.rows_for(src_row.id, wanted)
                vsizes = self.index.column(src_row.id, "vsize", wanted)
                missing = [u for u in wanted if u not in rows]
                placed: list[tuple[int, str, str]] = []  # (source uid, base, suffix)
                failed: list[int] = []
                for uid in wanted:
                    r = rows.get(uid)
                    if r is None:
                        continue
                    result = self._place(source, r, dest, vsizes.get(uid), move=move)
                    if result is None:
                        failed.append(uid)
                    else:
                        placed.append((uid, *result))
                if failed:
                    # Renamed or removed by someone else since the index saw it.
                    source.sync(full=True)
                    again = self.index.rows_for(src_row.id, failed)
                    for uid in failed:
                        r = again.get(uid)
                        result = None if r is None else self._place(
                            source, r, dest, vsizes.get(uid), move=move)
                        if result is None:
                            missing.append(uid)
                        else:
                            placed.append((uid, *result))
                    placed.sort()
                if placed:
                    fsync_dir(dest.path / "cur")
                    assigned = dest.assign(
                        dest_row.id, [(b, False, s) for _, b, s in placed],
                        {b: vsizes[u] for u, b, _ in placed if vsizes.get(u)},  # type: ignore[misc]
                    )
                    pairs = [(u, assigned[b]) for u, b, _ in placed]
                    self.index.copy_cached(src_row.id, dest_row.id, pairs)
                    if move:
                        source.drop(src_row.id, [u for u, _ in pairs])
                else:
                    pairs = []
            return CopyResult(dest_row.uidvalidity, pairs, sorted(missing))

    def _place(self, source: FolderSync, r: Row, dest: FolderSync, vsize: int | None, *,
               move: bool) -> tuple[str, str] | None:
        """Put one message file into dest/cur under a new base name; None if it is gone."""
        src_path = source.file_of(r)
        try:
            st = os.stat(src_path)
        except FileNotFoundError:
            return None
        letters = keywords.letters_for(
            decode(letters_of(r.suffix), source.keywords.by_letter), dest.keywords,
            create=True, drop_overflow=True,
        )
        suffix = suffix_for(letters)
        size = vsize if vsize is not None else content.size_from_base(r.base)
        extra = f",W={size}" if size is not None else ""
        for _ in range(5):
            base = maildir.unique_name(st.st_size) + extra
            target = dest.path / "cur" / (base + suffix)
            try:
                if move:
                    if target.exists():
                        continue
                    os.rename(src_path, target)
                else:
                    os.link(src_path, target)
                return base, suffix
            except FileExistsError:
                continue
            except FileNotFoundError:
                return None
            except OSError:
                break  # another filesystem or no hard links: copy the bytes
        try:
            data = src_path.read_bytes()
        except FileNotFoundError:
            return None
        tmp, base = maildir.write_tmp(dest.path, data, extra=extra, mtime=st.st_mtime)
        try:
            if not maildir.publish(tmp, dest.path / "cur" / (base + suffix)):
                return None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if move:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(src_path)
        return base, suffix
