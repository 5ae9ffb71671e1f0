"""The retry rules of the queue: pure functions over an envelope."""

from __future__ import annotations

import pytest

from mta.queue.envelope import DELIVERED, FAILED, LMTP, PENDING, Envelope, Recipient
from mta.queue.scheduler import apply_replies, next_delay, reschedule, summary

SCHEDULE = [60.0, 300.0, 1800.0]


def envelope(*addresses: str, created: float = 1000.0) -> Envelope:
    return Envelope(
        id="0123456789ABCDEF0",
        sender="s@remote.test",
        recipients=[Recipient(a, a, LMTP) for a in addresses],
        created=created,
    )


def by_address(env: Envelope) -> dict[str, Recipient]:
    return {r.address: r for r in env.recipients}


# -- next_delay ------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "expected"), [
    (0, 60.0), (1, 60.0), (2, 300.0), (3, 1800.0), (4, 1800.0), (50, 1800.0),
])
def test_next_delay_walks_the_schedule_and_repeats_the_last_step(attempts, expected):
    assert next_delay(attempts, SCHEDULE) == expected


def test_next_delay_negative_attempts_count_as_first():
    assert next_delay(-3, SCHEDULE) == 60.0


def test_next_delay_single_step_schedule():
    for n in range(6):
        assert next_delay(n, [7.0]) == 7.0


# -- apply_replies ---------------------------------------------------------------


def test_apply_replies_sets_each_recipient_state_by_reply_class():
    env = envelope("ok@x.test", "bad@x.test", "later@x.test")
    changes = apply_replies(env, {
        "ok@x.test": "250 2.0.0 delivered",
        "bad@x.test": "550 5.1.1 user unknown",
        "later@x.test": "452 4.2.2 mailbox full",
    })
    r = by_address(env)
    assert r["ok@x.test"].state == DELIVERED
    assert r["bad@x.test"].state == FAILED
    assert r["later@x.test"].state == PENDING
    for a, reply in (("ok@x.test", "250 2.0.0 delivered"),
                     ("bad@x.test", "550 5.1.1 user unknown"),
                     ("later@x.test", "452 4.2.2 mailbox full")):
        assert r[a].attempts == 1
        assert r[a].last_reply == reply
    assert changes == [
        ("ok@x.test", DELIVERED, "250 2.0.0 delivered"),
        ("bad@x.test", FAILED, "550 5.1.1 user unknown"),
        ("later@x.test", PENDING, "452 4.2.2 mailbox full"),
    ]


def test_apply_replies_temporary_failures_accumulate_attempts():
    env = envelope("later@x.test")
    for n in range(1, 4):
        apply_replies(env, {"later@x.test": f"451 4.3.0 try {n}"})
        (r,) = env.recipients
        assert r.state == PENDING
        assert r.attempts == n
        assert r.last_reply == f"451 4.3.0 try {n}"


def test_apply_replies_leaves_final_recipients_untouched():
    env = envelope("done@x.test", "gone@x.test")
    r = by_address(env)
    r["done@x.test"].state, r["done@x.test"].attempts = DELIVERED, 2
    r["done@x.test"].last_reply = "250 first"
    r["gone@x.test"].state, r["gone@x.test"].attempts = FAILED, 1
    r["gone@x.test"].last_reply = "550 first"
    changes = apply_replies(env, {"done@x.test": "550 5.0.0 late no",
                                  "gone@x.test": "250 2.0.0 late yes"})
    assert changes == []
    assert (r["done@x.test"].state, r["done@x.test"].attempts,
            r["done@x.test"].last_reply) == (DELIVERED, 2, "250 first")
    assert (r["gone@x.test"].state, r["gone@x.test"].attempts,
            r["gone@x.test"].last_reply) == (FAILED, 1, "550 first")


