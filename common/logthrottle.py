"""One log line per interval for an event a flood repeats (refused connections,
no descriptors left): the line says how many like it were left out since."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    def __init__(self, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.suppressed = 0
        self._last: float | None = None

    def ready(self) -> int | None:
        """None: leave this one out. Else log it now, with the returned count of
        those left out before it."""
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return None
        self._last = now
        left_out, self.suppressed = self.suppressed, 0
        return left_out
