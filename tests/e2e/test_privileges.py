"""Privilege separation, checked on the running processes themselves."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Stack, wait_for

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

EXPECTED = {
    "mtad": {"smtp": "mailpair", "queue": "mailpair-queue", "relay": "mailpair-relay",
             "lookup": "mailpair-auth", "autoconfig": "mailpair-web"},
    "mdad": {"lmtp": "vmail", "imap-login": "mailpair-login", "pop3-login": "mailpair-login",
             "imap": "vmail", "pop3": "vmail", "auth": "mailpair-auth"},
}
MAIL_ROLES = ("imap", "pop3")
LOGIN_ROLES = ("imap-login", "pop3-login")


def status(pid: int) -> dict[str, list[str]]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split() for k, _, v in (line.partition(":") for line in f)}


@root_only
@pytest.mark.parametrize("daemon", ["mtad", "mdad"])
def test_each_child_runs_as_its_user_with_no_groups_and_no_capabilities(stack, daemon):
    state = stack.state(daemon)
    assert status(state["pid"])["Uid"][0] == "0"  # the parent stays root to bind and supervise
    assert set(state["children"]) == set(EXPECTED[daemon])
    for name, user in EXPECTED[daemon].items():
        st = status(state["children"][name])
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(user).gr_gid
        assert st["Uid"] == [str(pw.pw_uid)] * 4, (name, st["Uid"])  # real, effective, saved, fs
        assert st["Gid"] == [str(gid)] * 4, (name, st["Gid"])
        assert st["Groups"] == [], (name, st["Groups"])
        assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0, name


def can_read_as(path, user: str) -> bool:
    """Open the file with exactly the credentials a child has: its user, its group, nothing else."""
    pw = pwd.getpwnam(user)
    r = subprocess.run([sys.executable, "-c", f"open({str(path)!r}).read()"],
                       user=pw.pw_uid, group=grp.getgrnam(user).gr_gid, extra_groups=[],
                       capture_output=True)
    return r.returncode == 0


@root_only
def test_only_the_lookup_processes_can_read_the_users_file(stack):
    users = stack.root / "etc" / "users"
    shutil.chown(users, "root", "mailpair-auth")
    users.chmod(0o640)
    assert can_read_as(users, "mailpair-auth")
    # smtp, queue, relay, autoconfig
    for user in ("mailpair", "mailpair-queue", "mailpair-relay", "mailpair-web"):
        assert not can_read_as(users, user), user
    assert not can_read_as(users, "vmail")  # lmtp (and imap, pop3)
    assert not can_read_as(users, "mailpair-login")  # imap-login, pop3-login
    # The network-facing children hold no descriptor of it or of the TLS key either.
    secret = {str(users), str(stack.root / "etc" / "key.pem")}
    for daemon, name in (("mtad", "smtp"), ("mtad", "autoconfig"), ("mdad", "lmtp"),
                         ("mdad", "imap"), ("mdad", "pop3"),
                         ("mdad", "imap-login"), ("mdad", "pop3-login")):
        pid = stack.state(daemon)["children"][name]
        fds = os.listdir(f"/proc/{pid}/fd")
        targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}
        assert not targets & secret, (name, targets & secret)
    # And with those modes the whole path still works: login and delivery.
    with stack.submission("alice@example.test") as s:
        s.sendmail("alice@example.test", ["bob@example.test"], b"Subject: p\r\n\r\nx\r\n")
    stack.wait_messages("bob@example.test", 1)


@root_only
def test_the_autoconfig_process_reaches_no_mail_and_no_spool(stack):
    # Files anyone could read, but inside the Maildir root and the spool: their directories
    # keep the autoconfig process's user out.
    for d, owner in ((stack.root / "mail", "vmail"), (stack.root / "spool", "mailpair-queue")):
        probe = d / "probe"
        probe.write_text("x")
        shutil.chown(probe, owner, owner)
        probe.chmod(0o644)
        assert can_read_as(probe, owner)  # the check itself can succeed
        assert not can_read_as(probe, "mailpair-web"), d


@root_only
def test_what_the_parents_create_has_the_owners_of_the_roles(stack):
    def owner(p):
        st = os.stat(p)
        return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o777
    for d in ("", "queue", "incoming", "corrupt"):
        assert owner(stack.root / "spool" / d) == ("mailpair-queue", "mailpair-queue", 0o700), d
    assert owner(stack.root / "mail") == ("vmail", "vmail", 0o700)
    assert owner(stack.lmtp_socket) == ("vmail", "mailpair-relay", 0o660)
    run = stack.root / "run" / "mta"
    assert owner(run) == ("root", "root", 0o711)
    assert owner(run / "lookup.sock") == ("mailpair-auth", "mailpair", 0o660)
    assert owner(run / "lookup-queue.sock") == ("mailpair-auth", "mailpair-queue", 0o660)
    assert owner(run / "queue.sock") == ("mailpair-queue", "mailpair", 0o660)
    assert owner(run / "control.sock") == ("root", "root", 0o600)
    assert owner(run / "relay.sock") == ("mailpair-queue", "mailpair-queue", 0o600)
    assert owner(stack.root / "run" / "mda" / "auth.sock") == ("mailpair-auth", "vmail", 0o660)
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["carol@example.test"], b"Subject: o\r\n\r\nx\r\n")
    stack.wait_messages("carol@example.test", 1)
    (msg,) = [p for p in (stack.maildir("carol@example.test") / "new").iterdir()]
    assert owner(msg)[:2] == ("vmail", "vmail")
    assert owner(stack.maildir("carol@example.test").parent.parent)[:2] == ("vmail", "vmail")


@root_only
def test_as_an_ordinary_user_everything_runs_without_a_drop(tmp_path, system_users):
    """The development set-up: one user for everything, no root anywhere."""
    user = "mailpair"
    root = Path(f"/tmp/mp-nr-{os.getpid()}")  # pytest's own tmp is root's alone
    shutil.rmtree(root, ignore_errors=True)
    stack = Stack(root, root)
    stack.write_config()
    stack.add_user("alice@example.test")
    for p in [root, *root.rglob("*")]:
        shutil.chown(p, user, user)
    pw = pwd.getpwnam(user)
    stack.run_as = pw.pw_uid
    try:
        stack.start("mdad")
        stack.start("mtad")
        for daemon in ("mtad", "mdad"):
            state = stack.state(daemon)
            for pid in [state["pid"], *state["children"].values()]:
                assert status(pid)["Uid"][0] == str(pw.pw_uid)
        with stack.smtp() as s:
            s.sendmail("s@remote.test", ["alice@example.test"], b"Subject: n\r\n\r\nx\r\n")
        stack.wait_messages("alice@example.test", 1)
    finally:
        stack.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def test_a_dead_child_is_restarted_and_service_goes_on(stack):
    old = stack.state("mtad")["children"]["smtp"]
    os.kill(old, 9)
    new = wait_for(lambda: (p := stack.state("mtad")["children"].get("smtp")) != old and p,
                   60, "a new smtp process")
    assert new != old
    assert "child died, restarting" in stack.log("mtad")
    wait_for(lambda: stack._banner(("127.0.0.1", stack.port("smtp"))), 60, "the banner again")
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["alice@example.test"], b"Subject: r\r\n\r\nx\r\n")
    stack.wait_messages("alice@example.test", 1)


def test_the_parents_parse_no_network_input(stack):
    """Only children hold the listening sockets' connections; the parents import no protocol."""
    for daemon, module in (("mtad", "mta.main"), ("mdad", "mda.main")):
        r = subprocess.run([sys.executable, "-c", f"import sys, {module}; "
                            "print(sorted(m for m in sys.modules if m.startswith('aiosmtpd')))"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
        assert r.stdout.strip() == "[]", (daemon, r.stdout)


def listening_tcp_inodes() -> set[str]:
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    out.add(fields[9])
    return out


def fd_targets(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return out


def test_the_mail_processes_hold_no_port_and_no_tls_key_the_login_processes_do(stack):
    listening = listening_tcp_inodes()
    children = stack.state("mdad")["children"]
    for name in MAIL_ROLES:
        targets = fd_targets(children[name])
        held = {t for t in targets if t.startswith("socket:[") and t[8:-1] in listening}
        assert not held, (name, held)
        assert not any("mailpair-tls" in t or t.endswith("key.pem") for t in targets), name
    for name in LOGIN_ROLES:
        targets = fd_targets(children[name])
        assert {t for t in targets if t.startswith("socket:[") and t[8:-1] in listening}, name
    with open(f"/proc/{children['imap']}/maps") as f:  # nor was it ever handed one
        assert "mailpair-tls" not in f.read()


@root_only
def test_the_login_user_cannot_read_mail_or_name_a_user(stack):
    with stack.smtp() as s:
        s.sendmail("s@remote.test", ["alice@example.test"], b"Subject: l\r\n\r\nx\r\n")
    stack.wait_messages("alice@example.test", 1)
    (msg,) = (stack.maildir("alice@example.test") / "new").iterdir()
    assert can_read_as(msg, "vmail")
    assert not can_read_as(msg, "mailpair-login")
    # A compromised login process cannot hand a connection over for a user of its
    # choosing: the mail process wants a token only the auth process gives out
    # for a right password, and the login user cannot reach the socket that redeems them.
    auth = str(stack.root / "run" / "mda" / "auth.sock")
    script = f"""
import asyncio, socket, sys
from common import ipc
async def main():
    try:
        await ipc.Client({auth!r}).call("redeem", token="x")
        print("redeem reached")
    except ipc.IPCError:
        print("redeem unreachable")
    a, b = socket.socketpair()
    mail = ipc.Client({str(stack.root / "run" / "mda-login" / "imap-mail.sock")!r})
    r, _ = await mail.call_fds("session", fds=[b.fileno()], token="forged",
                               peer="192.0.2.1", secure=False, pending="", tag="a")
    print("accepted" if r.get("accepted") else "refused")
asyncio.run(main())
"""
    pw = pwd.getpwnam("mailpair-login")
    r = subprocess.run([sys.executable, "-c", script], user=pw.pw_uid, cwd=ROOT,
                       group=grp.getgrnam("mailpair-login").gr_gid, extra_groups=[],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["redeem", "unreachable", "refused"], (r.stdout, r.stderr)
    # And vmail, the mail processes' user, cannot enter the login sockets' directory.
    st = os.stat(stack.root / "run" / "mda-login")
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, st.st_mode & 0o777) == (
        0, "mailpair-login", 0o750)
