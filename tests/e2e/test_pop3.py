"""POP3 against the real mdad: poplib on 110 (STLS) and 995, raw sockets, IMAP beside it."""

from __future__ import annotations

import base64
import json
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, Stack, client_tls, require_tool, wait_for

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture
def mdad(bare_stack: Stack) -> Stack:
    """mdad alone: mail arrives over its LMTP socket, as mtad would hand it over."""
    bare_stack.start("mdad")
    return bare_stack


def deliver(stack: Stack, user: str, count: int, first: int = 1) -> list[bytes]:
    """count messages over LMTP, one with a line that is only a dot and one starting with one."""
    sent = []
    with smtplib.LMTP(str(stack.lmtp_socket), timeout=30) as lmtp:
        for i in range(first, first + count):
            msg = (f"From: sender@example.net\r\nTo: {user}\r\nSubject: message {i}\r\n"
                   f"X-Test-Seq: {i}\r\n\r\nline one of {i}\r\n.hidden dot\r\n.\r\n"
                   + "filler text\r\n" * i).encode()
            lmtp.sendmail("sender@example.net", [user], msg)
            sent.append(msg)
    stack.wait_messages(user, first + count - 1)
    return sent


def pop3(stack: Stack, user: str | None = ALICE, tls: str = "stls") -> poplib.POP3:
    if tls == "implicit":
        p: poplib.POP3 = poplib.POP3_SSL(*stack.address("pop3s"), context=client_tls(),
                                         timeout=30)
    else:
        p = poplib.POP3(*stack.address("pop3"), timeout=30)
        if tls == "stls":
            p.stls(context=client_tls())
    if user:
        p.user(user)
        p.pass_(PASSWORD)
    return p


def maildir_files(stack: Stack, user: str) -> list[str]:
    md = stack.maildir(user)
    return sorted(os.listdir(md / "cur")) + sorted(os.listdir(md / "new"))


