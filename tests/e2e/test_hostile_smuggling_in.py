"""Smuggling in: fake ends of DATA, bare CR and LF. One reading of every message.

The end of DATA is CRLF.CRLF and nothing else; a lone CR or LF becomes CRLF
before the message is stored, so the spool (what we relay), the Maildir and
what IMAP serves all hold the same lines, and none of them holds a second
transaction.
"""

from __future__ import annotations

import re
import socket

import pytest

from tests.conftest import wait_for

LONE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
SMUGGLED = (b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nwire the money\r\n")


def raw_session(stack, data: bytes) -> list[bytes]:
    """HELO..DATA on port 25, then `data` and QUIT in one write; every reply line."""
    with socket.create_connection(stack.address("smtp"), timeout=30) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"HELO client.remote.test\r\nMAIL FROM:<s@remote.test>\r\n"
                  b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        c.sendall(data + b"QUIT\r\n")
        return f.read().splitlines()


@pytest.mark.parametrize("fake_end", [b"\n.\r\n", b"\r.\r\n", b"\n.\n", b"\r.\r",
                                      b"\r\n.\n", b"\r\n.\r"])
def test_a_fake_end_of_data_smuggles_no_second_message(stack, fake_end):
    replies = raw_session(stack, b"Subject: cover\r\n\r\nhello" + fake_end + SMUGGLED
                          + b".\r\n")
    # One message, one 250; QUIT's 221; nothing for a smuggled MAIL, RCPT or DATA.
    assert [r[:3] for r in replies] == [b"250", b"221"], replies
    assert replies[0].startswith(b"250 2.0.0 Ok: queued as ")
    (msg,) = stack.wait_messages("alice@example.test", 1)
    # The would-be commands are lines of alice's message, ended as every line is.
    assert b"\nhello\n" in msg
    assert b"\nMAIL FROM:<ceo@bank.example>\nRCPT TO:<bob@example.test>\nDATA\n" in msg
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")
    assert stack.messages("bob@example.test") == []


MIXED = (b"Subject: mixed line ends\r\n\r\n"
         b"crlf\r\nlf only\ncr only\rcr cr\r\rlf lf\n\ncr lf split\r\r\n"
         b"..stuffed\r\n.\rdot cr\r\nend\r\n")
# What every reader sees: the dots unstuffed on SMTP lines, every line with CRLF.
CLEAN = (b"Subject: mixed line ends\r\n\r\n"
         b"crlf\r\nlf only\r\ncr only\r\ncr cr\r\n\r\nlf lf\r\n\r\ncr lf split\r\n\r\n"
         b".stuffed\r\n\r\ndot cr\r\nend\r\n")


def test_bare_cr_and_lf_are_stored_and_served_as_crlf(stack):
    replies = raw_session(stack, MIXED + b".\r\n")
    assert replies[0].startswith(b"250 2.0.0")
    stack.wait_messages("alice@example.test", 1)
    imap = stack.imap()
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK"
    served = data[0][1]
    imap.logout()
    assert served.endswith(b"\r\n" + CLEAN)
    assert LONE.search(served) is None


def test_what_waits_for_relay_has_only_crlf_lines(stack):
    """Mail for another domain waits in the spool (no DNS here): its bytes are what goes out."""
    with stack.submission("alice@example.test") as s:
        s.mail("alice@example.test")
        assert s.rcpt("rob@remote.test")[0] == 250
        s.putcmd("DATA")
        assert s.getreply()[0] == 354
        # As the client wrote it: smtplib's data() would stuff and fix the lines itself.
        s.send(b"Message-ID: <m@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
               + MIXED.replace(b"\r\n..stuffed", b"\r\n...stuffed") + b".\r\n")
        code, msg = s.getreply()
        assert code == 250, msg
    qid = msg.decode().rsplit(" ", 1)[1]
    spooled = (stack.root / "spool" / "queue" / f"{qid}.msg").read_bytes()
    received, _, rest = spooled.partition(b"\r\nMessage-ID: <m@x>\r\n")
    assert received.startswith(b"Received: from ") and f"id {qid}".encode() in received
    assert rest == b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" + CLEAN.replace(
        b"\r\n.stuffed", b"\r\n..stuffed")
    assert LONE.search(spooled) is None
