"""What each of mtad's children cannot do, tried with its own credentials.

Each check runs a small program as the child's user and group with no other
group, as the supervisor starts the child, against the running daemons:
smtp (mailpair) meets the Internet and may only hand messages to the queue;
the queue (mailpair-queue) alone has the spool; the relay (mailpair-relay)
reads what the queue hands it and alone reaches the LMTP socket.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from mta.queue import spool
from mta.queue.envelope import LMTP, Envelope, Recipient
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

SMTP, QUEUE, RELAY = "mailpair", "mailpair-queue", "mailpair-relay"


def run_as(user: str, code: str) -> subprocess.CompletedProcess:
    pw = pwd.getpwnam(user)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          user=pw.pw_uid, group=grp.getgrnam(user).gr_gid, extra_groups=[],
                          capture_output=True, text=True, timeout=60)


def can(user: str, code: str) -> bool:
    return run_as(user, code).returncode == 0


def can_connect(user: str, path) -> bool:
    return can(user, f"import socket; socket.socket(socket.AF_UNIX).connect({str(path)!r})")


def queued_envelope(stack):
    """A message that waits in the queue: for another domain, with no DNS to find it."""
    with stack.submission("alice@example.test") as s:
        s.sendmail("alice@example.test", ["someone@remote.test"], b"Subject: w\r\n\r\nx\r\n")
    (name,) = wait_for(stack.queue_files, 60, "the message in the queue")
    return stack.root / "spool" / "queue" / name


def test_smtp_cannot_list_read_or_change_the_spool(stack):
    env = queued_envelope(stack)
    spool = stack.root / "spool"
    for d in (spool, spool / "queue", spool / "incoming"):
        assert not can(SMTP, f"import os; os.listdir({str(d)!r})"), d
        assert not can(SMTP, f"open({str(d / 'x.msg')!r}, 'w')"), d
    for f in (env, env.with_suffix(".msg")):
        assert not can(SMTP, f"open({str(f)!r}, 'rb').read()"), f
        assert not can(SMTP, f"open({str(f)!r}, 'ab')"), f
    # The queue's own user can, so the checks above are the credentials' doing.
    assert can(QUEUE, f"open({str(env)!r}, 'rb').read()")


def test_the_relay_cannot_read_or_write_the_spool(stack):
    env = queued_envelope(stack)
    spool = stack.root / "spool"
    for d in (spool / "queue", spool / "incoming"):
        assert not can(RELAY, f"import os; os.listdir({str(d)!r})"), d
        assert not can(RELAY, f"open({str(d / 'x.msg')!r}, 'w')"), d
    assert not can(RELAY, f"open({str(env.with_suffix('.msg'))!r}, 'rb').read()")
    assert not can(RELAY, f"open({str(env)!r}, 'ab')")


def test_smtp_cannot_reach_the_relay_the_control_socket_or_lmtp(stack):
    run = stack.root / "run" / "mta"
    for path in (run / "relay.sock", run / "control.sock", stack.lmtp_socket,
                 run / "lookup-queue.sock"):
        assert not can_connect(SMTP, path), path
    assert not can_connect(RELAY, run / "control.sock")
    assert not can_connect(RELAY, run / "queue.sock")
    # Who should reach each one does.
    assert can_connect(SMTP, run / "queue.sock") and can_connect(SMTP, run / "lookup.sock")
    assert can_connect(QUEUE, run / "relay.sock")
    assert can_connect(QUEUE, run / "lookup-queue.sock")
    assert can_connect(RELAY, stack.lmtp_socket)
    assert not can_connect(QUEUE, stack.lmtp_socket)


def test_smtp_on_the_queue_socket_can_only_hand_messages_in(stack):
    queued_envelope(stack)
    sock = stack.root / "run" / "mta" / "queue.sock"
    ask = f"""
        import asyncio, sys
        from common import ipc
        async def main():
            c = ipc.Client({str(sock)!r}, timeout=30)
            try:
                print(await c.call(sys.argv[1]))
            except ipc.IPCError as e:
                print("refused:", e)
        asyncio.run(main())
    """
    for op in ("list", "show", "flush", "delete", "bounce", "hold", "deliver"):
        r = run_as(SMTP, ask.replace("sys.argv[1]", repr(op)))
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("refused:") and f"bad request for op {op!r}" in r.stdout, (
            op, r.stdout)
    # The same list as root, over the control socket, sees the message.
    r = subprocess.run([sys.executable, "-m", "mta.ctl", "-c", str(stack.config), "queue",
                        "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "someone@remote.test" in r.stdout, r.stdout + r.stderr


def unix_paths(pid: int) -> set[str]:
    """The paths of the Unix sockets a process holds (listening or accepted)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    paths = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[6] in inodes:
                paths.add(parts[7])
    return paths


