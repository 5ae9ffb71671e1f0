"""mdad down for a long while with mail arriving: it all waits, then arrives in order.

The queue marks the LMTP route down at the first refusal, parks local mail
instead of retrying each message on its own timer, probes the MDA with
backoff, and releases the backlog in order of arrival once it answers
(strictly so with delivery_concurrency = 1, as here).

MAILPAIR_OUTAGE_S sets how long mdad stays down (default 20 s for CI; the
issue's case is 600: `MAILPAIR_OUTAGE_S=600 pytest tests/e2e/test_mdad_outage.py`).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from mda.store.sync import delivery_order
from tests.conftest import wait_for

OUTAGE = float(os.environ.get("MAILPAIR_OUTAGE_S", "20"))
# One message every few seconds during the outage, at least 30 of them.
COUNT = max(30, int(OUTAGE / 5))


def in_delivery_order(maildir: Path) -> list[int]:
    """X-Seq of each message in maildir/new, in the order the MDA wrote them."""
    files = sorted((maildir / "new").iterdir(), key=lambda p: delivery_order(p.name))
    seqs = []
    for f in files:
        m = re.search(rb"^X-Seq: (\d+)\r?$", f.read_bytes(), re.M)
        assert m, f
        seqs.append(int(m.group(1)))
    return seqs


def envelope_attempts(stack) -> list[int]:
    out = []
    for p in (stack.root / "spool" / "queue").glob("*.env"):
        env = json.loads(p.read_bytes())
        out += [r["attempts"] for r in env["recipients"]]
    return out


@pytest.mark.timeout(OUTAGE + 300)
def test_mdad_down_mail_waits_and_arrives_in_order_of_arrival(bare_stack):
    stack = bare_stack
    stack.write_config(delivery_concurrency=1)
    stack.start("mdad")
    stack.start("mtad")
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["alice@example.test"], b"X-Seq: 0\r\n\r\nbefore\r\n")
    stack.wait_messages("alice@example.test", 1)
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")

    stack.kill9("mdad")  # its socket file stays: connecting is refused
    down_at = time.monotonic()
    sent: list[int] = []
    stop = threading.Event()
    with stack.smtp() as s:
        for n in range(1, COUNT + 1):
            # Some to the team alias (alice and bob), the rest to alice alone.
            rcpt = "team@example.test" if n % 3 == 0 else "alice@example.test"
            refused = s.sendmail("s@remote.test", [rcpt],
                                 f"X-Seq: {n}\r\nSubject: n{n}\r\n\r\nbody {n}\r\n".encode())
            assert refused == {}
            sent.append(n)
            # Paced over the outage: mail keeps arriving while the MDA is away.
            stop.wait(max(0.0, down_at + OUTAGE * n / (COUNT + 1) - time.monotonic()))
            if n % 10 == 0:
                s.noop()
    stop.wait(max(0.0, down_at + OUTAGE - time.monotonic()))

    # All of it waits in the queue; nothing reached the Maildir.
    assert len(stack.queue_files()) == COUNT
    assert in_delivery_order(stack.maildir("alice@example.test")) == [0]
    log = stack.log("mtad")
    assert log.count("lmtp route down") == 1, log[-5000:]
    # Waiting, not retried on the schedule (0.5, 1, 2 s here): at most the try
    # that found the MDA gone, and probes with backoff, not one per message.
    assert max(envelope_attempts(stack)) <= 1, envelope_attempts(stack)
    probes = log.count("lmtp route still down")
    assert 1 <= probes <= 8 + OUTAGE / 30, probes

    stack.start("mdad")
    alice = list(sent)
    bob = [n for n in sent if n % 3 == 0]
    wait_for(lambda: len(stack.messages("alice@example.test")) == 1 + len(alice), 120,
             "the backlog for alice")
    wait_for(lambda: len(stack.messages("bob@example.test")) == len(bob), 60,
             "the backlog for bob")
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")
    assert in_delivery_order(stack.maildir("alice@example.test")) == [0, *alice]
    assert in_delivery_order(stack.maildir("bob@example.test")) == bob
    assert "lmtp route up" in stack.log("mtad")


def test_mail_waiting_for_a_dead_mdad_still_expires(bare_stack):
    stack = bare_stack
    stack.write_config(queue_lifetime=4)
    stack.start("mtad")  # no MDA at all
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["alice@example.test"], b"X-Seq: 1\r\n\r\nlate\r\n")
    (qid,) = [n.removesuffix(".env") for n in stack.queue_files()]
    wait_for(lambda: "waiting for the mda" in stack.log("mtad"), 60, "it to wait")
    # Its lifetime runs out while the route is down: it expires and its sender
    # gets a bounce (queued for remote.test), as for any other late message.
    wait_for(lambda: re.search(rf"\] expired .*queue_id={qid}", stack.log("mtad")), 60,
             "the message to expire")
    wait_for(lambda: f"{qid}.env" not in stack.queue_files(), 60, "it to leave the queue")
    assert "lmtp route up" not in stack.log("mtad")
