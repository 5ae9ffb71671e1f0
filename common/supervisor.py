"""The parent process of a daemon: binds sockets, starts and watches children.

A daemon is described by a table of roles. Each role is started as a fresh
interpreter (`python -m <module>`) that receives its listening sockets by
descriptor; a child that dies is started again after a back-off that grows
while it keeps dying. The parent parses no network input.
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
from dataclasses import dataclass, field
from pathlib import Path

from common import log
from common.config import Config

# A child that stayed up this long is healthy again: its back-off starts over.
HEALTHY_AFTER = 30.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STOP_GRACE = 15.0


@dataclass
class Role:
    name: str
    module: str
    # name -> listening sockets handed to the child as --fd name=N
    sockets: dict[str, list[socket.socket]] = field(default_factory=dict)


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.listen(512)
    return sock


class Supervisor:
    def __init__(self, daemon: str, cfg: Config, roles: list[Role]) -> None:
        self.daemon = daemon
        self.cfg = cfg
        self.roles = roles
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.log = log.get()

    def write_state(self, listeners: dict[str, list[tuple[str, int]]]) -> Path:
        """Record pid and bound ports, so tools and tests can find an ephemeral port."""
        path = self.cfg.paths.run / f"{self.daemon}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "listeners": listeners}))
        tmp.replace(path)
        return path

    async def _spawn(self, role: Role) -> asyncio.subprocess.Process:
        args = [sys.executable, "-m", role.module, "--config", self.cfg.source]
        fds = []
        for name, socks in role.sockets.items():
            for s in socks:
                fds.append(s.fileno())
                args += ["--fd", f"{name}={s.fileno()}"]
        env = dict(os.environ, MAILPAIR_PARENT=str(os.getpid()))
        proc = await asyncio.create_subprocess_exec(*args, pass_fds=fds, env=env)
        self.log.info("child started", child=role.name, child_pid=proc.pid)
        return proc

    async def _watch(self, role: Role) -> None:
        backoff = BACKOFF_FIRST
        while not self.stopping.is_set():
            started = time.monotonic()
            proc = await self._spawn(role)
            self.procs[role.name] = proc
            code = await proc.wait()
            if self.stopping.is_set():
                return
            lived = time.monotonic() - started
            if lived > HEALTHY_AFTER:
                backoff = BACKOFF_FIRST
            self.log.error(
                "child died, restarting", child=role.name, exit_code=code,
                lived_s=round(lived, 2), restart_in_s=backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _stop_children(self) -> None:
        alive = [p for p in self.procs.values() if p.returncode is None]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(p.wait() for p in alive)), STOP_GRACE
            )
        except TimeoutError:
            for p in alive:
                if p.returncode is None:
                    self.log.warning("child did not stop in time, killing", child_pid=p.pid)
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            await asyncio.gather(*(p.wait() for p in alive))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        watchers = [asyncio.create_task(self._watch(r)) for r in self.roles]
        self.log.info("started", roles=[r.name for r in self.roles])
        await self.stopping.wait()
        self.log.info("stopping")
        await self._stop_children()
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        self.log.info("stopped")
        return 0
