"""SMTP smuggling outbound: whatever a message holds, the next hop sees CRLF lines only.

A submitted body with `\\n.\\r\\n` followed by `MAIL FROM:<ceo@bank.example>`
must not end the data early at a lenient receiver (one that also ends lines
at a bare LF), which would then run the smuggled transaction as if we had
sent it, from our IP and with our SPF. The MX of remote.test here is a
recorder (tests/e2e/recorder.py) that is that lenient and keeps every byte.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from mta.queue import spool
from mta.queue.envelope import SMTP, Envelope, Recipient
from tests.conftest import wait_for
from tests.e2e.recorder import Recorder
from tests.e2e.remote import REMOTE_IP

ALICE, ROB = "alice@example.test", "rob@remote.test"

SMUGGLING = (
    b"From: alice@example.test\r\nTo: rob@remote.test\r\nSubject: invoice\r\n"
    b"Date: Wed, 02 Dec 2026 07:00:00 +0000\r\nMessage-ID: <smuggle@example.test>\r\n"
    b"\r\n"
    b"see below\n.\r\n"
    b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<rob@remote.test>\r\nDATA\r\n"
    b"From: ceo@bank.example\r\nSubject: pay now\r\n\r\nwire the money\r.\r\n"
    b"..\rdot and a bare CR\r\n"
    b"last line\r\n"
)


def normalized(message: bytes) -> bytes:
    """The rule, written out independently of the code: lone CR or LF -> CRLF."""
    out, i = bytearray(), 0
    while i < len(message):
        if message[i:i + 2] == b"\r\n":
            out += b"\r\n"
            i += 2
        elif message[i] in b"\r\n":
            out += b"\r\n"
            i += 1
        else:
            out.append(message[i])
            i += 1
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return bytes(out)


def strict_unstuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2 at a strict receiver: CRLF lines, one leading dot removed."""
    assert data.endswith(b"\r\n")
    lines = data[:-2].split(b"\r\n")
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def assert_clean_wire(wire: bytes) -> None:
    # Only CRLF ends a line, and nothing else on the wire holds a CR or an LF.
    assert b"\r" not in wire.replace(b"\r\n", b""), wire
    assert b"\n" not in wire.replace(b"\r\n", b""), wire
    # The data ends once, at its end: the recorder's QUIT comes right after.
    assert wire.count(b"\r\n.\r\n") == 1, wire
    assert wire.endswith(b"\r\n.\r\nQUIT\r\n"), wire[-200:]


@pytest.fixture
def recorder(net):
    rec = Recorder(REMOTE_IP, net.port).start()
    yield rec
    rec.stop()


def test_a_smuggled_transaction_in_a_submitted_body_never_reaches_the_next_hop(net, recorder):
    sender = net.start_sender()
    with sender.submission() as s:
        s.mail(ALICE)
        s.rcpt(ROB)
        # By hand: smtplib's data() would dot-stuff in its own way.
        code, _ = s.docmd("DATA")
        assert code == 354
        s.send(SMUGGLING.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, reply = s.getreply()
        assert code == 250, reply
    wait_for(lambda: recorder.wire and recorder.wire[0].endswith(b"QUIT\r\n"), 60,
             "the delivery to the recorder")
    (wire,) = recorder.wire
    assert_clean_wire(wire)
    # One transaction, from alice: the lenient receiver found no second MAIL FROM.
    assert len(recorder.transactions) == 1, recorder.transactions
    (mail_from, data), = recorder.transactions
    assert mail_from.startswith("<alice@example.test>")
    assert b"MAIL FROM:<ceo" not in wire.split(b"\r\nDATA\r\n", 1)[0]
    got = strict_unstuff(data)
    assert got.startswith(b"Received: ")
    assert got.endswith(normalized(SMUGGLING)), got
    # The lines that start with a dot kept it: two for "..\r" (one more was stuffed).
    assert b"\r\n..\r\n" in data and b"\r\n...\r\n" in data


def test_the_relay_normalizes_a_spool_file_with_bare_lf_and_cr(net, recorder):
    """An old spool file or a bounce may hold anything: the relay's own rule holds."""
    message = (b".first line has a dot\nSubject: old\n\nbare LF\n.\n"
               b"MAIL FROM:<ceo@bank.example>\rRCPT TO:<rob@remote.test>\r\n"
               b".\r..\rthe end without a newline")
    root = net.sender.root / "spool"
    spool.create_dirs(root)
    env = Envelope(id=spool.new_id(), sender=ALICE, created=time.time(),
                   recipients=[Recipient(address=ROB, original=ROB, route=SMTP)])
    spool.inject(root, env, message)
    if os.geteuid() == 0:  # the queue and relay run as the mta user
        for p in (root / spool.QUEUE).iterdir():
            shutil.chown(p, "mailpair", "mailpair")
    net.sender.start("mdad")
    net.sender.start("mtad")
    wait_for(lambda: recorder.wire and recorder.wire[0].endswith(b"QUIT\r\n"), 60,
             "the delivery to the recorder")
    (wire,) = recorder.wire
    assert_clean_wire(wire)
    assert len(recorder.transactions) == 1, recorder.transactions
    (_, data), = recorder.transactions
    assert data == (b"..first line has a dot\r\nSubject: old\r\n\r\nbare LF\r\n..\r\n"
                    b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<rob@remote.test>\r\n"
                    b"..\r\n...\r\nthe end without a newline\r\n")
    assert strict_unstuff(data) == normalized(message)
