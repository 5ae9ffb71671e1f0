"""dovecot-uidlist: the per-folder file that makes UIDs stable.

Version 3, as Dovecot 1.1 and later write it:

    3 V1700000000 N42 G3f0c...        header: uidvalidity, next uid, folder GUID
    40 :1700000100.M1P2.host,S=1234   one line per message: uid and base name
    41 W1260 S1234 :1700000200.M3P4.host

The base name is the file name without its `:2,` info, so a message keeps
its UID when its flags change or it moves from new/ to cur/. Fields between
the uid and the colon (Dovecot writes W<virtual size>, S<size>, G<guid>...)
and header fields we do not know are kept as they are. Versions 1 and 2
(`1 <uidvalidity> <nextuid>`, `<uid> [flags] <name>`) are read too; we
always write 3. Lines we cannot read are skipped, never fatal: a bad line
costs its message a new UID, a crash here would cost the whole folder.

Writers hold `dovecot-uidlist.lock` (lock.py). New records are appended to
the file in place, as Dovecot does; anything else (removing records, a new
header) rewrites it through a temporary file and a rename. Readers that
keep the file open read only what was appended since.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mda.store.files import replace_file, write_all
from mda.store.lock import DotLock

NAME = "dovecot-uidlist"
MAX_UID = 2**32 - 1


@dataclass
class Record:
    uid: int
    base: str
    ext: str = ""  # the raw fields between uid and ':', e.g. "W1260 S1234"

    def field(self, key: str) -> str | None:
        """An extension field's value: field('W') is the virtual size Dovecot stored."""
        for item in self.ext.split():
            if item[0] == key:
                return item[1:]
        return None


@dataclass
class UidList:
    uidvalidity: int
    nextuid: int = 1  # as the header says; next_uid is what to use
    guid: str = ""
    header_ext: list[str] = field(default_factory=list)
    records: dict[int, Record] = field(default_factory=dict)  # ascending uid
    _by_base: dict[str, int] | None = field(default=None, repr=False, compare=False)

    @property
    def next_uid(self) -> int:
        # Appended records do not update the header, so the last uid counts too.
        last = next(reversed(self.records), 0) if self.records else 0
        return max(self.nextuid, last + 1)

    def _base_map(self) -> dict[str, int]:
        if self._by_base is None:
            self._by_base = {}
            for r in self.records.values():
                self._by_base.setdefault(r.base, r.uid)
        return self._by_base

    def uid_of(self, base: str) -> int | None:
        return self._base_map().get(base)

    def add(self, record: Record) -> bool:
        """Keep a record read from a file; False (skipped) for a duplicate uid or base."""
        if record.uid in self.records or self.uid_of(record.base) is not None:
            return False
        if self.records and record.uid < next(reversed(self.records)):
            # Out of order: keep the dict ascending.
            self.records[record.uid] = record
            self.records = dict(sorted(self.records.items()))
        else:
            self.records[record.uid] = record
        assert self._by_base is not None
        self._by_base[record.base] = record.uid
        return True

    def assign(self, bases: list[str]) -> tuple[list[tuple[int, str]], list[Record]]:
        """Give new base names the next UIDs, in the order given (names it knows keep
        theirs): ([(uid, base)] for all of them, the records that are new). One pass
        for however many: a first look at a Maildir may bring 100,000."""
        by_base, records = self._base_map(), self.records
        uid = self.next_uid
        pairs: list[tuple[int, str]] = []
        added: list[Record] = []
        for base in bases:
            known = by_base.get(base)
            if known is None:
                known = uid
                record = records[uid] = Record(uid, base)
                by_base[base] = uid
                added.append(record)
                uid += 1
            pairs.append((known, base))
        self.nextuid = max(self.nextuid, uid)
        return pairs, added

    def remove(self, uids: set[int]) -> None:
        # The last record may go: remember how far UIDs went first.
        self.nextuid = self.next_uid
        self.records = {u: r for u, r in self.records.items() if u not in uids}
        self._by_base = None


# -- text format ----------------------------------------------------------


