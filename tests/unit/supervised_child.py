"""A role for the supervisor's tests: what it does is read, at each start, from
the file named in MAILPAIR_PROBE_MODE, so one test can change it between starts.
A child that said ready leaves the file ready-<pid> beside it.

    serve            say ready, then serve until stopped
    ready-then-die   say ready, then fail
    refuse           exit 78 before ready, as a child refusing its configuration does
    quiet-then-die   never say ready; fail after half a second
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from common import child, log
from common.child import ChildContext


async def main(ctx: ChildContext) -> None:
    mode = Path(os.environ["MAILPAIR_PROBE_MODE"]).read_text().strip()
    if mode == "refuse":
        print("probe: refusing to start", file=sys.stderr)
        sys.exit(78)
    if mode == "quiet-then-die":
        await asyncio.sleep(0.5)
        raise RuntimeError("died without a word")
    log.get().info("ready")
    Path(os.environ["MAILPAIR_PROBE_MODE"]).with_name(f"ready-{os.getpid()}").touch()
    if mode == "ready-then-die":
        raise RuntimeError("died after it was ready")
    await ctx.stopping.wait()


if __name__ == "__main__":
    child.run("probe", "probe", main)
