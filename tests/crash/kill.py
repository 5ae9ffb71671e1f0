"""crashkill: kill -9 a random process of mtad or mdad, and restart as a unit would.

A child killed is restarted by its daemon's parent. A parent killed takes
its children with it (they get SIGTERM from the kernel, PR_SET_PDEATHSIG);
then, as systemd does for a unit with Restart=on-failure and KillMode=mixed,
whatever is left of the daemon's process group is killed after a grace and
the daemon is started again.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

GROUP_GRACE = 30.0  # how long the rest of a dead parent's group may take to go


@dataclass
class Kill:
    at: float  # time.time() of the kill
    daemon: str
    role: str  # "parent" or the child's role
    pid: int
    back_at: float | None = None  # when the daemon answered again (after a parent's death)
    duplicates: int = 0  # daemon duplicates of messages in flight at this kill (crashcount)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def children(parent: int) -> dict[int, str]:
    """pid -> role of each live child of parent (found by its `-m <package>.<role>...`)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid != parent:
            continue
        args = _cmdline(int(entry))
        if "-m" in args:
            module = args[args.index("-m") + 1]
            # mta.queue.main -> queue, mda.imap.server -> imap, mda.login.imap -> imap-login
            parts = [p for p in module.split(".")[1:] if p not in ("main", "server")]
            out[int(entry)] = "-".join(reversed(parts))
    return out


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class Killer:
    """Kills within a Stack (tests/conftest.py); rng decides what and when."""

    def __init__(self, stack, rng: random.Random, daemons=("mtad", "mdad"),
                 roles: tuple[str, ...] | None = None) -> None:
        self.stack = stack
        self.rng = rng
        self.daemons = daemons
        self.roles = roles  # only these ("parent", "queue", ...); None: any
        self.kills: list[Kill] = []

    def kill_one(self) -> Kill:
        daemon = self.rng.choice(self.daemons)
        proc = self.stack.procs[daemon]
        deadline = time.monotonic() + GROUP_GRACE
        while True:
            targets = {proc.pid: "parent", **children(proc.pid)}
            if self.roles is not None:
                targets = {p: r for p, r in targets.items() if r in self.roles}
            if targets or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # the child of that role killed last is not back yet
        if not targets:
            raise AssertionError(f"no {daemon} process of the roles {self.roles} to kill")
        pid = self.rng.choice(sorted(targets))
        kill = Kill(time.time(), daemon, targets[pid], pid)
        os.kill(pid, signal.SIGKILL)
        self.kills.append(kill)
        if pid == proc.pid:
            self._restart(daemon)
            kill.back_at = time.time()
        return kill

    def _restart(self, daemon: str) -> None:
        proc = self.stack.procs.pop(daemon)
        proc.wait(10)
        deadline = time.monotonic() + GROUP_GRACE
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        self.stack.start(daemon)