class Raw:
    """A POP3 client by hand, for what poplib does not do (AUTH, pipelining, injection)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.line().startswith(b"+OK")

    def line(self) -> bytes:
        return self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.line()

    def multi(self) -> list[bytes]:
        out = []
        while (line := self.line()) != b".\r\n":
            assert line, "connection closed inside a multi-line answer"
            out.append(line.rstrip(b"\r\n"))
        return out

    def starttls(self) -> None:
        self.file.close()
        self.sock = client_tls().wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def plain_blob(user: str, password: str = PASSWORD, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


# -- logging in -----------------------------------------------------------------------


def test_stls_then_user_pass_and_capa(mdad: Stack) -> None:
    p = pop3(mdad, user=None, tls="none")
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    for c in ("CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "USER", "STLS",
              "IMPLEMENTATION"):
        assert c in caps, c
    assert caps["SASL"] == ["PLAIN"]
    p.stls(context=client_tls())
    assert "STLS" not in p.capa()
    assert p.user(ALICE) == b"+OK"
    assert p.pass_(PASSWORD).startswith(b"+OK Logged in")
    assert p.stat() == (0, 0)
    assert p.quit().startswith(b"+OK")


def test_implicit_tls(mdad: Stack) -> None:
    deliver(mdad, ALICE, 2)
    p = pop3(mdad, tls="implicit")
    assert isinstance(p.sock, ssl.SSLSocket)
    assert p.stat()[0] == 2
    assert "STLS" not in p.capa()
    p.quit()


def test_auth_plain_initial_response_continuation_and_cancel(mdad: Stack) -> None:
    c = Raw(mdad.address("pop3"))
    c.send(b"AUTH\r\n")
    assert c.line() == b"+OK\r\n" and c.multi() == [b"PLAIN"]
    assert c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert c.cmd(b"*").startswith(b"-ERR")
    assert c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert c.cmd(plain_blob(ALICE, "wrong")).startswith(b"-ERR [AUTH]")
    assert c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert c.cmd(plain_blob(ALICE)).startswith(b"+OK Logged in")
    assert c.cmd(b"STAT") == b"+OK 0 0\r\n"
    assert c.cmd(b"QUIT").startswith(b"+OK")
    c.close()
    c = Raw(mdad.address("pop3"))
    assert c.cmd(b"AUTH PLAIN " + plain_blob(BOB)).startswith(b"+OK Logged in")
    c.close()


def test_wrong_passwords_end_the_connection(mdad: Stack) -> None:
    c = Raw(mdad.address("pop3"))
    for _ in range(2):
        assert c.cmd(b"USER " + ALICE.encode()) == b"+OK\r\n"
        assert c.cmd(b"PASS nope").startswith(b"-ERR [AUTH]")
    assert c.cmd(b"USER " + ALICE.encode()) == b"+OK\r\n"
    assert c.cmd(b"PASS nope").startswith(b"-ERR [AUTH]")
    assert c.line() == b""  # closed
    c.close()


def test_bad_commands_are_answered_and_the_session_goes_on(mdad: Stack) -> None:
    c = Raw(mdad.address("pop3"))
    assert c.cmd(b"HELO there").startswith(b"-ERR")
    assert c.cmd(b"USER " + b"x" * 2000).startswith(b"-ERR Line too long")
    assert c.cmd(b"STAT").startswith(b"-ERR")  # not before login
    assert c.cmd(b"\xff\xfe\x00").startswith(b"-ERR")
    assert c.cmd(b"AUTH PLAIN " + plain_blob(ALICE)).startswith(b"+OK")
    assert c.cmd(b"RETR one").startswith(b"-ERR")
    assert c.cmd(b"STAT") == b"+OK 0 0\r\n"
    c.close()


def test_pipelined_commands(mdad: Stack) -> None:
    sent = deliver(mdad, ALICE, 2)
    c = Raw(mdad.address("pop3"))
    c.send(b"USER " + ALICE.encode() + b"\r\nPASS " + PASSWORD.encode()
           + b"\r\nSTAT\r\nLIST 2\r\nNOOP\r\nQUIT\r\n")
    assert c.line() == b"+OK\r\n"
    assert c.line().startswith(b"+OK Logged in, 2 messages")
    stat = c.line()
    assert stat.startswith(b"+OK 2 ")
    size2 = int(c.line().split()[2])
    assert size2 > len(sent[1])  # LMTP added Return-Path and Received
    assert c.line() == b"+OK\r\n"
    assert c.line().startswith(b"+OK Logging out")
    assert c.line() == b""
    c.close()


# -- no password in the clear -------------------------------------------------------------


def pop3_settings(stack: Stack, **settings: object) -> None:
    """Replace or add keys of the [pop3] section of the stack's configuration."""
    text = stack.config.read_text()
    head, sep, tail = text.partition("[pop3]\n")
    assert sep
    section, nl, rest = tail.partition("\n\n")
    lines = [line for line in section.splitlines() if line.split(" = ")[0] not in settings]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    stack.config.write_text(head + sep + "\n".join(lines) + nl + rest)


@pytest.fixture
def strict(bare_stack: Stack) -> Stack:
    """Passwords only over TLS, even from loopback (as on a real server)."""
    pop3_settings(bare_stack, plaintext_on_loopback=False)
    bare_stack.start("mdad")
    return bare_stack


def test_no_password_before_tls_unless_allowed(strict: Stack) -> None:
    c = Raw(strict.address("pop3"))
    c.send(b"CAPA\r\n")
    assert c.line().startswith(b"+OK")
    caps = c.multi()
    assert b"STLS" in caps and b"USER" not in caps
    assert not any(cap.startswith(b"SASL") for cap in caps)
    assert c.cmd(b"USER " + ALICE.encode()).startswith(b"-ERR [SYS/PERM] Use STLS first")
    assert c.cmd(b"PASS " + PASSWORD.encode()).startswith(b"-ERR [SYS/PERM]")
    assert c.cmd(b"AUTH PLAIN " + plain_blob(ALICE)).startswith(b"-ERR [SYS/PERM]")
    assert c.cmd(b"STLS").startswith(b"+OK")
    c.starttls()
    c.send(b"CAPA\r\n")
    assert c.line().startswith(b"+OK")
    caps = c.multi()
    assert b"USER" in caps and b"SASL PLAIN" in caps and b"STLS" not in caps
    assert c.cmd(b"USER " + ALICE.encode()) == b"+OK\r\n"
    assert c.cmd(b"PASS " + PASSWORD.encode()).startswith(b"+OK Logged in")
    c.close()
    # Implicit TLS needs no STLS.
    p = pop3(strict, tls="implicit")
    p.quit()


