"""The virtual users file and the aliases file.

users:   one `user@domain:$argon2id$...` per line; further `:key=value`
         fields (such as quota) may follow the hash.
aliases: `postmaster@example.org: alice@example.org, bob@example.org`, and
         `@example.org: alice@example.org` as the domain's catch-all.

Both are re-read when they change on disk, so neither daemon needs a
restart after `mda-ctl user add`. Edits go through a lock file and an
atomic rename, so a reader never sees half a file.

Each line is decoded on its own (UTF-8): a bad byte spoils its line only.
A bad line is logged with the file and its line number. When a changed
file has any, the daemons keep the last table read without problems: a
typo must neither make a user unknown (their mail would bounce) nor be
taken in silently. Until a file has once been read cleanly, its good lines
are served.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import log

# Local parts are matched without case, as Postfix and Dovecot do for virtual users.
_ADDRESS = re.compile(r"[^@\s:,<>]+@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
MAX_ALIAS_DEPTH = 10
SUBADDRESS_DELIMITER = "+"


class UsersFileError(Exception):
    pass


def normalize(address: str) -> str:
    return address.strip().lower()


def split(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain.lower()


def valid_address(address: str) -> bool:
    return bool(_ADDRESS.fullmatch(address))


@dataclass(frozen=True)
class User:
    address: str
    password_hash: str
    fields: dict[str, str] = field(default_factory=dict)


def read_text(path: Path) -> str:
    """A users or aliases file's text. Bytes that are not UTF-8 are kept (as
    surrogate escapes) so that parsing reports their lines and an edit
    writes them back unchanged, for the admin to see and fix."""
    return path.read_bytes().decode("utf-8", "surrogateescape")


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _lines(text: str, source: str, problems: list[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; a line that is not UTF-8 is a problem."""
    for n, line in enumerate(text.splitlines(), 1):
        bad = _NOT_UTF8.search(line)
        if bad:
            # The line may hold a password hash: say where, not what.
            byte = ord(bad.group()) - 0xDC00
            problems.append(f"{source}:{n}: not valid UTF-8 (byte {byte:#04x} at "
                            f"column {bad.start() + 1}); line ignored")
            continue
        yield n, line


def parse_users(text: str, source: str = "users") -> tuple[dict[str, User], list[str]]:
    """Returns the users and a list of problems (line numbers and what is wrong)."""
    users: dict[str, User] = {}
    problems: list[str] = []
    for n, raw in _lines(text, source, problems):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        address, sep, rest = line.partition(":")
        address = normalize(address)
        parts = rest.split(":")
        if not sep or not valid_address(address) or not parts[0].startswith("$"):
            # Only what stands before the first ':': the rest may be a hash
            # or a password pasted by mistake, and this goes to the log.
            shown = f"{raw.partition(':')[0].strip()!r}:..." if sep else "a line without ':'"
            problems.append(f"{source}:{n}: expected user@domain:$argon2id$..., got {shown}")
            continue
        if address in users:
            problems.append(f"{source}:{n}: {address} is listed twice; the first one counts")
            continue
        extra = {}
        for item in parts[1:]:
            k, _, v = item.partition("=")
            if k:
                extra[k.strip()] = v.strip()
        users[address] = User(address, parts[0], extra)
    return users, problems


def parse_aliases(text: str, source: str = "aliases") -> tuple[dict[str, list[str]], list[str]]:
    aliases: dict[str, list[str]] = {}
    problems: list[str] = []
    for n, raw in _lines(text, source, problems):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, rest = line.partition(":")
        key = normalize(key)
        targets = [normalize(t) for t in rest.split(",") if t.strip()]
        key_ok = valid_address(key) or (key.startswith("@") and valid_address("x" + key))
        if not sep or not key_ok or not targets:
            problems.append(f"{source}:{n}: expected 'address: target[, target...]', got {raw!r}")
            continue
        bad = [t for t in targets if not valid_address(t)]
        if bad:
            problems.append(f"{source}:{n}: not an address: {', '.join(bad)}")
            continue
        aliases.setdefault(key, []).extend(targets)
    return aliases, problems


