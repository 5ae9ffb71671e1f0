"""What every child process does first: arguments, config, logging, signals."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from common import config, descriptors, log, readiness
from common.config import Config

_PR_SET_PDEATHSIG = 1


@dataclass
class ChildContext:
    cfg: Config
    daemon: str
    role: str
    sockets: dict[str, list[socket.socket]] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Key and certificate as handed over by the parent (the key file is root's).
    tls_pem: bytes | None = None
    # Set with stopping when a reload replaces this process (SIGUSR1): its
    # sessions may run to their natural end instead of being told 421.
    retiring: bool = False


def _die_with_parent() -> None:
    """Ask the kernel to end us when the parent goes, even by kill -9."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    parent = os.environ.get("MAILPAIR_PARENT")
    if parent and os.getppid() != int(parent):
        sys.exit(0)  # the parent died before the request took effect


def run(daemon: str, role: str, main: Callable[[ChildContext], Awaitable[None]]) -> None:
    parser = argparse.ArgumentParser(prog=f"{daemon}: {role}")
    parser.add_argument("--config", required=True)
    parser.add_argument("--fd", action="append", default=[], help="name=N")
    args = parser.parse_args()
    _die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group; only the parent
    # acts on it, and stops its children in order with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        print(f"{daemon} {role}: {e}", file=sys.stderr)
        sys.exit(78)  # EX_CONFIG: the supervisor counts a start that failed
    log.setup(cfg.log.format, cfg.log.level, daemon=daemon, role=role)
    readiness.notify_parent_when_ready()
    descriptors.raise_nofile_limit()
    sockets: dict[str, list[socket.socket]] = {}
    tls_pem = None
    for item in args.fd:
        name, _, num = item.partition("=")
        if name == "tls":
            with os.fdopen(int(num), "rb") as f:
                tls_pem = f.read()
            continue
        sockets.setdefault(name, []).append(socket.socket(fileno=int(num)))

    async def runner() -> None:
        ctx = ChildContext(cfg=cfg, daemon=daemon, role=role, sockets=sockets, tls_pem=tls_pem)
        loop = asyncio.get_running_loop()
        descriptors.install(loop)
        loop.add_signal_handler(signal.SIGTERM, ctx.stopping.set)

        def retire() -> None:
            ctx.retiring = True
            ctx.stopping.set()
        loop.add_signal_handler(signal.SIGUSR1, retire)
        await main(ctx)

    try:
        asyncio.run(runner())
    except Exception:
        log.get().exception("child failed")
        sys.exit(1)