def test_commands_sent_with_stls_are_never_obeyed(strict: Stack) -> None:
    # In one packet: what follows STLS was sent in the clear (a man in the middle).
    c = Raw(strict.address("pop3"))
    c.send(b"STLS\r\nUSER " + ALICE.encode() + b"\r\n")
    assert c.line().startswith(b"+OK")
    c.starttls()
    assert c.cmd(b"PASS " + PASSWORD.encode()).startswith(b"-ERR No user name")
    c.close()
    # Or right after the +OK, before the handshake: dropped, or the handshake fails.
    c = Raw(strict.address("pop3"))
    assert c.cmd(b"STLS").startswith(b"+OK")
    c.send(b"USER " + ALICE.encode() + b"\r\n")
    try:
        c.starttls()
        reply = c.cmd(b"PASS " + PASSWORD.encode())
    except (ssl.SSLError, ConnectionError):
        reply = b""
    assert not reply.startswith(b"+OK")
    c.close()


# -- the maildrop -----------------------------------------------------------------------


def test_stat_list_uidl_top_retr_agree(mdad: Stack) -> None:
    sent = deliver(mdad, ALICE, 3)
    p = pop3(mdad)
    count, total = p.stat()
    assert count == 3
    _, listing, _ = p.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert sum(sizes) == total
    for n, size in enumerate(sizes, 1):
        _, lines, octets = p.retr(n)
        assert octets == size  # what LIST said is what RETR sent
        data = b"\r\n".join(lines) + b"\r\n"
        assert len(data) == size
        assert data.endswith(sent[n - 1].split(b"\r\n\r\n", 1)[1])  # dots unstuffed again
        assert b"\r\n.hidden dot\r\n.\r\n" in data
        _, head, _ = p.top(n, 1)
        assert head[-1] == f"line one of {n}".encode() and head[-2] == b""
        assert p.list(n) == f"+OK {n} {size}".encode()
    _, uidls, _ = p.uidl()
    assert [u.split()[0] for u in uidls] == [b"1", b"2", b"3"]
    assert len({u.split()[1] for u in uidls}) == 3
    with pytest.raises(poplib.error_proto, match="no message 4"):
        p.retr(4)
    p.quit()


def test_dele_then_quit_deletes_and_retr_marks_seen(mdad: Stack) -> None:
    deliver(mdad, ALICE, 3)
    p = pop3(mdad)
    _, uidls, _ = p.uidl()
    p.retr(1)
    p.dele(2)
    assert len(maildir_files(mdad, ALICE)) == 3  # not before QUIT
    assert p.stat()[0] == 2
    assert p.quit().startswith(b"+OK")
    assert len(maildir_files(mdad, ALICE)) == 2
    p = pop3(mdad, tls="implicit")
    _, after, _ = p.uidl()
    assert [u.split()[1] for u in after] == [uidls[0].split()[1], uidls[2].split()[1]]
    p.quit()
    imap = mdad.imap()
    imap.select("INBOX")
    _, data = imap.fetch("1:*", "(FLAGS)")
    assert b"\\Seen" in data[0] and b"\\Seen" not in data[1]
    imap.logout()


def test_dele_then_drop_deletes_nothing(mdad: Stack) -> None:
    deliver(mdad, ALICE, 2)
    p = pop3(mdad)
    p.dele(1)
    p.dele(2)
    assert p.stat() == (0, 0)
    p.close()  # no QUIT: the connection just ends
    # The next session sees both, once the first one is over (its lock is gone).
    p = wait_for(lambda: _login_or_none(mdad), what="the dropped session's lock")
    assert p.stat()[0] == 2
    p.quit()
    assert len(maildir_files(mdad, ALICE)) == 2


def _login_or_none(stack: Stack) -> poplib.POP3 | None:
    p = pop3(stack, user=None)
    p.user(ALICE)
    try:
        p.pass_(PASSWORD)
    except poplib.error_proto as e:
        assert b"[IN-USE]" in e.args[0]
        p.quit()
        return None
    return p


def test_idle_timeout_ends_the_session_without_deleting(bare_stack: Stack) -> None:
    pop3_settings(bare_stack, idle_timeout=1)
    bare_stack.start("mdad")
    deliver(bare_stack, ALICE, 2)
    c = Raw(bare_stack.address("pop3"))
    assert c.cmd(b"AUTH PLAIN " + plain_blob(ALICE)).startswith(b"+OK")
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    assert c.line() == b"-ERR Disconnected for inactivity.\r\n"  # the server's clock, not ours
    assert c.line() == b""
    c.close()
    p = wait_for(lambda: _login_or_none(bare_stack), what="the timed-out session's lock")
    assert p.stat()[0] == 2
    p.quit()