class _Watched:
    """A file parsed again whenever its identity or size or time changes.

    A version with problems is logged once, and its table replaces the one
    in service only if there is no clean one yet (see the module's text).
    """

    def __init__(self, path: Path, parse: Callable[[str, str], tuple[object, list[str]]]):
        self.path = path
        self.parse = parse
        self.stamp: tuple[int, int, int] | None = None
        self.value: object = None
        self.clean = False  # the value in service came from a file without problems

    def get(self) -> object:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self.stamp:
            try:
                text = read_text(self.path)
            except FileNotFoundError:
                text = ""
            value, problems = self.parse(text, str(self.path))
            self.stamp = stamp
            self._take(value, problems)
        return self.value

    def _take(self, value: object, problems: list[str]) -> None:
        logger = log.get().bind(file=str(self.path))
        for p in problems:
            logger.warning("bad line", problem=p)
        if not problems:
            self.value, self.clean = value, True
            if self.stamp != (0, 0, 0):
                logger.info("loaded")
        elif self.clean:
            logger.error("file has bad lines: keeping the last good version in service "
                         "until it is fixed", bad_lines=len(problems))
        else:
            self.value = value
            logger.error("file has bad lines: serving its good lines only",
                         bad_lines=len(problems))


@dataclass(frozen=True)
class Resolution:
    """Where mail for one address goes."""

    kind: str  # "local", "remote" or "unknown"
    targets: tuple[str, ...] = ()


class UserDB:
    def __init__(self, users_path: Path, aliases_path: Path, local_domains: list[str]):
        self._users = _Watched(users_path, parse_users)
        self._aliases = _Watched(aliases_path, parse_aliases)
        self.local_domains = {d.lower() for d in local_domains}
        # Read both now, so that the tables kept when a change is bad are
        # at worst the ones the daemon started with; an unreadable file is
        # tried again (and its error answered) at the first lookup.
        for watched in (self._users, self._aliases):
            with contextlib.suppress(OSError):
                watched.get()

    @property
    def users(self) -> dict[str, User]:
        return self._users.get()  # type: ignore[return-value]

    @property
    def aliases(self) -> dict[str, list[str]]:
        return self._aliases.get()  # type: ignore[return-value]

    def get(self, address: str) -> User | None:
        return self.users.get(normalize(address))

    def _mailbox(self, address: str) -> str | None:
        users = self.users
        if address in users:
            return address
        local, domain = split(address)
        base = local.split(SUBADDRESS_DELIMITER, 1)[0]
        if base != local and f"{base}@{domain}" in users:
            return f"{base}@{domain}"
        return None

    def resolve(self, address: str) -> Resolution:
        """Expand aliases into final recipients; a remote target stays as it is."""
        address = normalize(address)
        _, domain = split(address)
        if domain not in self.local_domains:
            return Resolution("remote", (address,))
        found: list[str] = []
        # A loop of aliases that never reaches a mailbox finds nothing: unknown,
        # so the sender hears it instead of mail going nowhere.
        if not self._expand(address, found, set(), 0) or not found:
            return Resolution("unknown")
        return Resolution("local", tuple(dict.fromkeys(found)))

    def _expand(self, address: str, found: list[str], seen: set[str], depth: int) -> bool:
        if address in seen or depth > MAX_ALIAS_DEPTH:
            return True  # a loop adds nothing, but the earlier hops still count
        seen.add(address)
        local, domain = split(address)
        if domain not in self.local_domains:
            found.append(address)
            return True
        aliases = self.aliases
        targets = aliases.get(address)
        if targets is None:
            base = local.split(SUBADDRESS_DELIMITER, 1)[0]
            targets = aliases.get(f"{base}@{domain}")
        mailbox = self._mailbox(address)
        if targets is None and mailbox is not None:
            found.append(mailbox)
            return True
        if targets is None:
            targets = aliases.get("@" + domain)
        if targets is None:
            return False
        ok = False
        for t in targets:
            if t == address and mailbox is not None:
                # An alias may keep a copy for the user it is named after.
                found.append(mailbox)
                ok = True
            elif self._expand(t, found, seen, depth + 1):
                ok = True
        return ok


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str, mode: int = 0o640) -> None:
    """Replace path with text so that a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            os.chown(tmp, st.st_uid, st.st_gid)
            os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def edit_lines(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    """Apply change to the file's lines under its lock, then write it back atomically."""
    with locked(path):
        try:
            text = read_text(path)
        except FileNotFoundError:
            text = ""
        new = change(text.splitlines())
        atomic_write(path, "".join(line + "\n" for line in new))


def line_address(line: str) -> str | None:
    s = line.strip()
    if not s or s.startswith("#"):
        return None
    return normalize(s.split(":", 1)[0])
