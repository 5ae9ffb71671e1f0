"""DKIM key rotation as a small state machine, stored beside the keys.

A key is replaced without a day on which mail fails verification: the new
selector's record must be in DNS before anything is signed with it, and the
old record must stay published while mail signed with the old key can still
be verified (queued, forwarded, read late). `mta-ctl dkim rotate DOMAIN`
runs one step per call and says what the admin must do next:

    publish   new keys made; waiting until DNS serves their records
    signing   DNS serves them: the active selector is the new one (mta-ctl
              reload); the old record stays published for keep_days
    retire    keep_days are over: the old record is listed for removal;
              once DNS no longer serves it, the old key files are deleted
              and the rotation is over

On disk, in <keydir>/<domain>/:
    active          the selector to sign with, one line; absent: the last
                    selector in sorted order (keys.selectors). The signer reads it.
    rotation.json   the rotation under way: {"step", "old", "new", "since", "keep_days"};
                    absent: none. Written by rename, 0640 like the keys.
The DNS questions are the caller's: `advance` takes their answers, so every
step is tested without a resolver.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mta.dkim import keys

__all__ = ["Rotation", "RotationError", "active_selector", "advance", "load", "save",
           "set_active", "start"]

STATE_FILE = "rotation.json"
ACTIVE_FILE = "active"
DEFAULT_KEEP_DAYS = 7
STEPS = ("publish", "signing", "retire")


class RotationError(Exception):
    """A rotation cannot start or its state file is damaged."""


@dataclass(frozen=True)
class Rotation:
    domain: str
    step: str
    old: str | None  # None: the domain had no key before
    new: str
    since: float  # when the current step began
    keep_days: int = DEFAULT_KEEP_DAYS


def _folder(keydir: Path, domain: str) -> Path:
    return Path(keydir) / domain.lower()


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.fchmod(fd, 0o640)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def active_selector(keydir: Path, domain: str) -> str | None:
    try:
        chosen = (_folder(keydir, domain) / ACTIVE_FILE).read_text().strip()
    except FileNotFoundError:
        chosen = ""
    found = keys.selectors(keydir, domain)
    if chosen in found:
        return chosen
    return found[-1] if found else None


def set_active(keydir: Path, domain: str, selector: str) -> None:
    _write(_folder(keydir, domain) / ACTIVE_FILE, selector + "\n")


def load(keydir: Path, domain: str) -> Rotation | None:
    path = _folder(keydir, domain) / STATE_FILE
    try:
        data = json.loads(path.read_text())
        rot = Rotation(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise RotationError(f"{path} is damaged ({e}); remove it to start again") from None
    if rot.step not in STEPS:
        raise RotationError(f"{path}: unknown step {rot.step!r}")
    return rot


def save(keydir: Path, rot: Rotation | None, domain: str) -> None:
    path = _folder(keydir, domain) / STATE_FILE
    if rot is None:
        path.unlink(missing_ok=True)
    else:
        _write(path, json.dumps(asdict(rot)) + "\n")


def start(keydir: Path, domain: str, selector: str, keep_days: int,
          now: float | None = None) -> Rotation:
    """New keys under `selector` and a rotation at its first step."""
    domain = domain.lower()
    if load(keydir, domain) is not None:
        raise RotationError(f"a rotation of {domain} is under way")
    old = active_selector(keydir, domain)
    if selector == old:
        raise RotationError(f"{selector} is the selector in use; choose another --selector")
    if old is not None:
        # Pinned first: the fallback (the last selector) would pick the new key unpublished.
        set_active(keydir, domain, old)
    try:
        keys.generate(keydir, domain, selector)
    except FileExistsError as e:
        raise RotationError(f"{e}; choose another --selector") from None
    rot = Rotation(domain, "publish", old, selector, now if now is not None else time.time(),
                   keep_days)
    save(keydir, rot, domain)
    return rot


def advance(keydir: Path, rot: Rotation, now: float, new_seen: bool,
            old_gone: bool) -> tuple[Rotation | None, list[str]]:
    """One step, given whether DNS serves the new record and no longer the old one.
    Returns the state to keep (None: done) and what to tell the admin."""
    new_name = " and ".join(keys.txt_names(rot.domain, rot.new))
    old_name = " and ".join(keys.txt_names(rot.domain, rot.old)) if rot.old else None
    if rot.step == "publish":
        if not new_seen:
            return rot, [f"step 1 of 3: publish the TXT records of {new_name} (below), "
                         f"then run this again"]
        set_active(keydir, rot.domain, rot.new)
        rot = replace(rot, step="signing", since=now)
        msg = [f"step 2 of 3: DNS serves {new_name}; signing switched to selector {rot.new}: "
               f"run `mta-ctl reload`"]
        if old_name is None:
            return None, msg + ["no old key to retire: the rotation is done"]
        return rot, msg + [f"keep {old_name} published until "
                           f"{_day(now + rot.keep_days * 86400)}, then run this again"]
    if rot.step == "signing":
        due = rot.since + rot.keep_days * 86400
        if now < due:
            return rot, [f"step 2 of 3: signing with {rot.new}; keep {old_name} published "
                         f"until {_day(due)}, then run this again"]
        rot = replace(rot, step="retire", since=now)
    # retire
    if not old_gone:
        return rot, [f"step 3 of 3: remove the TXT records {old_name} from DNS, "
                     f"then run this again"]
    for a in keys.ALGORITHMS:
        keys.key_path(keydir, rot.domain, rot.old, a).unlink(missing_ok=True)
    return None, [f"{old_name}: gone from DNS; the old key files are deleted: "
                  f"the rotation is done"]


def _day(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
