"""Running out of file descriptors: answered, logged once, never a traceback storm.

When accept() fails for want of descriptors (EMFILE, ENFILE), asyncio stops
watching that listener for a second and reports the error to the loop's
exception handler, whose default logs a traceback: one a second per
listener for as long as it lasts. Here the handler logs one warning line a
minute (with how many it left out), and answers the clients waiting in the
listen queue with the listener's "too busy" line instead of leaving them
hanging: one descriptor is held in reserve, and freed just for this, so
each of them can be accepted, told, and closed. A TLS listener's clients
are only closed (a line in the clear would mean nothing to them).

Each child also raises its soft RLIMIT_NOFILE to the hard limit at start:
the caps of [limits] want more than the usual soft 1024, and the hard
limit is what the admin (systemd's LimitNOFILE=) allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
from typing import Any

from common import log
from common.logthrottle import Throttle

ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"
# Clients answered at each of asyncio's retries (one a second per listener).
ANSWER_AT_ONCE = 64

_listeners: dict[int, tuple[socket.socket, bytes | None]] = {}
_reserve: int | None = None
_throttle = Throttle(60.0)


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard one; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        with contextlib.suppress(ValueError, OSError):  # an unlimited hard limit may be refused
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def answer_when_out(sock: socket.socket, line: bytes | None) -> None:
    """What a client of this listener is told when no descriptor is left for
    its connection (None: nothing, it is closed)."""
    _listeners[sock.fileno()] = (sock, line)


def install(loop: asyncio.AbstractEventLoop) -> None:
    global _reserve
    if _reserve is None:
        _reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    loop.set_exception_handler(_handle)


def _handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    if context.get("message") != ACCEPT_OUT_OF_RESOURCES:
        loop.default_exception_handler(context)
        return
    listener = context.get("socket")
    answered = _answer_waiting(listener.fileno()) if listener is not None else 0
    left_out = _throttle.ready()
    if left_out is not None:
        log.get().warning("out of file descriptors: turning new connections away",
                          error=str(exc), limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                          answered=answered, left_out=left_out)


def _answer_waiting(fd: int) -> int:
    """Accept, answer and close what waits on listener `fd`, with the reserve freed."""
    global _reserve
    entry = _listeners.get(fd)
    if entry is None or _reserve is None:
        return 0
    sock, line = entry
    os.close(_reserve)
    _reserve = None
    answered = 0
    try:
        for _ in range(ANSWER_AT_ONCE):
            try:
                conn, _ = sock.accept()
            except OSError:  # none waiting, or still no descriptor
                break
            with conn:
                if line is not None:
                    with contextlib.suppress(OSError):
                        conn.setblocking(False)
                        conn.send(line)
            answered += 1
    finally:
        with contextlib.suppress(OSError):
            _reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return answered
