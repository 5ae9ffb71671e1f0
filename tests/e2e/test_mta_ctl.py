"""mta-ctl against a running mtad: status, queue list and flush."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, wait_for


def ctl(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mta.ctl", "-c", str(stack.config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_queue_list_shows_waiting_mail_and_flush_sends_it(bare_stack):
    stack = bare_stack
    stack.write_config(retry_schedule=[3600])  # only a flush can deliver it soon
    stack.start("mtad")
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["bob@example.test"], b"Subject: q\r\n\r\nwaiting\r\n")
    r = ctl(stack, "queue", "list", "--json")
    assert r.returncode == 0, r.stderr
    (m,) = json.loads(r.stdout)
    assert m["sender"] == "s@remote.test"
    assert [x["address"] for x in m["recipients"]] == ["bob@example.test"]
    r = ctl(stack, "queue", "list")
    assert m["id"] in r.stdout and "<bob@example.test>" in r.stdout
    st = json.loads(ctl(stack, "status", "--json").stdout)
    assert st["queued"] == 1 and st["listeners"]["smtp"][0][1] == stack.port("smtp")
    stack.start("mdad")
    assert ctl(stack, "queue", "flush").returncode == 0
    stack.wait_messages("bob@example.test", 1, timeout=15)
    assert "Mail queue is empty" in ctl(stack, "queue", "list").stdout


def test_ctl_says_when_mtad_is_not_running(bare_stack):
    r = ctl(bare_stack, "queue", "list")
    assert r.returncode == 69 and "is mtad running" in r.stderr
    assert ctl(bare_stack, "status").returncode == 69


def test_hold_release_show_and_delete(bare_stack):
    stack = bare_stack
    stack.write_config(retry_schedule=[3600])
    stack.start("mtad")
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["bob@example.test"], b"Subject: keep\r\n\r\none\r\n")
        s.sendmail("s@remote.test", ["carol@example.test"], b"Subject: drop\r\n\r\ntwo\r\n")
    first, second = json.loads(ctl(stack, "queue", "list", "--json").stdout)
    shown = json.loads(ctl(stack, "queue", "show", first["id"], "--json").stdout)
    assert "Subject: keep" in shown["message"] and shown["held"] is False
    assert "Subject: keep" in ctl(stack, "queue", "show", first["id"]).stdout
    assert ctl(stack, "queue", "hold", first["id"]).returncode == 0
    assert ctl(stack, "queue", "delete", second["id"]).returncode == 0
    assert [m["id"] for m in json.loads(ctl(stack, "queue", "list", "--json").stdout)] == [
        first["id"]]
    r = ctl(stack, "queue", "show", second["id"])
    assert r.returncode == 1 and "no message" in r.stderr
    stack.start("mdad")
    ctl(stack, "queue", "flush")  # a held message is not tried, even on flush
    assert json.loads(ctl(stack, "queue", "show", first["id"], "--json").stdout)["held"]
    assert stack.messages("bob@example.test") == []
    assert ctl(stack, "queue", "release", first["id"]).returncode == 0
    stack.wait_messages("bob@example.test", 1)
    assert stack.messages("carol@example.test") == []


def test_status_lists_processes_with_their_users(stack):
    st = json.loads(ctl(stack, "status", "--json").stdout)
    assert set(st["children"]) == {"smtp", "queue", "relay", "lookup", "autoconfig"}
    if os.geteuid() == 0:
        users = {name: c["user"] for name, c in st["children"].items()}
        assert users == {"smtp": "mailpair", "queue": "mailpair-queue",
                         "relay": "mailpair-relay", "lookup": "mailpair-auth",
                         "autoconfig": "mailpair-web"}


def test_list_shows_the_last_error_and_bounce_returns_the_mail(bare_stack):
    stack = bare_stack
    # No DNS answers (tests.conftest.NO_DNS): the remote recipient waits.
    stack.write_config(retry_schedule=[3600])
    stack.start("mdad")
    stack.start("mtad")
    with stack.submission() as s:
        s.sendmail("alice@example.test", ["rob@remote.test", "bob@example.test"],
                   b"Subject: stuck\r\n\r\nwaiting\r\n")
    stack.wait_messages("bob@example.test", 1)

    def deferred():
        (m,) = json.loads(ctl(stack, "queue", "list", "--json").stdout)
        return m["attempts"] >= 1 and m
    m = wait_for(deferred, 60, "a first attempt")
    assert m["last_error"].startswith("451 4.4.3")
    out = ctl(stack, "queue", "list").stdout
    assert "-Queue ID-" in out and m["id"] in out and "<alice@example.test>" in out
    assert "(451 4.4.3" in out and "<rob@remote.test>" in out and "in 59m" in out
    assert "<bob@example.test>  delivered" in out and "in 1 Request." in out
    r = ctl(stack, "queue", "bounce", m["id"])
    assert r.returncode == 0, r.stderr
    (dsn,) = stack.wait_messages("alice@example.test", 1)
    assert b"Status: 5.0.0" in dsn and b"bounced by the administrator" in dsn
    assert b"Final-Recipient: rfc822; rob@remote.test" in dsn
    assert b"bob@example.test" not in dsn.split(b"message/delivery-status", 1)[1]
    assert "Mail queue is empty" in ctl(stack, "queue", "list").stdout
    r = ctl(stack, "queue", "bounce", m["id"])
    assert r.returncode == 1 and "no message" in r.stderr