def _uid(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value <= MAX_UID else None


def _base_ok(base: str) -> bool:
    return bool(base) and "/" not in base and "\0" not in base and base not in (".", "..")


def parse_header(line: str) -> tuple[UidList, int] | None:
    """(empty UidList, version) from the first line, or None if it is not a uidlist header."""
    tokens = line.split()
    if not tokens:
        return None
    if tokens[0] in ("1", "2"):
        if len(tokens) < 3:
            return None
        uv, nxt = _uid(tokens[1]), _uid(tokens[2])
        if uv is None or nxt is None:
            return None
        return UidList(uidvalidity=uv, nextuid=nxt), int(tokens[0])
    if tokens[0] != "3":
        return None
    ul = UidList(uidvalidity=0)
    for token in tokens[1:]:
        key, value = token[0], token[1:]
        if key == "V":
            ul.uidvalidity = _uid(value) or 0
        elif key == "N":
            ul.nextuid = _uid(value) or 1
        elif key == "G":
            ul.guid = value
        else:
            ul.header_ext.append(token)
    if not ul.uidvalidity:
        return None
    return ul, 3


def parse_record(line: str, version: int) -> Record | None:
    if version == 3:
        head, sep, base = line.partition(" :")
        if not sep:
            return None
        uid_text, _, ext = head.partition(" ")
        ext = " ".join(ext.split())
    else:
        tokens = line.split()
        if len(tokens) < 2:
            return None
        uid_text, base, ext = tokens[0], tokens[-1], ""
    uid = _uid(uid_text)
    base = base.split(":", 1)[0]  # some writers kept the info; the base ends before it
    if uid is None or not _base_ok(base):
        return None
    return Record(uid, base, ext)


def parse_records(ul: UidList, version: int, data: bytes) -> int:
    """Add the complete lines of data to ul; returns how many bytes they took."""
    end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
    for raw in data[:end].split(b"\n"):
        if not raw:
            continue
        record = parse_record(os.fsdecode(raw), version)
        if record is not None:
            ul.add(record)
    return end


def parse(data: bytes) -> tuple[UidList, int, int] | None:
    """(uidlist, version, bytes consumed) or None when there is no usable header."""
    first_end = data.find(b"\n")
    if first_end < 0:
        return None
    header = parse_header(os.fsdecode(data[:first_end]))
    if header is None:
        return None
    ul, version = header
    consumed = first_end + 1 + parse_records(ul, version, data[first_end + 1 :])
    return ul, version, consumed


def format_header(ul: UidList) -> str:
    fields = [f"V{ul.uidvalidity}", f"N{ul.next_uid}"]
    if ul.guid:
        fields.append(f"G{ul.guid}")
    return " ".join(["3", *fields, *ul.header_ext])


def format_record(r: Record) -> str:
    return f"{r.uid} {r.ext} :{r.base}" if r.ext else f"{r.uid} :{r.base}"


def serialize(ul: UidList) -> bytes:
    lines = [format_header(ul), *(format_record(r) for r in ul.records.values())]
    return os.fsencode("\n".join(lines) + "\n")


# -- the file -------------------------------------------------------------


class UidListFile:
    """One folder's dovecot-uidlist, read incrementally while it only grows.

    Keeping the file open pins its inode: the same inode on a later stat is
    the same file, so only the appended bytes need reading. Not thread-safe
    on its own; the store calls it under its lock.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / NAME
        self._fd: int | None = None
        self._ino = 0
        self._version = 3
        self._consumed = 0  # bytes parsed into _cached (complete lines)
        self._seen = 0  # bytes read, a partial last line included
        self._cached: UidList | None = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._cached = None, None

    def signature(self) -> tuple[int, int, int] | None:
        """(inode, size, mtime_ns): changes whenever the file does."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold dovecot-uidlist.lock. If the body fails, what we cached may hold
        records that never reached the file: forget it."""
        with DotLock(self.path):
            try:
                yield
            except BaseException:
                self.close()
                raise

    def read(self) -> UidList | None:
        """The current uidlist (None if there is none or it is unreadable). Do not modify it."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.close()
            return None
        if self._fd is not None and self._cached is not None and st.st_ino == self._ino:
            if st.st_size == self._seen:
                return self._cached
            if st.st_size > self._seen:
                tail = os.pread(self._fd, st.st_size - self._consumed, self._consumed)
                self._seen = self._consumed + len(tail)
                self._consumed += parse_records(self._cached, self._version, tail)
                return self._cached
        return self._read_all()

    def _read_all(self) -> UidList | None:
        self.close()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        data = b"".join(chunks)
        parsed = parse(data)
        if parsed is None:
            os.close(fd)
            return None
        self._fd, self._ino = fd, os.fstat(fd).st_ino
        self._cached, self._version, self._consumed = parsed
        self._seen = len(data)
        return self._cached

    def rewrite(self, ul: UidList) -> None:
        """Replace the file with ul (caller holds the lock)."""
        replace_file(self.path, serialize(ul))
        self.close()

    def append(self, ul: UidList, records: list[Record]) -> None:
        """Add records (already in ul) at the end of the file (caller holds the lock).

        A file that does not end in a complete line, or that we did not read
        as version 3, is rewritten instead so no record merges with garbage.
        """
        current = self.read()
        if current is not ul or self._version != 3 or self._consumed != self._seen:
            self.rewrite(ul)
            return
        data = os.fsencode("".join(format_record(r) + "\n" for r in records))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        # Our own lines are already in ul: just move past them.
        with contextlib.suppress(OSError):
            size = os.fstat(self._fd).st_size if self._fd is not None else 0
            if size == self._seen + len(data):
                self._seen = self._consumed = size
                return
        self.close()  # someone else wrote too: read it all next time
