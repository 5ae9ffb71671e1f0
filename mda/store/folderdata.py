"""The reading side of a folder view (Folder's base class): message files,
their sizes and dates, and the protocol layer's cache of parsed data.

Split from folder.py, which keeps the view itself (its state, refresh,
flags, expunge, copy). These methods read what the view shows; like all of
Folder's they block and take the MailStore's lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, BinaryIO

from mda.store import content, indexrepair
from mda.store.errors import MessageGone

if TYPE_CHECKING:
    from mda.store.index import Index
    from mda.store.sync import FolderSync
    from mda.store.viewstate import State


# A damaged index is set aside and rebuilt, and these calls (which only read,
# or cache what they read) run once more.
_repaired = indexrepair.recovering(lambda view: view._ix)


class MessageData:
    """Needs from the view: its lock, index, sync, state, pending expunges and
    _folder_id() (the folder's id in the index, following a rebuilt index)."""

    _lock: threading.RLock
    _ix: Index
    _fs: FolderSync
    _state: State
    _pending: set[int]

    if TYPE_CHECKING:
        def _folder_id(self, *, sync: bool = False) -> int: ...

    # -- reading -------------------------------------------------------------

    @_repaired
    def open_message(self, uid: int) -> BinaryIO:
        """The message file, opened for binary reading (LF lines as stored); close it."""
        with self._lock:
            if uid in self._pending:
                raise MessageGone(f"message {uid} was expunged")
            return self._fs.open_message(self._folder_id(), uid)

    @_repaired
    def paths_of(self, uids: Sequence[int]) -> dict[int, str]:
        """uid -> where the file was at the last sync, for many messages in one index query.

        Cheaper than open_message per message for a bulk read (FETCH 1:*),
        but a path may be stale by the time it is opened (another session
        renamed the file): on FileNotFoundError fall back to open_message,
        which looks again. Messages expunged meanwhile are left out.
        """
        with self._lock:
            rows = self._ix.rows_for(self._folder_id(), [u for u in uids
                                                          if u not in self._pending])
            path = str(self._fs.path) + "/"
            return {u: f"{path}{'new' if r.in_new else 'cur'}/{r.base}{r.suffix}"
                    for u, r in rows.items()}

    def _open_at(self, paths: dict[int, str], uid: int) -> BinaryIO:
        """open_message, trying first where paths_of saw the file."""
        path = paths.get(uid)
        if path is not None:
            try:
                return open(path, "rb")  # noqa: SIM115 - the caller closes it
            except FileNotFoundError:
                pass  # renamed or expunged since: open_message looks again
        return self.open_message(uid)

    def read(self, uid: int) -> bytes:
        """The message as stored (LF line ends)."""
        with self.open_message(uid) as f:
            return f.read()

    def read_crlf(self, uid: int) -> bytes:
        """The message as a protocol sends it (CRLF line ends); len() is size(uid)."""
        return content.to_crlf(self.read(uid))

    @_repaired
    def sizes(self, uids: Sequence[int] | None = None, *,
              read_missing: bool = True) -> dict[int, int]:
        """uid -> CRLF size (RFC822.SIZE, POP3 LIST); read from a file only the first
        time. read_missing=False: only the sizes known without reading (a caller
        that reads the files anyway passes what it counts to remember_sizes)."""
        return self._column("vsize", uids, content.crlf_size_of_stream if read_missing else None)

    @_repaired
    def remember_sizes(self, sizes: dict[int, int]) -> None:
        with self._lock:
            self._ix.set_column(self._folder_id(), "vsize", sizes)

    def size(self, uid: int) -> int:
        return self._one(self.sizes, uid)

    @_repaired
    def internal_dates(self, uids: Sequence[int] | None = None) -> dict[int, int]:
        """uid -> internal date, seconds since the epoch (the file's mtime, as Dovecot)."""
        return self._column("idate", uids, lambda f: int(os.fstat(f.fileno()).st_mtime))

    def internal_date(self, uid: int) -> int:
        return self._one(self.internal_dates, uid)

    def _column(self, column: str, uids: Sequence[int] | None,
                compute: Callable[[BinaryIO], int] | None) -> dict[int, int]:
        """An index column, computed from the open file (and kept) where it is not
        known yet, unless compute is None."""
        with self._lock:
            targets = self._state.uids.tolist() if uids is None else list(uids)
            fid = self._folder_id()
            known = self._ix.column(fid, column, targets)
            if compute is None:
                return {u: v for u, v in known.items() if v is not None}
            missing = [u for u in targets if known.get(u) is None]
            # The first RFC822.SIZE of 1:* opens every file: their paths in one query.
            paths = self.paths_of(missing) if len(missing) > 1 else {}
            found: dict[int, int] = {}
            computed: dict[int, int] = {}
            for uid in targets:
                value = known.get(uid)
                if value is None:
                    with contextlib.suppress(MessageGone), self._open_at(paths, uid) as f:
                        value = computed[uid] = compute(f)
                if value is not None:
                    found[uid] = value
            if computed:
                self._ix.set_column(fid, column, computed)
            return found

    @staticmethod
    def _one(many: Callable[[Sequence[int]], dict[int, int]], uid: int) -> int:
        found = many([uid])
        if uid not in found:
            raise MessageGone(f"message {uid} was expunged")
        return found[uid]

    # -- the protocol layer's cache -------------------------------------------

    @_repaired
    def get_parsed(self, uid: int, key: str) -> object | None:
        """A value put_parsed stored for this message and key, or None."""
        with self._lock:
            return self._ix.get_parsed(self._folder_id(), key, [uid]).get(uid)

    @_repaired
    def get_parsed_many(self, key: str, uids: Sequence[int] | None = None) -> dict[int, object]:
        """uid -> value for the messages that have one (all of the folder's without uids)."""
        with self._lock:
            return self._ix.get_parsed(self._folder_id(), key, uids)

    @_repaired
    def put_parsed(self, uid: int, key: str, value: bytes | str | int | float) -> None:
        """Cache a value (bytes, str, int or float, e.g. JSON text of an ENVELOPE).

        Kept until the message is expunged; copies carry it along. Ignored
        for a message that is already gone.
        """
        self.put_parsed_many(key, {uid: value})

    @_repaired
    def put_parsed_many(self, key: str, values: dict[int, bytes | str | int | float]) -> None:
        with self._lock:
            self._ix.put_parsed(self._folder_id(), key, values)  # type: ignore[arg-type]
