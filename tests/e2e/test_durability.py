"""No message is lost: kill -9 of either daemon, restarts, a refused mailbox."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT, wait_for


def seqs(messages: list[bytes]) -> list[int]:
    out = []
    for m in messages:
        found = re.search(rb"^X-Seq: (\d+)$", m, re.M)
        assert found, m[:300]
        out.append(int(found.group(1)))
    return sorted(out)


def send_numbered(stack, numbers, rcpt="alice@example.test") -> None:
    with stack.smtp() as s:
        for n in numbers:
            refused = s.sendmail("s@remote.test", [rcpt],
                                 f"X-Seq: {n}\r\nSubject: n{n}\r\n\r\nbody {n}\r\n".encode())
            assert refused == {}


def queue_empty(stack):
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")


def test_kill9_mdad_then_restart_delivers_each_waiting_message_once(stack):
    send_numbered(stack, range(0, 5))
    stack.wait_messages("alice@example.test", 5)
    # Killed between writing a file and answering 250, the MDA would get that
    # message again on retry (at least once, as with any LMTP pair): kill it idle.
    queue_empty(stack)
    stack.kill9("mdad")
    send_numbered(stack, range(5, 25))
    # Accepted and waiting: they are on disk in the queue, not in the Maildir.
    assert len(stack.queue_files()) == 20
    assert len(stack.messages("alice@example.test")) == 5
    stack.start("mdad")
    stack.wait_messages("alice@example.test", 25, timeout=30)
    queue_empty(stack)
    assert seqs(stack.messages("alice@example.test")) == list(range(25))


def test_kill9_mtad_right_after_250_then_restart_delivers(bare_stack):
    stack = bare_stack
    stack.start("mtad")  # no MDA yet: the message can only wait in the spool
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["bob@example.test"], b"X-Seq: 1\r\n\r\nsurvive\r\n")
    stack.kill9("mtad")
    assert len(stack.queue_files()) == 1
    stack.start("mdad")
    stack.start("mtad")
    msgs = stack.wait_messages("bob@example.test", 1)
    queue_empty(stack)
    assert seqs(stack.messages("bob@example.test")) == [1]
    assert b"survive" in msgs[0]


def test_kill9_mtad_under_load_loses_nothing_acknowledged(stack):
    """Every message that got its 250 arrives, however hard mtad dies."""
    acked: list[int] = []
    stop = threading.Event()

    def sender():
        n = 0
        while not stop.is_set() and n < 400:
            try:
                with stack.smtp() as s:
                    s.sendmail("s@remote.test", ["carol@example.test"],
                               f"X-Seq: {n}\r\n\r\nload\r\n".encode())
                acked.append(n)
            except (OSError, Exception):
                if stop.is_set():
                    break
            n += 1

    t = threading.Thread(target=sender)
    t.start()
    wait_for(lambda: len(acked) >= 20, 60, "some messages to be accepted")
    stack.kill9("mtad")
    stop.set()
    t.join(30)
    assert 20 <= len(acked) < 400
    stack.start("mtad")
    wait_for(lambda: set(seqs(stack.messages("carol@example.test"))) >= set(acked), 60,
             "every acknowledged message to arrive")
    queue_empty(stack)


def test_restart_of_mtad_picks_up_the_spool(bare_stack):
    stack = bare_stack
    stack.start("mtad")
    send_numbered(stack, range(3))
    assert stack.stop("mtad") == 0
    assert len(stack.queue_files()) == 3
    stack.start("mdad")
    stack.start("mtad")
    stack.wait_messages("alice@example.test", 3)
    queue_empty(stack)
    assert seqs(stack.messages("alice@example.test")) == [0, 1, 2]


def test_one_failing_mailbox_of_three_is_retried_alone(stack):
    # carol's mailbox cannot be created: a file stands where her directory goes.
    blocked = stack.maildir("carol@example.test").parent
    blocked.parent.mkdir(parents=True, exist_ok=True)
    stack.give_to_mail_user(blocked.parent)
    blocked.write_text("in the way")
    with stack.smtp() as s:
        s.sendmail("s@remote.test",
                   ["alice@example.test", "carol@example.test", "bob@example.test"],
                   b"X-Seq: 7\r\n\r\nthree\r\n")
    stack.wait_messages("alice@example.test", 1)
    stack.wait_messages("bob@example.test", 1)
    (env_name,) = wait_for(lambda: stack.queue_files(), 60, "the message to stay queued")
    env = json.loads((stack.root / "spool" / "queue" / env_name).read_bytes())

    def carol_deferred():
        env = json.loads((stack.root / "spool" / "queue" / env_name).read_bytes())
        states = {r["address"]: r["state"] for r in env["recipients"]}
        return states["carol@example.test"] == "pending" and env["attempts"] >= 1 and env
    env = wait_for(carol_deferred, 60, "carol to be deferred")
    states = {r["address"]: (r["state"], r["last_reply"][:3]) for r in env["recipients"]}
    assert states == {"alice@example.test": ("delivered", "250"),
                      "bob@example.test": ("delivered", "250"),
                      "carol@example.test": ("pending", "451")}
    blocked.unlink()  # the administrator fixes it; the retry delivers
    stack.wait_messages("carol@example.test", 1)
    queue_empty(stack)
    for u in ("alice@example.test", "bob@example.test", "carol@example.test"):
        assert seqs(stack.messages(u)) == [7]


@pytest.mark.parametrize("daemon", ["mtad", "mdad"])
@pytest.mark.parametrize("text, key", [
    ("[mta]\nsmpt = [\"127.0.0.1:25\"]\n", "mta.smpt"),
    ("[mta]\nmax_message_size = \"lots\"\n", "mta.max_message_size"),
    ("[paths]\nspool = 42\n", "paths.spool"),
    ("hostname = \"mail.example.test\"\nnonsense = 1\n", "nonsense"),
])
def test_bad_config_stops_startup_naming_the_key(tmp_path, daemon, text, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    module = {"mtad": "mta.main", "mdad": "mda.main"}[daemon]
    r = subprocess.run([sys.executable, "-m", module, "-c", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78
    assert str(cfg) in r.stderr and key in r.stderr, r.stderr


# A full spool: tests/e2e/test_spool_full.py.