def file_paths(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("/"):
            out.add(target)
    return out


def test_each_child_holds_only_its_own_sockets_and_files(stack):
    queued_envelope(stack)
    with stack.smtp() as s:  # and one delivered, so each child has done its work once
        s.ehlo()
        s.mail("s@remote.test")
        s.rcpt("bob@example.test")
        code, reply = s.data(b"Subject: d\r\n\r\nx\r\n")
        assert code == 250, reply
        delivered = reply.decode().rsplit(" ", 1)[1]  # "Ok: queued as <id>"
    stack.wait_messages("bob@example.test", 1)
    run = stack.root / "run" / "mta"
    want = {
        "smtp": set(),
        "queue": {run / "queue.sock", run / "control.sock"},
        "relay": {run / "relay.sock"},
        "lookup": {run / "lookup.sock", run / "lookup-queue.sock"},
    }
    children = stack.state("mtad")["children"]
    spool = str(stack.root / "spool") + "/"
    for name, sockets in want.items():
        pid = children[name]
        held = {p for p in unix_paths(pid) if p.startswith(str(run))}
        assert held == {str(p) for p in sockets}, (name, held)
        files = file_paths(pid)
        in_spool = {f for f in files if f.startswith(spool)}
        if name == "queue":
            # The spool is the queue's; but a message's descriptor lives only
            # as long as its hand-over to the relay: none is left of one delivered.
            wait_for(lambda p=pid: not any(delivered in f for f in file_paths(p)), 60,
                     "the delivered message's descriptor to be closed")
        else:
            # Not even a message smtp wrote or the relay read: those were handed and closed.
            assert in_spool == set(), (name, in_spool)


def test_a_spool_the_smtp_user_owned_is_taken_over_by_the_queue_user(bare_stack):
    """An upgrade: the queue of an older release ran as mailpair, so its files are mailpair's."""
    stack = bare_stack
    root = stack.root / "spool"
    spool.create_dirs(root)
    env = Envelope(id=spool.new_id(), sender="s@remote.test", created=time.time(),
                   recipients=[Recipient("bob@example.test", "bob@example.test", LMTP)])
    spool.inject(root, env, b"Subject: from before\r\n\r\nold\r\n")
    for p in (root, *root.rglob("*")):
        shutil.chown(p, SMTP, SMTP)
    stack.start("mdad")
    stack.start("mtad")
    (got,) = stack.wait_messages("bob@example.test", 1, timeout=60)
    assert b"from before" in got
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")


def test_the_relay_can_read_the_dkim_keys_smtp_and_the_queue_cannot(bare_stack):
    stack = bare_stack
    keydir = stack.root / "etc" / "dkim"
    keydir.mkdir(mode=0o750)
    shutil.chown(keydir, "root", RELAY)  # as deploy/install.sh makes it
    stack.write_config(dkim_keys=str(keydir))
    r = subprocess.run([sys.executable, "-m", "mta.ctl", "-c", str(stack.config), "dkim",
                        "keygen", "example.test", "--selector", "k1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    load = (f"from mta.dkim import keys; "
            f"assert len(keys.load({str(keydir)!r}, 'example.test', 'k1')) == 2")
    assert can(RELAY, load), run_as(RELAY, load).stderr
    for user in (SMTP, QUEUE):
        assert not can(user, load), user
        for key in (keydir / "example.test").glob("*.key"):
            assert not can(user, f"open({str(key)!r}, 'rb').read()"), (user, key)
