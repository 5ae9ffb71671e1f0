"""IMAP sessions against the real mdad: login rules, TLS, mailboxes, IDLE, bad input."""

from __future__ import annotations

import imaplib
import socket
import ssl
import time

import pytest
from imapclient import IMAPClient

from tests.conftest import PASSWORD, client_tls, wait_for


def raw(stack, port_name="imap"):
    s = socket.create_connection(stack.address(port_name), timeout=30)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    return s, f


def tagged(f, tag: bytes) -> list[bytes]:
    lines = []
    while True:
        line = f.readline()
        assert line, "connection closed"
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


def no_plaintext(stack):
    text = stack.config.read_text()
    stack.config.write_text(text.replace("plaintext_on_loopback = true",
                                         "plaintext_on_loopback = false", 1))


def test_login_select_and_capabilities(stack):
    c = stack.imap(None)
    caps = c.capability()[1][0].split()
    assert b"STARTTLS" in caps and b"AUTH=PLAIN" in caps and b"IDLE" in caps
    typ, data = c.login("alice@example.test", PASSWORD)
    assert typ == "OK" and b"CAPABILITY" in data[0] and b"UIDPLUS" in data[0]
    typ, data = c.select("INBOX")
    assert (typ, data) == ("OK", [b"0"])
    assert c.response("UIDVALIDITY")[1][0].isdigit()
    assert c.response("PERMANENTFLAGS")[1][0].startswith(b"(\\Answered")
    assert c.logout()[0] == "BYE"


def test_wrong_password_and_unknown_user_are_refused(stack):
    c = stack.imap(None)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login("alice@example.test", "wrong")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login("nobody@example.test", PASSWORD)
    assert c.login("alice@example.test", PASSWORD)[0] == "OK"  # the session goes on


def test_no_password_before_tls_when_loopback_is_not_trusted(bare_stack):
    stack = bare_stack
    no_plaintext(stack)
    stack.start("mdad")
    c = imaplib.IMAP4(*stack.address("imap"), timeout=30)
    caps = c.capability()[1][0].split()
    assert b"LOGINDISABLED" in caps and b"AUTH=PLAIN" not in caps
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        c.login("alice@example.test", PASSWORD)
    c.starttls(ssl_context=client_tls())
    caps = c.capability()[1][0].split()
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps
    assert c.login("alice@example.test", PASSWORD)[0] == "OK"
    c.logout()
    # Implicit TLS on the other port accepts a login at once.
    s = imaplib.IMAP4_SSL(*stack.address("imaps"), ssl_context=client_tls(), timeout=30)
    assert s.login("bob@example.test", PASSWORD)[0] == "OK"
    s.logout()


def test_plaintext_sent_with_starttls_is_not_obeyed(stack):
    s, f = raw(stack)
    # A client (or an attacker in the middle) pipelines a command behind STARTTLS.
    s.sendall(b"a STARTTLS\r\nb LOGIN alice@example.test \"correct horse 1\"\r\n")
    assert f.readline().startswith(b"a OK")
    tls = client_tls().wrap_socket(s)
    tf = tls.makefile("rb")
    tls.sendall(b"c NOOP\r\n")
    line = tf.readline()
    assert line.startswith(b"c OK"), line  # no answer for b: it was never read
    tls.sendall(b"d SELECT INBOX\r\n")
    assert tagged(tf, b"d")[-1].startswith(b"d BAD")  # still not logged in
    tls.close()


def test_authenticate_plain_with_and_without_initial_response(stack):
    import base64
    blob = base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode())
    s, f = raw(stack)
    s.sendall(b"a AUTHENTICATE PLAIN " + blob + b"\r\n")
    assert tagged(f, b"a")[-1].startswith(b"a OK")
    s.close()
    s, f = raw(stack)
    s.sendall(b"a AUTHENTICATE PLAIN\r\n")
    assert f.readline().startswith(b"+")
    s.sendall(blob + b"\r\n")
    assert tagged(f, b"a")[-1].startswith(b"a OK")
    s.sendall(b"b AUTHENTICATE PLAIN\r\n")
    assert f.readline().startswith(b"b BAD")  # already logged in
    s.close()
    s, f = raw(stack)
    s.sendall(b"a AUTHENTICATE PLAIN\r\n")
    assert f.readline().startswith(b"+")
    s.sendall(b"*\r\n")
    assert f.readline().startswith(b"a BAD")
    s.sendall(b"b NOOP\r\n")
    assert f.readline().startswith(b"b OK")
    s.close()


def test_bad_commands_get_bad_and_the_session_goes_on(stack):
    s, f = raw(stack)
    for junk in (b"\r\n", b"a\r\n", b"a FROB\r\n", b"a LOGIN\r\n", b"a SELECT\r\n",
                 b"a FETCH 1 (BODY[\r\n", b"\x00\xff\xfe garbage\r\n", b"a LIST \"\r\n"):
        s.sendall(junk)
    s.sendall(b"z NOOP\r\n")
    lines = tagged(f, b"z")
    assert lines[-1].startswith(b"z OK")
    assert sum(1 for line in lines if b" BAD " in line) >= 6
    # A huge literal before login is refused without reading it.
    s.sendall(b"y LOGIN {99999999}\r\n")
    assert f.readline().startswith(b"y NO")
    s.sendall(b"x NOOP\r\n")
    assert f.readline().startswith(b"x OK")
    s.close()
    # Another client is served all along.
    c = stack.imap()
    assert c.noop()[0] == "OK"