def test_a_stop_ends_sessions_without_deleting(mdad: Stack) -> None:
    deliver(mdad, ALICE, 2)
    c = Raw(mdad.address("pop3"))
    assert c.cmd(b"AUTH PLAIN " + plain_blob(ALICE)).startswith(b"+OK")
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    assert mdad.stop("mdad") == 0
    assert c.line().startswith(b"-ERR [SYS/TEMP] Server shutting down")
    assert c.line() == b""
    c.close()
    assert len(maildir_files(mdad, ALICE)) == 2


def test_a_reload_lets_the_session_finish_on_the_old_process(mdad: Stack) -> None:
    deliver(mdad, ALICE, 2)
    c = Raw(mdad.address("pop3"))
    assert c.cmd(b"AUTH PLAIN " + plain_blob(ALICE)).startswith(b"+OK")
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    before = dict(mdad.state("mdad")["children"])
    mdad.procs["mdad"].send_signal(signal.SIGHUP)
    wait_for(lambda: dict(mdad.state("mdad")["children"])["pop3"] != before["pop3"],
             what="a new pop3 process")
    # The new process answers new logins; the maildrop is still this session's.
    p = pop3(mdad, user=None)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        p.pass_(PASSWORD)
    p.quit()
    assert c.cmd(b"STAT").startswith(b"+OK 1 ")
    assert c.cmd(b"QUIT").startswith(b"+OK Logging out, 1 message deleted")
    c.close()
    assert len(maildir_files(mdad, ALICE)) == 1
    assert re.search(rf"logged out .*deleted=1 pid={before['pop3']} ", mdad.log("mdad"))


def test_rset_undeletes(mdad: Stack) -> None:
    deliver(mdad, ALICE, 2)
    p = pop3(mdad)
    p.dele(1)
    assert p.stat()[0] == 1
    assert p.rset().startswith(b"+OK 2 messages")
    assert p.stat()[0] == 2
    p.quit()
    assert len(maildir_files(mdad, ALICE)) == 2


def test_second_login_is_in_use(mdad: Stack) -> None:
    deliver(mdad, ALICE, 1)
    first = pop3(mdad)
    second = pop3(mdad, user=None, tls="implicit")
    second.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD)
    # Another user's maildrop is not affected.
    other = pop3(mdad, user=BOB)
    other.quit()
    first.quit()
    second.user(ALICE)
    assert second.pass_(PASSWORD).startswith(b"+OK")
    second.quit()


def test_snapshot_and_a_message_expunged_by_imap(mdad: Stack) -> None:
    deliver(mdad, ALICE, 3)
    p = pop3(mdad)
    deliver(mdad, ALICE, 1, first=4)  # arrives during the session: not in this one
    imap = mdad.imap()
    imap.select("INBOX")
    imap.uid("STORE", "2", "+FLAGS.SILENT", "(\\Deleted)")
    imap.expunge()
    imap.logout()
    assert p.stat()[0] == 3
    with pytest.raises(poplib.error_proto, match="removed by another session"):
        p.retr(2)
    p.retr(3)
    p.dele(2)
    assert p.quit().startswith(b"+OK")
    p = pop3(mdad)
    assert p.stat()[0] == 3  # 1, 3 and the late one
    p.quit()


def test_uidl_is_dovecots_form_of_the_imap_uid(mdad: Stack) -> None:
    deliver(mdad, ALICE, 3)
    imap = mdad.imap()
    imap.select("INBOX")
    uidvalidity = int(imap.response("UIDVALIDITY")[1][0])
    _, data = imap.uid("FETCH", "1:*", "(UID)")
    uids = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data]
    imap.logout()
    p = pop3(mdad)
    _, uidls, _ = p.uidl()
    assert [u.split()[1].decode() for u in uidls] == [
        f"{uid:08x}{uidvalidity:08x}" for uid in uids]
    assert p.uidl(2) == f"+OK 2 {uids[1]:08x}{uidvalidity:08x}".encode()
    p.quit()
    # Stable across sessions.
    p = pop3(mdad, tls="implicit")
    assert p.uidl()[1] == uidls
    p.quit()


