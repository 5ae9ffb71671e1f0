"""How a child tells its parent that it has started: one byte on a pipe.

The parent makes a pipe for each child it starts and hands it the write end
(its number in MAILPAIR_READY_FD). The child writes one byte when it logs
`ready`, which every role does once it serves (the line the tests wait for
too), and closes the pipe. End of file without that byte means the child
exited before it was ready: it did not start, which the supervisor counts
apart from a child that served and then died.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from common import log

ENV = "MAILPAIR_READY_FD"


class ReadyPipe:
    """The parent's end: `fd` and `env` go to the child; `started()` then answers."""

    def __init__(self) -> None:
        self._read, self.fd = os.pipe()  # both close-on-exec, but for pass_fds
        self.env = {ENV: str(self.fd)}
        self._future: asyncio.Future[bool] | None = None

    def started(self) -> asyncio.Future[bool]:
        """After the spawn: True once the child said ready, False if it never will."""
        if self._future is not None:
            return self._future
        self.close_child_end()
        loop = asyncio.get_running_loop()
        self._future = loop.create_future()
        os.set_blocking(self._read, False)
        loop.add_reader(self._read, self._on_readable)
        return self._future

    def _on_readable(self) -> None:
        try:
            data = os.read(self._read, 1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._finish(bool(data))

    def _finish(self, ready: bool) -> None:
        asyncio.get_running_loop().remove_reader(self._read)
        os.close(self._read)
        if self._future is not None and not self._future.done():
            self._future.set_result(ready)

    def close_child_end(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        """The spawn failed: nothing will ever write."""
        self.close_child_end()
        if self._future is None:
            os.close(self._read)


def notify_parent_when_ready() -> None:
    """In the child: write the byte when this process logs `ready`."""
    value = os.environ.pop(ENV, None)  # not for anything this process runs
    if value is None:
        return  # started by hand, not by a supervisor
    fd = int(value)
    try:
        os.set_inheritable(fd, False)
    except OSError:
        return

    def notify() -> None:
        with contextlib.suppress(OSError):
            os.write(fd, b"r")
        with contextlib.suppress(OSError):
            os.close(fd)
    log.on_event("ready", notify)
