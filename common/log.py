"""structlog set-up shared by every process of both daemons.

JSON lines (for journald) in production, readable console lines in
development. Each process binds its daemon and role, so a line always says
where it came from; lines about a message carry its queue_id.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

# Called once, the first time this process logs an info event of that name,
# whatever log.level lets through: a child's "ready" line is also its notice
# to the parent that it has started (common/readiness.py).
_hooks: dict[str, Callable[[], None]] = {}


def on_event(event: str, callback: Callable[[], None]) -> None:
    _hooks[event] = callback


def _with_hooks(base: type) -> type:
    class HookedLogger(base):
        def info(self, event: str | None = None, *args, **kw):
            if _hooks and event in _hooks:
                _hooks.pop(event)()
            return base.info(self, event, *args, **kw)
    return HookedLogger


def setup(fmt: str = "console", level: str = "info", **bind: str) -> None:
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=_with_hooks(structlog.make_filtering_bound_logger(_LEVELS.get(level, 20))),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(pid=os.getpid(), **bind)
    # aiosmtpd logs every command through the standard library at INFO and
    # warns of its own deprecations on every login; our lines say what matters.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("mail.log").setLevel(logging.ERROR)


def get(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name) if name else structlog.get_logger()