def test_a_maildir_from_dovecot_keeps_its_uidls(bare_stack: Stack) -> None:
    md = bare_stack.maildir(ALICE)
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    names = ["1600000001.M1P1.old,S=40", "1600000002.M2P1.old,S=40,W=44",
             "1600000003.M3P1.old"]
    uids = [7, 12, 300]
    (md / "dovecot-uidlist").write_text(
        "3 V1600000000 N301 Gfeedface\n" + "".join(
            f"{u} :{n}\n" for u, n in zip(uids, names, strict=True)))
    for i, name in enumerate(names):
        (md / "cur" / f"{name}:2,S").write_bytes(
            f"Subject: old {i}\nFrom: x@example.net\n\nfrom dovecot\n".encode())
    for d in (md.parent.parent, md.parent, md, *(md / s for s in ("cur", "new", "tmp"))):
        bare_stack.give_to_mail_user(d)
    for f in [md / "dovecot-uidlist", *(md / "cur").iterdir()]:
        bare_stack.give_to_mail_user(f)
    bare_stack.start("mdad")
    p = pop3(bare_stack)
    _, uidls, _ = p.uidl()
    assert [u.decode() for u in uidls] == [
        f"{n} {u:08x}{1600000000:08x}" for n, u in enumerate(uids, 1)]
    assert uidls[0] == b"1 000000075f5e1000"
    p.quit()


# -- fetchmail ------------------------------------------------------------------------------


def run_fetchmail(stack: Stack, work: Path, keep: bool, implicit: bool) -> tuple[int, str]:
    fetchmail = require_tool("fetchmail")
    out = work / "mbox"
    port = stack.port("pop3s" if implicit else "pop3")
    rc = work / "fetchmailrc"
    rc.write_text(
        f"set no bouncemail\n"
        f"poll 127.0.0.1 with proto POP3 service {port} uidl\n"
        f'  user "{ALICE}" there with password "{PASSWORD}"\n'
        f"  options {'keep' if keep else 'nokeep'} {'ssl' if implicit else 'sslproto TLS1.2+'}"
        f" no sslcertck\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n")
    rc.chmod(0o600)  # fetchmail refuses a readable rc file
    env = dict(os.environ, FETCHMAILHOME=str(work), HOME=str(work))
    r = subprocess.run([fetchmail, "-f", str(rc), "-i", str(work / "ids"), "--nosyslog",
                        "-v", "--nodetach"], capture_output=True, text=True, env=env,
                       timeout=90)
    return r.returncode, r.stdout + r.stderr


def test_fetchmail_keep_then_nothing_new_then_nokeep(mdad: Stack, tmp_path: Path) -> None:
    deliver(mdad, ALICE, 3)
    work = tmp_path / "fetchmail"
    work.mkdir()
    code, log = run_fetchmail(mdad, work, keep=True, implicit=True)
    assert code == 0, log  # 0: mail was fetched
    mbox = (work / "mbox").read_bytes()
    assert sorted(re.findall(rb"X-Test-Seq: (\d+)", mbox)) == [b"1", b"2", b"3"]
    assert b".hidden dot" in mbox and b"\n..hidden" not in mbox
    assert len(maildir_files(mdad, ALICE)) == 3  # kept
    # Known UIDLs: nothing is new (fetchmail exits 1, "no mail").
    code, log = run_fetchmail(mdad, work, keep=True, implicit=False)
    assert code == 1, log
    assert "STLS" in log
    assert (work / "mbox").read_bytes() == mbox
    # One more message; without keep fetchmail takes only it, and deletes it.
    deliver(mdad, ALICE, 1, first=4)
    code, log = run_fetchmail(mdad, work, keep=False, implicit=False)
    assert code == 0, log
    mbox = (work / "mbox").read_bytes()
    assert sorted(re.findall(rb"X-Test-Seq: (\d+)", mbox)) == [b"1", b"2", b"3", b"4"]
    assert len(maildir_files(mdad, ALICE)) == 3
    shutil.rmtree(work)


def test_imaplib_and_poplib_share_the_store(mdad: Stack) -> None:
    """A message APPENDed over IMAP is there for POP3, byte for byte."""
    imap = mdad.imap()
    body = b"Subject: appended\r\n\r\n.dot first\r\nend\r\n"
    imap.append("INBOX", None, None, body)
    imap.logout()
    p = pop3(mdad)
    _, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == body and octets == len(body)
    p.quit()
