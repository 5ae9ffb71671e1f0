"""The virtual users file and the aliases file.

users:   one `user@domain:$argon2id$...` per line; further `:key=value`
         fields (such as quota) may follow the hash.
aliases: `postmaster@example.org: alice@example.org, bob@example.org`, and
         `@example.org: alice@example.org` as the domain's catch-all.

Both are re-read when they change on disk, so neither daemon needs a
restart after `mda-ctl user add`. Edits go through a lock file and an
atomic rename, so a reader never sees half a file.
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


def parse_users(text: str, source: str = "users") -> tuple[dict[str, User], list[str]]:
    """Returns the users and a list of problems (line numbers and what is wrong)."""
    users: dict[str, User] = {}
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        address, sep, rest = line.partition(":")
        address = normalize(address)
        parts = rest.split(":")
        if not sep or not valid_address(address) or not parts[0].startswith("$"):
            problems.append(f"{source}:{n}: expected user@domain:$argon2id$..., got {raw!r}")
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
    for n, raw in enumerate(text.splitlines(), 1):
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
    """A file parsed again whenever its identity or size or time changes."""

    def __init__(self, path: Path, parse: Callable[[str, str], tuple[object, list[str]]]):
        self.path = path
        self.parse = parse
        self.stamp: tuple[int, int, int] | None = None
        self.value: object = None

    def get(self) -> object:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self.stamp:
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = ""
            value, problems = self.parse(text, str(self.path))
            for p in problems:
                log.get().warning("ignoring a bad line", problem=p)
            self.value, self.stamp = value, stamp
            if self.stamp != (0, 0, 0):
                log.get().info("loaded", file=str(self.path))
        return self.value


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
        with os.fdopen(fd, "w", encoding="utf-8") as f:
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
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        new = change(lines)
        atomic_write(path, "".join(line + "\n" for line in new))


def line_address(line: str) -> str | None:
    s = line.strip()
    if not s or s.startswith("#"):
        return None
    return normalize(s.split(":", 1)[0])
