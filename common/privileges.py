"""Who each child runs as, and the owners of what the parent creates for them.

Only a parent started as root drops anything: run as an ordinary user (in
development, in tests) every process keeps that user and nothing is chowned.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path


class PrivilegeError(Exception):
    pass


@dataclass(frozen=True)
class Creds:
    uid: int
    gid: int
    user: str
    group: str


def can_drop() -> bool:
    return os.geteuid() == 0


def resolve(user: str, group: str) -> Creds | None:
    """The ids to drop to, or None when there is nothing to drop (not root)."""
    if not can_drop():
        return None
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise PrivilegeError(
            f"user {user!r} does not exist (create it, e.g. with deploy/install.sh)") from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise PrivilegeError(f"group {group!r} does not exist") from None
    return Creds(uid, gid, user, group)


def group_id(group: str) -> int | None:
    if not can_drop():
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise PrivilegeError(f"group {group!r} does not exist") from None


def own(path: Path, uid: int | None, gid: int | None, mode: int) -> None:
    """Set owner (when root) and mode of something the parent made."""
    if can_drop():
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    os.chmod(path, mode)


def spawn_kwargs(creds: Creds | None) -> dict:
    """Arguments for subprocess: the child drops before exec, so before any input."""
    if creds is None or creds.uid == 0:
        return {}
    return {"user": creds.uid, "group": creds.gid, "extra_groups": []}
