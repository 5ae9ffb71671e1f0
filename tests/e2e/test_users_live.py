"""Users and aliases changed while the daemons run take effect at once, with no restart."""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from common.passwords import hash_password
from tests.conftest import ROOT, Stack, wait_for

NEW_PASSWORD = "dave's new pw 7"


def queue_id(reply: bytes) -> str:
    m = re.search(rb"queued as ([0-9A-F]{17})", reply)
    assert m, reply
    return m.group(1).decode()


def send(s: smtplib.SMTP, sender: str, rcpts: list[str], body: bytes) -> str:
    s.ehlo_or_helo_if_needed()
    code, msg = s.mail(sender)
    assert code == 250, msg
    for r in rcpts:
        code, msg = s.rcpt(r)
        assert code == 250, (r, code, msg)
    code, msg = s.data(body)
    assert code == 250, msg
    return queue_id(msg)


def rcpt_code(stack: Stack, address: str) -> tuple[int, bytes]:
    with stack.smtp() as s:
        s.ehlo()
        code, msg = s.mail("someone@remote.test")
        assert code == 250, msg
        return s.rcpt(address)


def users_file(stack: Stack) -> Path:
    return stack.root / "etc" / "users"


def add_user(stack: Stack, address: str, password: str) -> str:
    """Add a user as an admin would; returns how it was done."""
    if (ROOT / "mda" / "ctl.py").exists():
        r = subprocess.run(
            [sys.executable, "-m", "mda.ctl", "-c", str(stack.config), "user", "add", address,
             "--password-stdin"],
            input=password + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60,
            start_new_session=True,
        )
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        return "mda.ctl"
    with open(users_file(stack), "a") as f:
        f.write(f"{address}:{hash_password(password, cheap=True)}\n")
    return "append"


def remove_user(stack: Stack, address: str) -> None:
    """Drop the user's line with an atomic replace, as mda-ctl does."""
    path = users_file(stack)
    lines = path.read_text().splitlines()
    kept = [x for x in lines if x.split(":", 1)[0].strip().lower() != address]
    assert len(kept) == len(lines) - 1, lines
    tmp = path.with_name(".users.test.tmp")
    tmp.write_text("".join(x + "\n" for x in kept))
    os.replace(tmp, path)


def test_user_added_and_deleted_while_running(stack: Stack):
    dave = "dave@example.test"
    code, _ = rcpt_code(stack, dave)
    assert code == 550  # unknown before

    add_user(stack, dave, NEW_PASSWORD)

    # Port 25 at once: no restart, no waiting.
    with stack.smtp() as s:
        send(s, "x@remote.test", [dave], b"Subject: welcome\r\n\r\nhello dave\r\n")
    (msg,) = stack.wait_messages(dave, 1)
    assert b"Delivered-To: dave@example.test\n" in msg
    assert msg.endswith(b"hello dave\n")

    # Submission at once, with the new password.
    with stack.submission(login=None) as s:
        code, resp = s.login(dave, NEW_PASSWORD)
        assert code == 235, resp
        send(s, dave, ["bob@example.test"], b"Subject: from dave\r\n\r\nhi bob\r\n")
    (msg,) = stack.wait_messages("bob@example.test", 1)
    assert msg.startswith(b"Return-Path: <dave@example.test>\n")

    remove_user(stack, dave)

    # Refused right away on port 25, and the password no longer works.
    code, resp = rcpt_code(stack, dave)
    assert code == 550, resp
    assert b"5.1.1" in resp
    with stack.submission(login=None) as s, pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(dave, NEW_PASSWORD)
    # The others are untouched.
    assert rcpt_code(stack, "alice@example.test")[0] == 250


def test_permanent_mda_failure_ends_the_queue_stay(bare_stack: Stack):
    stack = bare_stack
    stack.start("mtad")
    alice = "alice@example.test"
    # The sender is local, so the bounce (a DSN) lands here too and the queue empties.
    with stack.smtp() as s:
        qid = send(s, "bob@example.test", [alice], b"Subject: doomed\r\n\r\nnever stored\r\n")
    assert stack.queue_files() == [f"{qid}.env"]
    # No MDA yet: the message waits in the queue with a temporary failure (parked
    # until the MDA answers a probe, so pending rather than deferred).
    wait_for(lambda: re.search(rf"queue_id={qid}.*state=pending", stack.log("mtad")),
             60, "a pending delivery attempt")
    assert stack.queue_files() == [f"{qid}.env"]

    remove_user(stack, alice)
    stack.start("mdad")

    # The probes back off to 30 s between tries, so the bound is generous.
    wait_for(lambda: not stack.queue_files(), 90, "the queue to empty")
    assert not list((stack.root / "spool" / "queue").iterdir())
    assert stack.messages(alice) == []

    def failed_line() -> str | None:
        for line in stack.log("mtad").splitlines():
            if qid in line and "state=failed" in line:
                return line
        return None

    line = wait_for(failed_line, 60, "a state=failed log line")
    assert "5.1.1" in line, line
    assert alice in line, line
    (dsn,) = stack.wait_messages("bob@example.test", 1)
    assert b"Status: 5.1.1" in dsn and qid.encode() in dsn


def test_alias_added_while_running(stack: Stack):
    sales = "sales@example.test"
    code, _ = rcpt_code(stack, sales)
    assert code == 550  # not an address yet

    stack.add_alias(f"{sales}: bob@example.test, carol@example.test")

    with stack.smtp() as s:
        send(s, "x@remote.test", [sales], b"Subject: order\r\n\r\none please\r\n")
    (bob,) = stack.wait_messages("bob@example.test", 1)
    (carol,) = stack.wait_messages("carol@example.test", 1)
    assert b"Subject: order\n" in bob and b"Subject: order\n" in carol
    assert b"Delivered-To: bob@example.test\n" in bob
    assert stack.messages("alice@example.test") == []
