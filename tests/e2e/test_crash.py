"""The crash test, short form: kill -9 while mail flows, then count (tests/crash/).

300 messages from 10 clients over 25 and 587, 2 kills of a random mtad or
mdad process (parent or child). Every message that got its 250 must be in
each of its mailboxes; a daemon may duplicate only a message in flight at a
kill. The full form (2000 messages, 20 clients, 6 kills) is `make crashtest`.
"""

from __future__ import annotations

import os

import pytest

from tests.crash.run import run

MESSAGES = int(os.environ.get("MAILPAIR_CRASH_MESSAGES", "300"))
KILLS = int(os.environ.get("MAILPAIR_CRASH_KILLS", "2"))


@pytest.mark.timeout(900)
def test_kill9_during_load_loses_nothing_acknowledged(stack):
    out = run(stack, MESSAGES, clients=10, kills=KILLS, seed=int.from_bytes(os.urandom(4)),
              timeout=600)
    print("\n".join(out.lines()))
    rep = out.report
    assert len(out.kills) == KILLS
    assert rep.refused == 0
    assert rep.acknowledged == MESSAGES
    assert rep.lost == 0, rep.lost_pairs
    assert rep.delivered == rep.expected
    assert out.unexplained == [], out.unexplained


@pytest.mark.timeout(900)
def test_kill9_of_the_queue_alone_duplicates_nothing(stack):
    """The relay outlives a killed queue and remembers what it delivered: the
    restarted queue's second request for those recipients is answered from
    that memory, not delivered again (mta/relay/delivered.py)."""
    out = run(stack, MESSAGES, clients=10, kills=3, seed=int.from_bytes(os.urandom(4)),
              timeout=600, daemons=("mtad",), roles=("queue",))
    print("\n".join(out.lines()))
    rep = out.report
    assert [k.role for k in out.kills] == ["queue"] * 3
    assert rep.lost == 0, rep.lost_pairs
    assert rep.daemon_duplicates == 0, rep.daemon_duplicate_pairs
    assert "delivered before, not sent again" in stack.log("mtad")
