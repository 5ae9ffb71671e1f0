"""When to try a message next, and what a round of replies does to its envelope.

Pure functions over the envelope: no I/O, so the retry rules are tested
directly.
"""

from __future__ import annotations

from mta.queue.envelope import DELIVERED, FAILED, PENDING, Envelope


def next_delay(attempts: int, schedule: list[float]) -> float:
    """The pause after the attempts-th failed try; the last step repeats."""
    return schedule[min(max(attempts, 1), len(schedule)) - 1]


def apply_replies(env: Envelope, replies: dict[str, str],
                  remote: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """Record each recipient's reply; returns (address, new state, reply) for logging.

    remote names the host that gave a reply, when a server gave it.
    """
    changes = []
    for r in env.recipients:
        if r.state != PENDING or r.address not in replies:
            continue
        reply = replies[r.address]
        r.attempts += 1
        r.last_reply = reply
        r.remote_mta = (remote or {}).get(r.address, "")
        if reply[:1] == "2":
            r.state = DELIVERED
        elif reply[:1] == "5":
            r.state = FAILED
        changes.append((r.address, r.state, reply))
    return changes


def reschedule(env: Envelope, now: float, schedule: list[float], lifetime: float) -> bool:
    """Set the next try after a round that left recipients pending.

    Returns False when the message has outlived the queue lifetime: its
    pending recipients are then failed.
    """
    env.attempts += 1
    if now - env.created >= lifetime:
        for r in env.pending():
            r.state = FAILED
            r.last_reply = f"4.4.7 delivery time expired; last reply: {r.last_reply}"
        return False
    env.next_try = now + next_delay(env.attempts, schedule)
    return True


def delay_warning_due(env: Envelope, now: float, after: float) -> bool:
    """Whether to tell the sender now that the message is late: once, if ever."""
    return bool(after) and not env.delay_warned and bool(env.pending()) and (
        now - env.created >= after)


def summary(env: Envelope) -> dict:
    counts = {PENDING: 0, DELIVERED: 0, FAILED: 0}
    for r in env.recipients:
        counts[r.state] += 1
    return counts