def test_apply_replies_leaves_recipients_without_a_reply_untouched():
    env = envelope("a@x.test", "b@x.test")
    changes = apply_replies(env, {"a@x.test": "250 ok", "stranger@x.test": "250 ok"})
    r = by_address(env)
    assert changes == [("a@x.test", DELIVERED, "250 ok")]
    assert (r["b@x.test"].state, r["b@x.test"].attempts, r["b@x.test"].last_reply) == (
        PENDING, 0, "")
    assert [x.address for x in env.recipients] == ["a@x.test", "b@x.test"]
    assert env.pending() == [r["b@x.test"]]
    assert not env.done


# -- reschedule --------------------------------------------------------------------


def test_reschedule_sets_next_try_from_the_schedule():
    env = envelope("later@x.test", created=1000.0)
    expected = [60.0, 300.0, 1800.0, 1800.0]
    now = 1000.0
    for n, delay in enumerate(expected, 1):
        now += 10
        assert reschedule(env, now, SCHEDULE, lifetime=86400.0) is True
        assert env.attempts == n
        assert env.next_try == now + delay
        assert env.recipients[0].state == PENDING


def test_reschedule_after_lifetime_fails_pending_with_447():
    env = envelope("later@x.test", "done@x.test", "gone@x.test", created=1000.0)
    r = by_address(env)
    r["later@x.test"].last_reply = "452 4.2.2 mailbox full"
    r["done@x.test"].state, r["done@x.test"].last_reply = DELIVERED, "250 ok"
    r["gone@x.test"].state, r["gone@x.test"].last_reply = FAILED, "550 no"
    before_next_try = env.next_try
    assert reschedule(env, 1000.0 + 3600.0, SCHEDULE, lifetime=3600.0) is False
    assert r["later@x.test"].state == FAILED
    assert "4.4.7" in r["later@x.test"].last_reply
    assert "452 4.2.2 mailbox full" in r["later@x.test"].last_reply
    # Final recipients keep what they had.
    assert (r["done@x.test"].state, r["done@x.test"].last_reply) == (DELIVERED, "250 ok")
    assert (r["gone@x.test"].state, r["gone@x.test"].last_reply) == (FAILED, "550 no")
    assert env.done
    assert env.next_try == before_next_try


def test_reschedule_just_before_lifetime_still_retries():
    env = envelope("later@x.test", created=1000.0)
    assert reschedule(env, 1000.0 + 3599.0, SCHEDULE, lifetime=3600.0) is True
    assert env.recipients[0].state == PENDING
    assert "4.4.7" not in env.recipients[0].last_reply


# -- summary -------------------------------------------------------------------------


def test_summary_counts_states():
    env = envelope("a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test")
    apply_replies(env, {"a@x.test": "250 ok", "b@x.test": "250 ok",
                        "c@x.test": "550 no", "d@x.test": "451 later"})
    assert summary(env) == {PENDING: 2, DELIVERED: 2, FAILED: 1}


def test_summary_of_a_fresh_envelope():
    assert summary(envelope("a@x.test", "b@x.test")) == {PENDING: 2, DELIVERED: 0, FAILED: 0}


def test_delay_warning_is_due_once_after_the_delay():
    from mta.queue.scheduler import delay_warning_due
    env = envelope("later@x.test", created=1000.0)
    assert not delay_warning_due(env, 1000.0 + 3599, 3600)
    assert delay_warning_due(env, 1000.0 + 3600, 3600)
    assert not delay_warning_due(env, 1000.0 + 9999, 0)  # 0: off
    env.delay_warned = True
    assert not delay_warning_due(env, 1000.0 + 9999, 3600)
    env.delay_warned = False
    env.recipients[0].state = DELIVERED
    assert not delay_warning_due(env, 1000.0 + 9999, 3600)  # nothing is late any more


def test_replies_record_the_host_that_gave_them():
    env = envelope("a@x.test", "b@x.test")
    apply_replies(env, {"a@x.test": "550 no", "b@x.test": "451 later"}, {"a@x.test": "mx.x.test"})
    r = by_address(env)
    assert r["a@x.test"].remote_mta == "mx.x.test" and r["b@x.test"].remote_mta == ""
