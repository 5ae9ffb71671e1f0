"""The per-user index: a SQLite cache of what FETCH, SEARCH and STATUS need.

`<Maildir>/mailpair-index.sqlite` (WAL mode, so readers never wait for a
writer) holds for each folder its UIDVALIDITY, next UID, HIGHESTMODSEQ and
what its directories looked like when last scanned, and for each message
its base name, where the file is (new/ or cur/, the info suffix with the
flags), its modseq, its CRLF size and internal date once known, and
whatever parsed data the protocol layer caches (opaque values by key).

It is a cache: UIDs and UIDVALIDITY come from dovecot-uidlist, flags from
the file names. Delete the file and the next open rebuilds it with the
same UIDs; a damaged file is set aside and rebuilt the same way
(indexrepair.py says how damage is found and who retries). What only the
index knows is modseqs; a rebuilt folder starts its modseqs at the current
time in milliseconds, above any modseq handed out before (one a
millisecond on average would be needed to overtake it), so a CONDSTORE
client asking for changes since an old value gets all.

Every change happens in one write transaction (BEGIN IMMEDIATE), which
also serializes all of a user's sessions and processes that change the
store. Not thread-safe by itself: callers hold `lock` (an RLock) for the
whole of a transaction; read() and write() take it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from mda.store import indexrepair

FILE = "mailpair-index.sqlite"
SCHEMA_VERSION = 1
# A writer waits this long for another session's transaction (a flag change on
# 100,000 messages takes seconds).
BUSY_TIMEOUT = 60.0
# SQLite's limit on host parameters is 32766 in current versions; stay well below.
_CHUNK = 500
# Asked for more messages than this, rows_for reads the whole folder.
_WHOLE_FOLDER = 5000


def _enter_wal(conn: sqlite3.Connection) -> None:
    """Switch a new file to WAL; a file already in WAL needs no lock for it.

    SQLite does not call the busy handler while changing the journal mode, so
    when several sessions open a user's brand-new index at once all but one get
    "database is locked" at once: retry them until the first has switched.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.001
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            code = getattr(e, "sqlite_errorcode", 0) & 0xFF  # the primary code
            if code not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE folders(
    id INTEGER PRIMARY KEY,
    dir TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    nextuid INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    tomb_floor INTEGER NOT NULL,
    snap_new INTEGER,
    snap_cur INTEGER,
    snap_uidlist TEXT,
    dirty_new INTEGER NOT NULL DEFAULT 1,
    full_scan_at REAL NOT NULL DEFAULT 0
);
CREATE TABLE messages(
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    base TEXT NOT NULL,
    in_new INTEGER NOT NULL,
    suffix TEXT NOT NULL,
    modseq INTEGER NOT NULL,
    vsize INTEGER,
    idate INTEGER,
    PRIMARY KEY(folder, uid)
) WITHOUT ROWID;
CREATE INDEX messages_modseq ON messages(folder, modseq);
CREATE INDEX messages_base ON messages(folder, base);
CREATE TABLE expunged(
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY(folder, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged(folder, modseq);
CREATE TABLE parsed(
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    key TEXT NOT NULL,
    value,
    PRIMARY KEY(folder, uid, key)
) WITHOUT ROWID;
"""


def modseq_base() -> int:
    """Where a folder new to the index starts counting: now, in milliseconds."""
    return max(1, time.time_ns() // 1_000_000)


@dataclass
class FolderRow:
    id: int
    dir: str
    uidvalidity: int
    nextuid: int
    highestmodseq: int
    tomb_floor: int  # modseqs up to here may have lost their expunge records
    snap_new: int | None  # mtime_ns of new/ when last scanned
    snap_cur: int | None
    snap_uidlist: str | None  # "inode:size:mtime_ns" of dovecot-uidlist
    dirty_new: int
    full_scan_at: float


_FOLDER_COLUMNS = (
    "id, dir, uidvalidity, nextuid, highestmodseq, tomb_floor, snap_new, snap_cur,"
    " snap_uidlist, dirty_new, full_scan_at"
)


class Row(NamedTuple):
    """One message as the index knows it (a tuple: a first look at a big folder makes 100,000)."""

    uid: int
    base: str
    in_new: bool
    suffix: str
    modseq: int

    @property
    def filename(self) -> str:
        return self.base + self.suffix

    @property
    def subdir(self) -> str:
        return "new" if self.in_new else "cur"


def _chunks(items: Sequence[int]) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class Index:
    def __init__(self, root: Path, *, user: str | None = None) -> None:
        self.path = root / FILE
        self.user = user  # for the log, when the index is found damaged
        self.lock = threading.RLock()
        self._depth = 0
        self._writing = False
        self.conn = self._open()
        self._ino = os.stat(self.path).st_ino
        self.generation = 0  # files opened since: a stale failure moves nothing
        self.epoch = self._epoch()

    def _epoch(self) -> str:
        # Changes whenever the index is rebuilt: sessions holding modseqs from
        # the old one compare everything instead.
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        return str(row[0])

    def reopen_if_replaced(self) -> bool:
        """Follow a deleted or replaced index file (someone removed the cache); True if so."""
        with self.lock:
            if self._depth:
                return False
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == self._ino:
                    return False
            self._switch()
            return True

    def _switch(self) -> None:
        """Close this file and continue on whatever is at the path now (or a new one)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        self.conn = self._open()
        self._ino = os.stat(self.path).st_ino
        self.generation += 1
        self.epoch = self._epoch()

    # -- opening --------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # It holds subjects and addresses: only the mail user may read it.
        # SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        try:
            _enter_wal(conn)
        except BaseException:
            conn.close()
            raise
        # A cache: losing the last transactions in a power cut only means a rescan.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _discard(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def _open(self) -> sqlite3.Connection:
        for _ in range(3):
            conn = None
            damage: str | None = None
            ino: int | None = None
            try:
                conn = self._connect()
                ino = os.stat(self.path).st_ino
                if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                    self._create_schema(conn)
                if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                    damage = indexrepair.check_once(conn, self.path)
                    if damage is None:
                        return conn
            except sqlite3.OperationalError:
                # Busy, locked, unreadable: the file may be fine, others may use it.
                if conn is not None:
                    conn.close()
                raise
            except sqlite3.DatabaseError as e:
                # Not a database, or a damaged one: it is only a cache.
                damage = str(e)
            if conn is not None:
                conn.close()
            if damage is None:
                self._discard()  # another schema version: nothing to look into
            else:
                indexrepair.move_aside(self.path, ino, user=self.user, error=damage)
        raise sqlite3.DatabaseError(f"cannot create the index {self.path}")

    def recover(self, error: BaseException, generation: int) -> bool:
        """Set the damaged file aside (unless another session did) and go on with a new
        one; False inside a transaction, where the outermost caller must do it."""
        with self.lock:
            if self._depth:
                return False
            if generation != self.generation:
                return True  # another thread already moved on from that file
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            indexrepair.move_aside(self.path, self._ino, user=self.user, error=str(error))
            self._switch()
            return True

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created it while we waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO meta VALUES('epoch', ?)", (secrets.token_hex(8),))
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # -- transactions ---------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls join the outer one."""
        with self.lock:
            if self._depth:
                if not self._writing:
                    raise RuntimeError("write transaction inside a read transaction")
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth, self._writing = 1, True
            try:
                yield self.conn
            except BaseException:
                # A failed ROLLBACK (a damaged file) must not hide why we roll back.
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth, self._writing = 0, False

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several queries; inside a write it joins that."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.conn.execute("COMMIT")

    @property
    def in_write(self) -> bool:
        return self._depth > 0 and self._writing

    # -- folders --------------------------------------------------------

    def folder(self, dirname: str) -> FolderRow | None:
        with self.read() as c:
            row = c.execute(f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE dir = ?",
                            (dirname,)).fetchone()
        return FolderRow(*row) if row else None

    def add_folder(self, dirname: str, uidvalidity: int, nextuid: int) -> FolderRow:
        with self.write() as c:
            base = modseq_base()
            c.execute(
                "INSERT INTO folders(dir, uidvalidity, nextuid, highestmodseq, tomb_floor)"
                " VALUES(?, ?, ?, ?, ?)",
                (dirname, uidvalidity, nextuid, base, base),
            )
        row = self.folder(dirname)
        assert row is not None
        return row

    def update_folder(self, fid: int, **values: object) -> None:
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self.write() as c:
            c.execute(f"UPDATE folders SET {assignments} WHERE id = ?", (*values.values(), fid))

    def forget_messages(self, fid: int) -> None:
        """Drop everything known about a folder's messages (its UIDVALIDITY changed)."""
        with self.write() as c:
            for table in ("messages", "expunged", "parsed"):
                c.execute(f"DELETE FROM {table} WHERE folder = ?", (fid,))
            c.execute("DELETE FROM meta WHERE key = ?", (f"recent:{fid}",))
            c.execute("UPDATE folders SET tomb_floor = highestmodseq WHERE id = ?", (fid,))

    def drop_folder(self, dirname: str) -> None:
        with self.write() as c:
            row = c.execute("SELECT id FROM folders WHERE dir = ?", (dirname,)).fetchone()
            if row is None:
                return
            self.forget_messages(row[0])
            c.execute("DELETE FROM folders WHERE id = ?", (row[0],))

    def rename_folder(self, old: str, new: str) -> None:
        with self.write() as c:
            c.execute("DELETE FROM folders WHERE dir = ?", (new,))  # stale leftovers
            c.execute("UPDATE folders SET dir = ? WHERE dir = ?", (new, old))

    def bump_modseq(self, fid: int) -> int:
        """The next modseq of a folder (inside a write transaction)."""
        with self.write() as c:
            c.execute("UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = ?", (fid,))
            return c.execute("SELECT highestmodseq FROM folders WHERE id = ?",
                             (fid,)).fetchone()[0]

    # -- messages -------------------------------------------------------

    _ROW = "uid, base, in_new, suffix, modseq"

    def rows(self, fid: int) -> list[Row]:
        with self.read() as c:
            cur = c.execute(f"SELECT {self._ROW} FROM messages WHERE folder = ? ORDER BY uid",
                            (fid,))
            return [Row(u, b, bool(n), s, m) for u, b, n, s, m in cur]

    def view_rows(self, fid: int) -> list[tuple[int, str, int, int]]:
        """(uid, suffix, modseq, in_new) of every message, by uid: what a view loads."""
        with self.read() as c:
            return c.execute("SELECT uid, suffix, modseq, in_new FROM messages WHERE folder = ?"
                             " ORDER BY uid", (fid,)).fetchall()

    def rows_in_new(self, fid: int) -> list[Row]:
        with self.read() as c:
            cur = c.execute(f"SELECT {self._ROW} FROM messages WHERE folder = ? AND in_new = 1",
                            (fid,))
            return [Row(u, b, bool(n), s, m) for u, b, n, s, m in cur]

    def rows_for(self, fid: int, uids: Sequence[int]) -> dict[int, Row]:
        found: dict[int, Row] = {}
        if len(uids) > _WHOLE_FOLDER:
            # STORE 1:*: one pass over the folder beats hundreds of IN (...) queries.
            wanted = set(uids)
            with self.read() as c:
                cur = c.execute(f"SELECT {self._ROW} FROM messages WHERE folder = ?", (fid,))
                for u, b, n, s, m in cur:
                    if u in wanted:
                        found[u] = Row(u, b, bool(n), s, m)
            return found
        with self.read() as c:
            for chunk in _chunks(uids):
                marks = ",".join("?" * len(chunk))
                cur = c.execute(f"SELECT {self._ROW} FROM messages WHERE folder = ?"
                                f" AND uid IN ({marks})", (fid, *chunk))
                for u, b, n, s, m in cur:
                    found[u] = Row(u, b, bool(n), s, m)
        return found

    def row(self, fid: int, uid: int) -> Row | None:
        return self.rows_for(fid, [uid]).get(uid)

    def uid_by_base(self, fid: int, base: str) -> int | None:
        with self.read() as c:
            row = c.execute("SELECT uid FROM messages WHERE folder = ? AND base = ?",
                            (fid, base)).fetchone()
        return row[0] if row else None

    def changed_since(self, fid: int, modseq: int) -> list[Row]:
        with self.read() as c:
            cur = c.execute(f"SELECT {self._ROW} FROM messages WHERE folder = ? AND modseq > ?"
                            " ORDER BY uid", (fid, modseq))
            return [Row(u, b, bool(n), s, m) for u, b, n, s, m in cur]

    def expunged_since(self, fid: int, modseq: int) -> list[int]:
        with self.read() as c:
            cur = c.execute("SELECT uid FROM expunged WHERE folder = ? AND modseq > ?"
                            " ORDER BY uid", (fid, modseq))
            return [u for (u,) in cur]

    def add_messages(self, fid: int, modseq: int,
                     items: Iterable[tuple[int, str, bool, str, int | None]]) -> None:
        """New messages, all with one modseq: (uid, base, in_new, suffix, vsize or None)."""
        with self.write() as c:
            c.executemany(
                "INSERT OR REPLACE INTO messages(folder, uid, base, in_new, suffix, modseq, vsize)"
                " VALUES(?, ?, ?, ?, ?, ?, ?)",
                ((fid, u, b, int(n), s, modseq, v) for u, b, n, s, v in items),
            )

    def relocate(self, fid: int, rows: Iterable[Row]) -> None:
        """Record where files are now and their modseqs."""
        with self.write() as c:
            c.executemany(
                "UPDATE messages SET in_new = ?, suffix = ?, modseq = ?"
                " WHERE folder = ? AND uid = ?",
                ((int(r.in_new), r.suffix, r.modseq, fid, r.uid) for r in rows),
            )

    def expunge(self, fid: int, uids: Sequence[int], modseq: int) -> None:
        """Remove messages and remember that they went, for the sessions that still show them."""
        with self.write() as c:
            for chunk in _chunks(list(uids)):
                marks = ",".join("?" * len(chunk))
                for table in ("messages", "parsed"):
                    c.execute(f"DELETE FROM {table} WHERE folder = ? AND uid IN ({marks})",
                              (fid, *chunk))
            c.executemany("INSERT OR REPLACE INTO expunged VALUES(?, ?, ?)",
                          ((fid, u, modseq) for u in uids))

    def prune_expunged(self, fid: int, keep: int) -> None:
        """Forget the oldest expunge records beyond `keep`; sessions older than them rescan."""
        with self.write() as c:
            count = c.execute("SELECT count(*) FROM expunged WHERE folder = ?",
                              (fid,)).fetchone()[0]
            if count <= keep:
                return
            row = c.execute("SELECT modseq FROM expunged WHERE folder = ? ORDER BY modseq DESC"
                            " LIMIT 1 OFFSET ?", (fid, keep)).fetchone()
            floor = row[0]
            c.execute("DELETE FROM expunged WHERE folder = ? AND modseq <= ?", (fid, floor))
            c.execute("UPDATE folders SET tomb_floor = max(tomb_floor, ?) WHERE id = ?",
                      (floor, fid))

    def counts(self, fid: int) -> tuple[int, int, int]:
        """(messages, \\Recent ones: in new/ or at or above the recent mark, without \\Seen)."""
        with self.read() as c:
            mark = self.recent_mark(fid)
            return c.execute(
                "SELECT count(*), coalesce(sum(in_new OR uid >= ?), 0),"
                " coalesce(sum(NOT (suffix LIKE ':2,%' AND instr(substr(suffix, 4), 'S') > 0)), 0)"
                " FROM messages WHERE folder = ?",
                (mark if mark is not None else 2**32, fid),
            ).fetchone()

    # \Recent (RFC 3501 2.3.2.e) belongs to the first session that sees a
    # message. Files in new/ are claimed by moving them to cur/; messages a
    # client appended or copied go straight to cur/, so the folder keeps a
    # mark instead, as Dovecot's first_recent_uid: UIDs from the mark up are
    # recent for the next writable view, which then moves the mark to UIDNEXT.
    # In `meta`, so that indexes made before it need no new schema.

    def recent_mark(self, fid: int) -> int | None:
        """None until a view first looked at the folder (what was there then is old)."""
        with self.read() as c:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (f"recent:{fid}",)).fetchone()
        return int(row[0]) if row else None

    def set_recent_mark(self, fid: int, uid: int) -> None:
        with self.write() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (f"recent:{fid}", str(uid)))

    # -- sizes, dates, parsed data -------------------------------------

    def column(self, fid: int, column: str, uids: Sequence[int] | None) -> dict[int, int | None]:
        assert column in ("vsize", "idate")
        with self.read() as c:
            if uids is None:
                cur = c.execute(f"SELECT uid, {column} FROM messages WHERE folder = ?", (fid,))
                return dict(cur.fetchall())
            found: dict[int, int | None] = {}
            for chunk in _chunks(uids):
                marks = ",".join("?" * len(chunk))
                cur = c.execute(f"SELECT uid, {column} FROM messages WHERE folder = ?"
                                f" AND uid IN ({marks})", (fid, *chunk))
                found.update(cur.fetchall())
            return found

    def set_column(self, fid: int, column: str, values: dict[int, int]) -> None:
        assert column in ("vsize", "idate")
        with self.write() as c:
            c.executemany(f"UPDATE messages SET {column} = ? WHERE folder = ? AND uid = ?",
                          ((v, fid, u) for u, v in values.items()))

    def get_parsed(self, fid: int, key: str, uids: Sequence[int] | None) -> dict[int, object]:
        with self.read() as c:
            if uids is None:
                cur = c.execute("SELECT uid, value FROM parsed WHERE folder = ? AND key = ?",
                                (fid, key))
                return dict(cur.fetchall())
            found: dict[int, object] = {}
            for chunk in _chunks(uids):
                marks = ",".join("?" * len(chunk))
                cur = c.execute("SELECT uid, value FROM parsed WHERE folder = ? AND key = ?"
                                f" AND uid IN ({marks})", (fid, key, *chunk))
                found.update(cur.fetchall())
            return found

    def put_parsed(self, fid: int, key: str, values: dict[int, object]) -> None:
        with self.write() as c:
            # Only for messages that still exist: a value for an expunged uid
            # would outlive it.
            c.executemany(
                "INSERT OR REPLACE INTO parsed(folder, uid, key, value)"
                " SELECT ?, ?, ?, ? WHERE EXISTS"
                " (SELECT 1 FROM messages WHERE folder = ? AND uid = ?)",
                ((fid, u, key, v, fid, u) for u, v in values.items()),
            )

    def copy_cached(self, src: int, dst: int, pairs: Sequence[tuple[int, int]]) -> None:
        """Give copies the source's size, date and parsed data: the bytes are the same."""
        with self.write() as c:
            for s, d in pairs:
                c.execute(
                    "UPDATE messages SET vsize = coalesce(vsize,"
                    " (SELECT vsize FROM messages WHERE folder = ? AND uid = ?)),"
                    " idate = coalesce(idate,"
                    " (SELECT idate FROM messages WHERE folder = ? AND uid = ?))"
                    " WHERE folder = ? AND uid = ?",
                    (src, s, src, s, dst, d),
                )
                c.execute(
                    "INSERT OR REPLACE INTO parsed(folder, uid, key, value)"
                    " SELECT ?, ?, key, value FROM parsed WHERE folder = ? AND uid = ?",
                    (dst, d, src, s),
                )