def test_mailbox_commands(stack):
    c = IMAPClient(*stack.address("imap"), ssl=False, timeout=30)
    c.login("alice@example.test", PASSWORD)
    names = {f[2]: f[0] for f in c.list_folders()}
    assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} <= set(names)
    assert b"\\Sent" in names["Sent"] and b"\\HasNoChildren" in names["INBOX"]
    assert c.find_special_folder(b"\\Trash") == "Trash"
    c.create_folder("Projects/2026")
    names = {f[2]: f[0] for f in c.list_folders()}
    assert b"\\HasChildren" in names["Projects"] and "Projects/2026" in names
    c.rename_folder("Projects/2026", "Projects/Done")
    assert c.folder_exists("Projects/Done") and not c.folder_exists("Projects/2026")
    c.subscribe_folder("Projects/Done")
    assert "Projects/Done" in {f[2] for f in c.list_sub_folders()}
    c.unsubscribe_folder("Projects/Done")
    assert "Projects/Done" not in {f[2] for f in c.list_sub_folders()}
    c.delete_folder("Projects/Done")
    assert not c.folder_exists("Projects/Done")
    with pytest.raises(Exception, match="NONEXISTENT|No such"):
        c.select_folder("Nope")
    # Non-ASCII names travel as modified UTF-7 and are stored as Unicode.
    c.create_folder("Reçus/日本")
    assert "Reçus/日本" in {f[2] for f in c.list_folders()}
    st = c.folder_status("Sent", ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])
    assert st[b"MESSAGES"] == 0 and st[b"UIDNEXT"] == 1
    uid = c.append("Sent", b"Subject: kept\r\n\r\nsent mail\r\n", flags=[b"\\Seen"])
    assert b"APPENDUID" in uid
    st = c.folder_status("Sent", ["MESSAGES", "UNSEEN"])
    assert st[b"MESSAGES"] == 1 and st[b"UNSEEN"] == 0
    c.logout()


ESCAPES = ["../x", "/etc", "~bob", "INBOX/../../x", "a/../../b", "..", ".hidden", "Sent/./x",
           "a//b"]


@pytest.mark.parametrize("command", ["CREATE", "SELECT", "RENAME Sent", "APPEND", "STATUS"])
def test_mailbox_names_cannot_leave_the_maildir(stack, command):
    s, f = raw(stack)
    s.sendall(b'a LOGIN alice@example.test "correct horse 1"\r\n')
    assert tagged(f, b"a")[-1].startswith(b"a OK")
    before = sorted(p for p in stack.root.rglob("*") if p.is_dir())
    for name in ESCAPES:
        arg = b'"' + name.encode() + b'"'
        line = {"CREATE": b"b CREATE " + arg, "SELECT": b"b SELECT " + arg,
                "RENAME Sent": b"b RENAME Sent " + arg,
                "APPEND": b"b APPEND " + arg + b" {3+}\r\nx\r\n",
                "STATUS": b"b STATUS " + arg + b" (MESSAGES)"}[command]
        s.sendall(line + b"\r\n")
        reply = tagged(f, b"b")[-1]
        assert reply.startswith((b"b NO", b"b BAD")), (name, reply)
    after = sorted(p for p in stack.root.rglob("*") if p.is_dir())
    assert after == before
    s.sendall(b"c NOOP\r\n")
    assert tagged(f, b"c")[-1].startswith(b"c OK")
    s.close()


def test_idle_sees_a_delivery_within_a_second(stack):
    c = IMAPClient(*stack.address("imap"), ssl=False, timeout=30)
    c.login("alice@example.test", PASSWORD)
    c.select_folder("INBOX")
    c.idle()
    with stack.smtp() as s:
        s.sendmail("far@remote.test", ["alice@example.test"], b"Subject: ping\r\n\r\nx\r\n")
    delivered = time.monotonic()
    stack.wait_messages("alice@example.test", 1)
    responses = c.idle_check(timeout=5)
    seen = time.monotonic()
    assert (1, b"EXISTS") in responses, responses
    # From the 250 to the client's EXISTS: the delivery, the watch, the refresh.
    assert seen - delivered < 2.0
    c.idle_done()
    c.logout()


def test_two_sessions_see_each_others_mailbox_changes(stack):
    a, b = stack.imap(), stack.imap()
    a.select("INBOX")
    b.select("INBOX")
    a.append("INBOX", None, None, b"Subject: one\r\n\r\nx\r\n")
    typ, data = b.noop()
    assert typ == "OK"
    assert b.untagged_responses.get("EXISTS")[-1] == b"1"  # imaplib keeps SELECT's 0 too


def test_implicit_tls_with_imapclient(stack):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = IMAPClient(*stack.address("imaps"), ssl=True, ssl_context=ctx, timeout=30)
    c.login("carol@example.test", PASSWORD)
    assert c.select_folder("INBOX")[b"EXISTS"] == 0
    c.logout()


def test_idle_before_login_is_refused(stack):
    s, f = raw(stack)
    s.sendall(b"a IDLE\r\n")
    assert f.readline().startswith(b"a BAD")
    s.sendall(b"b NOOP\r\n")
    assert wait_for(lambda: f.readline().startswith(b"b OK"), 60, "NOOP after a refused IDLE")
    s.close()
