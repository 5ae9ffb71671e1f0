"""The crash test: crashload's mail while crashkill kills, then crashcount.

    python -m tests.crash.run [--messages 2000] [--clients 20] [--kills 6] [--seed N]

(`make crashtest`) starts a stack of its own in /tmp, as the e2e tests do,
prints sent, acknowledged, delivered, duplicates and lost, and exits 1 if
anything acknowledged was lost or a daemon duplicated a message that was not
in flight at a kill. tests/e2e/test_crash.py runs a shorter form.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import PASSWORD, Stack, configured_stack, make_system_users, wait_for
from tests.crash.count import Report, count, scan, written_times
from tests.crash.kill import Kill, Killer
from tests.crash.load import Load, make_messages

# Slack around a kill for "in flight": clocks of the file names and of our records.
IN_FLIGHT_SLACK = 1.0


@dataclass
class Outcome:
    report: Report
    kills: list[Kill]
    # Daemon duplicates of messages that no kill overlapped: there should be none.
    unexplained: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        # Each kill with the daemon duplicates it may explain.
        kills = ", ".join(f"{k.daemon}/{k.role}" + (f" ({k.duplicates} dup)" if k.duplicates
                                                    else "") for k in self.kills)
        return [*self.report.lines(), f"kills           {len(self.kills)}: {kills}",
                f"unexplained     {len(self.unexplained)} daemon duplicates outside a kill",
                f"took            {self.seconds:.0f} s"]


def kills_in_flight(m, mailbox: str, copies, kills: list[Kill]) -> list[Kill]:
    """The kills that can explain a second copy: between the first copy and the last.

    A daemon duplicates a message only when the MDA wrote it and the 250
    did not reach the queue's envelope: something died after the first copy
    was written and before the next was.
    """
    times = written_times(copies, m.token, mailbox)
    start, end = times[0] - IN_FLIGHT_SLACK, times[-1] + IN_FLIGHT_SLACK
    return [k for k in kills if start <= k.at <= end]


def run(stack: Stack, messages: int, clients: int, kills: int, seed: int,
        say=print, timeout: float = 1800.0, daemons=("mtad", "mdad"),
        roles: tuple[str, ...] | None = None) -> Outcome:
    """Both daemons of stack must be up. Returns the counts once the queue is empty.

    daemons and roles narrow what may be killed (Killer)."""
    rng = random.Random(seed)
    started = time.monotonic()
    msgs = make_messages(messages, rng)
    load = Load(msgs, clients, stack.address, PASSWORD)
    killer = Killer(stack, rng, daemons, roles)
    # Kill while mail flows: each kill waits for a share of the 250s.
    marks = sorted(rng.uniform(0.05, 0.85) * messages for _ in range(kills))
    failure: list[BaseException] = []

    def kill_loop() -> None:
        try:
            for mark in marks:
                while load.acked < mark and any(t.is_alive() for t in load._threads):
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.3))
                k = killer.kill_one()
                say(f"killed {k.daemon} {k.role} (pid {k.pid}) at {load.acked} acknowledged")
        except BaseException as e:  # reported by run() below
            failure.append(e)

    load.start()
    kt = threading.Thread(target=kill_loop, daemon=True)
    kt.start()
    if not load.join(timeout):
        raise AssertionError(f"the clients did not finish in {timeout} s")
    kt.join(timeout)
    if failure:
        raise failure[0]
    say(f"clients done: {load.acked} acknowledged, {load.errors} failed tries; "
        "waiting for the queue to empty")
    wait_for(lambda: not stack.queue_files(), 300, "the queue to empty")
    copies = scan(stack.root / "mail")
    report = count(msgs, copies)
    by_token = {m.token: m for m in msgs}
    unexplained = []
    for t, box in report.daemon_duplicate_pairs:
        near = kills_in_flight(by_token[t], box, copies, killer.kills)
        if not near:
            unexplained.append((t, box))
        for k in near:
            k.duplicates += 1
    return Outcome(report, killer.kills, unexplained, time.monotonic() - started)


def main() -> int:
    ap = argparse.ArgumentParser(prog="crashtest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true", help="keep the stack's directory")
    args = ap.parse_args()
    make_system_users()
    root = Path(tempfile.mkdtemp(prefix="mp-crash-", dir="/tmp"))
    root.chmod(0o755)  # the daemons' users read the configuration inside
    logs = root / "logs"
    logs.mkdir()
    stack = configured_stack(root / "s", logs)
    print(f"crashtest: {args.messages} messages, {args.clients} clients, {args.kills} kills, "
          f"seed {args.seed}; logs in {logs}")
    try:
        stack.start("mdad")
        stack.start("mtad")
        out = run(stack, args.messages, args.clients, args.kills, args.seed)
    finally:
        stack.stop_all()
    for line in out.lines():
        print(line)
    bad = out.report.lost or out.unexplained or out.report.refused
    if not bad and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    elif bad:
        print(f"FAILED: lost {out.report.lost_pairs[:20]}, unexplained {out.unexplained[:20]}; "
              f"state kept in {root}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[2])
    sys.exit(main())
