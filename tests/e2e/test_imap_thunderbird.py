"""A session shaped like Thunderbird's with CONDSTORE on, command for command.

test_thunderbird.py runs Thunderbird itself. This replays such a session
with each answer checked for what Thunderbird reads from it, and adds what
a single run of the real client does not reach: SELECT with the
(CONDSTORE) parameter (RFC 7162 lets a client send it; Thunderbird 153
relies on the HIGHESTMODSEQ of a plain SELECT instead), its mixed-case
command names and flag words, ID, NAMESPACE, the special-use LIST, the
CHANGEDSINCE flag resync, its header-field list for the message pane,
IDLE, a read, a move to Trash, and STATUS of the other folders.
"""

from __future__ import annotations

import re
import socket

from tests.conftest import PASSWORD, Stack
from tests.e2e.imapwire import read_response

ALICE = "alice@example.test"
HEADERS = ("From To Cc Bcc Subject Date Message-ID Priority X-Priority References "
           "Newsgroups In-Reply-To Content-Type Reply-To")


def message(n: int) -> bytes:
    return (f"From: Bob <bob@example.net>\r\nTo: {ALICE}\r\nSubject: note {n}\r\n"
            f"Date: Tue, 4 Feb 2020 09:0{n}:00 +0000\r\nMessage-ID: <n{n}@example.net>\r\n"
            f"X-Priority: 3\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Text {n}.\r\n").encode()


class Client:
    def __init__(self, stack: Stack) -> None:
        self.sock = socket.create_connection(stack.address("imap"), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK [CAPABILITY ")
        self.n = 0

    def read(self) -> bytes:
        return read_response(self.file)

    def cmd(self, text: str) -> list[bytes]:
        """Send a command as Thunderbird numbers them; the untagged answers (OK required)."""
        self.n += 1
        tag = b"%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        untagged = []
        while not (resp := self.read()).startswith(tag + b" "):
            untagged.append(resp)
        assert resp.startswith(tag + b" OK"), (text, untagged, resp)
        return untagged


def test_a_thunderbird_shaped_session(bare_stack: Stack) -> None:
    stack = bare_stack
    stack.start("mdad")
    with stack.imap(ALICE) as c:
        for n in (1, 2, 3):
            assert c.append("INBOX", None, None, message(n))[0] == "OK"
        c.select("INBOX")  # delivered and seen once: not \Recent below

    tb = Client(stack)
    assert b" AUTH=PLAIN" in tb.cmd("capability")[0]
    tb.cmd(f'login "{ALICE}" "{PASSWORD}"')
    caps = tb.cmd("capability")[0].split()
    for needed in (b"IDLE", b"ID", b"NAMESPACE", b"CONDSTORE", b"MOVE", b"UIDPLUS",
                   b"SPECIAL-USE", b"LIST-EXTENDED"):
        assert needed in caps, needed
    ident = tb.cmd('ID ("name" "Thunderbird" "version" "128.5.0")')
    assert ident[0].startswith(b'* ID ("name" ')
    assert tb.cmd("namespace") == [b'* NAMESPACE (("" "/")) NIL NIL\r\n']
    listed = b"".join(tb.cmd('list (SPECIAL-USE) "" "*"'))
    for name, use in ((b"Sent", b"\\Sent"), (b"Trash", b"\\Trash"), (b"Drafts", b"\\Drafts")):
        assert re.search(rb'\* LIST \([^)]*' + re.escape(use) + rb'[^)]*\) "/" "?'
                         + name, listed), (name, listed)
    assert b'* LSUB () "/" Sent\r\n' in tb.cmd('lsub "" "*"')
    assert tb.cmd('list "" "INBOX"')[0].endswith(b' "/" INBOX\r\n')

    selected = b"".join(tb.cmd('select "INBOX" (CONDSTORE)'))
    assert b"* 3 EXISTS\r\n" in selected
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", selected).group(1))
    assert re.search(rb"\[PERMANENTFLAGS \([^)]*\\\*\)\]", selected)
    flags = tb.cmd("UID fetch 1:* (FLAGS)")
    assert [re.search(rb"UID (\d+)", f).group(1) for f in flags] == [b"1", b"2", b"3"]
    headers = tb.cmd(f"UID fetch 1:3 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS ({HEADERS})])")
    assert len(headers) == 3
    assert b"Subject: note 2\r\n" in headers[1] and b"X-Priority: 3\r\n" in headers[1]
    assert b"Text 2" not in headers[1]  # header fields only
    assert b"RFC822.SIZE %d" % len(message(2)) in headers[1]

    # New mail while idle, then the CHANGEDSINCE resync Thunderbird does.
    tb.sock.sendall(b"%d IDLE\r\n" % (tb.n + 1))
    tb.n += 1
    assert tb.read().startswith(b"+ ")
    with stack.imap(ALICE) as c:
        assert c.append("INBOX", None, None, message(4))[0] == "OK"
    assert tb.read() == b"* 4 EXISTS\r\n"
    tb.sock.sendall(b"DONE\r\n")
    while not (line := tb.read()).startswith(b"%d " % tb.n):
        pass
    assert line.startswith(b"%d OK" % tb.n)
    changed = tb.cmd(f"UID fetch 1:* (FLAGS) (CHANGEDSINCE {modseq})")
    assert len(changed) == 1 and b"UID 4" in changed[0] and b"MODSEQ (" in changed[0]

    # Reading a message, marking it, moving it to Trash.
    body = tb.cmd("UID fetch 2 (UID RFC822.SIZE BODY.PEEK[])")[0]
    assert body.endswith(message(2) + b")\r\n")
    stored = tb.cmd("UID store 2 +Flags (\\Seen)")
    assert re.search(rb"FLAGS \(\\Seen\)", stored[0]) and b"UID 2" in stored[0]
    moved = tb.cmd('UID move 2 "Trash"')
    assert moved[0].startswith(b"* OK [COPYUID ") and b"* 2 EXPUNGE\r\n" in moved
    tb.cmd("noop")
    status = tb.cmd('STATUS "Trash" (UIDNEXT MESSAGES UNSEEN RECENT HIGHESTMODSEQ)')[0]
    assert re.match(rb'\* STATUS "?Trash"? \(UIDNEXT 2 MESSAGES 1 UNSEEN 0 RECENT 1 '
                    rb"HIGHESTMODSEQ \d+\)\r\n", status), status
    tb.cmd("logout")
