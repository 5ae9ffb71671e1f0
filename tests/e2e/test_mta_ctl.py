"""mta-ctl against a running mtad: status, queue list and flush."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


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
