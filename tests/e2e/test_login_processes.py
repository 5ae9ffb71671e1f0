"""The login processes (imap-login, pop3-login) in front of the mail processes:
hand-over of plaintext and TLS connections, pipelining across it, refusals
handed back, a login process killed and restarted."""

from __future__ import annotations

import imaplib
import os
import poplib
import socket
import ssl

from tests.conftest import PASSWORD, Stack, client_tls, wait_for
from tests.e2e.imapwire import read_response

ALICE = "alice@example.test"


def connect(stack: Stack, listener: str) -> socket.socket:
    s = socket.create_connection(stack.address(listener), timeout=30)
    if listener.endswith("s"):
        s = client_tls().wrap_socket(s)
    return s


def test_pipelined_login_and_select_in_one_packet(stack: Stack) -> None:
    for listener in ("imap", "imaps"):
        s = connect(stack, listener)
        f = s.makefile("rb")
        assert read_response(f).startswith(b"* OK [CAPABILITY ")
        # One write: the SELECT is read by the login process along with the LOGIN.
        s.sendall(f'a LOGIN "{ALICE}" "{PASSWORD}"\r\nb SELECT INBOX\r\nc LOGOUT\r\n'.encode())
        answers = []
        while not (answers and answers[-1].startswith(b"c ")):
            answers.append(read_response(f))
        assert answers[0].startswith(b"a OK [CAPABILITY IMAP4rev1 "), answers
        assert b"UIDPLUS" in answers[0]
        assert any(a.startswith(b"b OK [READ-WRITE]") for a in answers), answers
        assert answers[-1].startswith(b"c OK LOGOUT"), answers
        s.close()


def test_login_over_993_and_after_starttls(stack: Stack) -> None:
    with imaplib.IMAP4_SSL(*stack.address("imaps"), ssl_context=client_tls(), timeout=30) as c:
        c.login(ALICE, PASSWORD)
        assert c.select("INBOX")[0] == "OK"
        # The mail process speaks through the login process's TLS session.
        typ, data = c.capability()
        assert b"STARTTLS" not in data[0] and b"UIDPLUS" in data[0]
        c.logout()
    c = imaplib.IMAP4(*stack.address("imap"), timeout=30)
    assert "STARTTLS" in c.capabilities
    c.starttls(ssl_context=client_tls())
    c.login(ALICE, PASSWORD)
    assert c.select("INBOX")[0] == "OK"
    # After login TLS is no longer the question: STARTTLS is a bad command.
    c.send(b"z STARTTLS\r\n")
    assert c.readline() == b"z BAD STARTTLS is only valid before login\r\n"
    c.logout()
    p = poplib.POP3_SSL(*stack.address("pop3s"), context=client_tls(), timeout=30)
    p.user(ALICE)
    assert p.pass_(PASSWORD).startswith(b"+OK Logged in")
    assert p.stat() == (0, 0)
    p.quit()


def test_a_refusal_of_the_mail_process_is_handed_back(bare_stack: Stack) -> None:
    """POP3's maildrop in use: the pop3 process says -ERR [IN-USE] through the
    login process, which keeps the connection: the client may try again on it."""
    stack = bare_stack
    stack.start("mdad")
    first = poplib.POP3(*stack.address("pop3"), timeout=30)
    first.user(ALICE)
    first.pass_(PASSWORD)
    for listener in ("pop3", "pop3s"):
        s = connect(stack, listener)
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        s.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\n".encode())
        assert f.readline() == b"+OK\r\n"
        assert f.readline() == b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
        s.sendall(b"CAPA\r\n")
        assert f.readline().startswith(b"+OK")
        assert b"USER\r\n" in iter_until_dot(f)  # still before login, in the login process
        if listener == "pop3s":
            first.quit()
            s.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nQUIT\r\n".encode())
            assert f.readline() == b"+OK\r\n"
            assert f.readline().startswith(b"+OK Logged in")
            assert f.readline().startswith(b"+OK 0 0")
            assert f.readline().startswith(b"+OK Logging out")
        s.close()


def iter_until_dot(f) -> bytes:
    out = b""
    while (line := f.readline()) not in (b".\r\n", b""):
        out += line
    return out


def test_a_login_process_killed_is_restarted_and_logins_work_again(stack: Stack) -> None:
    # A plaintext session lives in the imap process: it outlives its login process.
    survivor = stack.imap(ALICE)
    survivor.select("INBOX")
    for role, check in (("imap-login", lambda: stack.imap(ALICE).logout()),
                        ("pop3-login", lambda: pop3_login(stack))):
        old = stack.state("mdad")["children"][role]
        os.kill(old, 9)
        wait_for(lambda r=role, o=old: (p := stack.state("mdad")["children"].get(r)) and p != o,
                 60, f"a new {role} process")

        def works(check=check) -> bool:
            try:
                check()
                return True
            except (OSError, imaplib.IMAP4.error, poplib.error_proto, ssl.SSLError):
                return False
        wait_for(works, 60, f"a login through the new {role}")
    assert survivor.noop()[0] == "OK"
    survivor.logout()
    assert "child died, restarting" in stack.log("mdad")


def pop3_login(stack: Stack) -> None:
    p = poplib.POP3(*stack.address("pop3"), timeout=30)
    p.user(ALICE)
    p.pass_(PASSWORD)
    p.quit()
