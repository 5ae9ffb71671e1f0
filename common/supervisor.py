"""The parent process of a daemon: binds sockets, starts and watches children.

A daemon is described by a table of roles. Each role is started as a fresh
interpreter (`python -m <module>`) that receives its listening sockets by
descriptor and runs as the role's user, with no supplementary groups. The
parent parses no network input.

A child has started once it says it is ready (common/readiness.py: it logs
`ready` when it serves), or once it has lived HEALTHY_AFTER. A child that
started and then dies is started again after a back-off that grows while it
keeps dying, for as long as it takes. One that cannot start (its spawn fails,
say the interpreter is not executable for its user, or it exits before it is
ready, as on a configuration only the child refuses) is tried
MAX_FAILED_STARTS times with the same back-off; then the daemon stops, with
one error line naming the child and the reason, and exits EXIT_CANNOT_START
so that systemd shows it failed instead of restarting it.

SIGHUP re-reads the configuration and the certificate, then replaces each
child by a new one: the new child starts on the same listening sockets
before the old one is told to stop, and the old one finishes its sessions,
so no connection is refused or cut. A new child that cannot be spawned
leaves the old one serving; one that is spawned but exits before it is
ready counts as a failed start, as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import log, privileges
from common.config import Config
from common.readiness import ReadyPipe

# A child that stayed up this long is healthy again: its back-off starts over.
# It has also started, whether or not it said so.
HEALTHY_AFTER = 30.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# Starts in a row that fail before the daemon gives up: 0.5 + 1 + 2 + 4 s apart.
MAX_FAILED_STARTS = 5
# EX_CONFIG, as for a configuration the parent refuses: the set-up must change
# before a restart can help (the units' RestartPreventExitStatus).
EXIT_CANNOT_START = 78
# How long children get to finish their sessions on SIGTERM.
STOP_GRACE = 50.0


@dataclass
class Role:
    name: str
    module: str
    # name -> listening sockets handed to the child as --fd name=N
    sockets: dict[str, list[socket.socket]] = field(default_factory=dict)
    # Who the child runs as, from the configuration (ignored when not root).
    creds: Callable[[Config], tuple[str, str]] | None = None
    # Whether the child needs the certificate and key (handed over, not read).
    tls: bool = False


# Connections the kernel queues for a listener before accept(). The children
# serve the inherited sockets with asyncio, whose create_server(sock=...)
# calls listen() again with its own default of 100: they pass this.
LISTEN_BACKLOG = 512


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    return sock


@dataclass
class Spawned:
    proc: asyncio.subprocess.Process
    ready: asyncio.Future[bool]  # see ReadyPipe.started

    async def was_ready(self) -> bool:
        """After the process ended: whether it had said it was ready."""
        try:  # its end of the pipe closed with it, so the answer is due
            return await asyncio.wait_for(asyncio.shield(self.ready), 5.0)
        except TimeoutError:
            return False


def exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    if code == 78:
        return "exited with 78 (its configuration was refused)"
    return f"exited with {code}"


def pem_fd(pem: bytes) -> int:
    """An anonymous file holding the key and certificate, for one child to read."""
    fd = os.memfd_create("mailpair-tls", os.MFD_CLOEXEC)
    os.write(fd, pem)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class Supervisor:
    def __init__(self, daemon: str, cfg: Config, roles: list[Role],
                 load: Callable[[str], tuple[Config, bytes]], tls_pem: bytes) -> None:
        self.daemon = daemon
        self.cfg = cfg
        self.roles = roles
        self.load = load
        self.tls_pem = tls_pem
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.retired: set[int] = set()
        self.failed: str | None = None  # the role that could not start
        self.watchers: set[asyncio.Task] = set()
        self.listeners: dict[str, list[tuple[str, int]]] = {}
        self.stopping = asyncio.Event()
        self.log = log.get()

    def write_state(self) -> None:
        """pid, ports and children, for mta-ctl/mda-ctl and for tests (ephemeral ports)."""
        path = self.cfg.paths.run / f"{self.daemon}.json"
        tmp = path.with_suffix(".tmp")
        children = {name: p.pid for name, p in self.procs.items() if p.returncode is None}
        tmp.write_text(json.dumps({"pid": os.getpid(), "listeners": self.listeners,
                                   "children": children}))
        tmp.replace(path)

    async def _spawn(self, role: Role) -> Spawned:
        args = [sys.executable, "-m", role.module, "--config", self.cfg.source]
        fds = []
        for name, socks in role.sockets.items():
            for s in socks:
                fds.append(s.fileno())
                args += ["--fd", f"{name}={s.fileno()}"]
        creds = privileges.resolve(*role.creds(self.cfg)) if role.creds else None
        pipe = ReadyPipe()
        tls_fd = None
        try:
            if role.tls:
                tls_fd = pem_fd(self.tls_pem)
                fds.append(tls_fd)
                args += ["--fd", f"tls={tls_fd}"]
            env = dict(os.environ, MAILPAIR_PARENT=str(os.getpid()), **pipe.env)
            proc = await asyncio.create_subprocess_exec(
                *args, pass_fds=[*fds, pipe.fd], env=env, **privileges.spawn_kwargs(creds))
        except BaseException:
            pipe.close()
            raise
        finally:
            if tls_fd is not None:
                os.close(tls_fd)
        self.log.info("child started", child=role.name, child_pid=proc.pid,
                      user=creds.user if creds else None)
        return Spawned(proc, pipe.started())

    async def _watch(self, role: Role, first: Spawned | None = None) -> None:
        backoff = BACKOFF_FIRST
        failed = 0  # starts in a row that came to nothing
        while not self.stopping.is_set():
            started = time.monotonic()
            child, first = first, None
            reason = None
            if child is None:
                try:
                    child = await self._spawn(role)
                except (OSError, privileges.PrivilegeError) as e:
                    reason = f"cannot start it: {e}"
            if child is not None:
                self.procs[role.name] = child.proc
                self.write_state()
                code = await child.proc.wait()
                if self.stopping.is_set() or child.proc.pid in self.retired:
                    self.retired.discard(child.proc.pid)
                    return
                lived = time.monotonic() - started
                if await child.was_ready() or lived > HEALTHY_AFTER:
                    failed = 0
                    self.log.error("child died, restarting", child=role.name, exit_code=code,
                                   lived_s=round(lived, 2), restart_in_s=backoff)
                else:
                    reason = f"{exit_reason(code)} before it was ready"
            if reason is not None:
                failed += 1
                if failed >= MAX_FAILED_STARTS:
                    self.log.error("child cannot start, stopping the daemon", child=role.name,
                                   reason=reason, attempts=failed)
                    self.failed = role.name
                    self.stopping.set()
                    return
                self.log.warning("child did not start, trying again", child=role.name,
                                 reason=reason, attempt=failed, restart_in_s=backoff)
            if time.monotonic() - started > HEALTHY_AFTER:
                backoff = BACKOFF_FIRST
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _start_watcher(self, role: Role, first: asyncio.subprocess.Process | None = None) -> None:
        task = asyncio.create_task(self._watch(role, first))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    async def reload(self) -> None:
        try:
            cfg, pem = self.load(self.cfg.source)
        except Exception as e:  # a bad edit must not take a running server down
            self.log.error("reload refused, keeping the running configuration", error=str(e))
            return
        if (cfg.mta.smtp, cfg.mta.submission, cfg.mta.submissions) != (
                self.cfg.mta.smtp, self.cfg.mta.submission, self.cfg.mta.submissions):
            self.log.warning("listener changes take effect at the next restart")
        self.cfg, self.tls_pem = cfg, pem
        self.log.info("reloading: replacing every child")
        for role in self.roles:
            old = self.procs.get(role.name)
            try:
                new = await self._spawn(role)
            except (OSError, privileges.PrivilegeError) as e:
                self.log.error("reload: cannot start child, keeping the old one",
                               child=role.name, error=str(e))
                continue
            if old is not None and old.returncode is None:
                self.retired.add(old.pid)
            self._start_watcher(role, new)
            # The new child holds the same listening sockets: the old one may
            # stop accepting now and serve the sessions it has to their end.
            # Not only once the new one is ready: a role that runs once at a
            # time (mtad's queue, holding the spool's lock) waits for the old.
            if old is not None and old.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    old.send_signal(signal.SIGUSR1)

    async def _stop_children(self) -> None:
        """Last role first: the network-facing ones finish their sessions while the
        roles they depend on (queue, lookup) still answer them."""
        deadline = time.monotonic() + STOP_GRACE
        for role in reversed(self.roles):
            p = self.procs.get(role.name)
            if p is None or p.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(p.wait(), max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                self.log.warning("child did not stop in time, killing", child=role.name)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()

    async def run(self, listeners: dict[str, list[tuple[str, int]]]) -> int:
        self.listeners = listeners
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        reloads: set[asyncio.Task] = set()

        def on_hup() -> None:
            t = asyncio.create_task(self.reload())
            reloads.add(t)
            t.add_done_callback(reloads.discard)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        for role in self.roles:
            self._start_watcher(role)
        self.log.info("started", roles=[r.name for r in self.roles],
                      drop=privileges.can_drop())
        await self.stopping.wait()
        self.log.info("stopping")
        await asyncio.gather(*reloads, return_exceptions=True)
        await self._stop_children()
        for w in list(self.watchers):
            w.cancel()
        await asyncio.gather(*self.watchers, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            (self.cfg.paths.run / f"{self.daemon}.json").unlink()
        if self.failed is not None:
            self.log.info("stopped: a child could not start", child=self.failed)
            return EXIT_CANNOT_START
        self.log.info("stopped")
        return 0


def run_dir(path: Path, gid: int | None, mode: int = 0o750) -> Path:
    """A daemon's private socket directory: its children may enter, no one else
    (with mode 0o711, anyone may enter and no one list: the sockets' modes decide)."""
    path.mkdir(parents=True, exist_ok=True)
    privileges.own(path, 0 if gid is not None else None, gid, mode)
    return path
