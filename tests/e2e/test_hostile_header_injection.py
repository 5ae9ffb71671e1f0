"""Header injection through SMTP and LMTP command arguments.

The EHLO name goes into our Received header, MAIL FROM into Return-Path,
RCPT TO into Received and Delivered-To. A bare CR in one of them used to
be kept, and over IMAP a client saw it as a new header line above our own
Received: a forged Authentication-Results. Every control character in
these arguments is now answered 501 5.5.2.
"""

from __future__ import annotations

import re
import socket

import pytest

from tests.conftest import wait_for
from tests.e2e.smtpwire import Raw, smtp

FORGED = b"Authentication-Results: mail.example.test; spf=pass; dkim=pass"


@pytest.mark.parametrize(("arg", "name"), [
    (b"a\r" + FORGED, "CR"), (b"a\x00b", "NUL"), (b"a\tb", "TAB"),
    (b"a\x7fb", "DEL"), (b"a\x1bb", "0x1B"),
])
def test_a_control_character_in_helo_or_ehlo_is_refused(stack, arg, name):
    c = smtp(stack)
    for verb in (b"EHLO", b"HELO"):
        assert c.cmd(verb + b" " + arg) == (
            f"501 5.5.2 Syntax error: control character ({name}) in {verb.decode()}\r\n"
        ).encode()
    # Refused, so no HELO yet: aiosmtpd asks for one.
    assert c.cmd(b"MAIL FROM:<x@example.net>").startswith(b"503 5.5.1 Error: send HELO first")
    assert c.cmd(b"EHLO client.example").startswith(b"250-")
    assert c.cmd(b"QUIT").startswith(b"221")


def test_a_bare_lf_ends_the_command_line_and_never_reaches_an_argument(stack):
    # aiosmtpd reads a command up to an LF: the rest is a command of its own.
    c = smtp(stack)
    c.sock.sendall(b"EHLO client.example\n" + FORGED + b"\r\n")
    assert c.reply().startswith(b"250-")
    assert c.reply().startswith(b'500 5.5.2 Error: command "AUTHENTICATION-RESULTS:"')
    assert c.cmd(b"QUIT").startswith(b"221")


def test_a_cr_in_mail_from_or_rcpt_to_is_refused_and_nothing_is_delivered(stack):
    c = smtp(stack)
    assert c.cmd(b"EHLO client.example").startswith(b"250-")
    assert c.cmd(b"MAIL FROM:<x@example.net>\r" + FORGED) == (
        b"501 5.5.2 Syntax error: control character (CR) in MAIL\r\n")
    # The transaction did not start.
    assert c.cmd(b"RCPT TO:<alice@example.test>").startswith(b"503 5.5.1 Error: need MAIL")
    assert c.cmd(b"MAIL FROM:<x@example.net> BODY=8BITMIME\tX=1").startswith(
        b"501 5.5.2 Syntax error: control character (TAB) in MAIL")
    assert c.cmd(b"MAIL FROM:<x@example.net>").startswith(b"250 ")
    assert c.cmd(b"RCPT TO:<alice@example.test>\rX-Spam-Status: No") == (
        b"501 5.5.2 Syntax error: control character (CR) in RCPT\r\n")
    assert c.cmd(b"DATA").startswith(b"503 5.5.1 Error: need RCPT command")
    assert c.cmd(b"QUIT").startswith(b"221")
    assert stack.messages("alice@example.test") == []


def test_what_a_client_sends_never_starts_a_header_line_above_ours(stack):
    """A hostile client tries each argument, then delivers with clean ones."""
    c = smtp(stack)
    assert c.cmd(b"EHLO a\r" + FORGED).startswith(b"501 5.5.2 ")
    assert c.cmd(b"EHLO client.example").startswith(b"250-")
    assert c.cmd(b"MAIL FROM:<x@example.net>\r" + FORGED).startswith(b"501 5.5.2 ")
    assert c.cmd(b"MAIL FROM:<x@example.net>").startswith(b"250 ")
    assert c.cmd(b"RCPT TO:<alice@example.test>\r" + FORGED).startswith(b"501 5.5.2 ")
    assert c.cmd(b"RCPT TO:<alice@example.test>").startswith(b"250 ")
    assert c.cmd(b"DATA").startswith(b"354")
    assert c.cmd(b"Subject: hello\r\n\r\nbody\r\n.").startswith(b"250 2.0.0 Ok: queued")
    c.cmd(b"QUIT")

    imap = stack.imap()
    imap.select("INBOX")
    wait_for(lambda: imap.noop() and imap.search(None, "ALL")[1][0], 60, "the delivery")
    typ, data = imap.fetch("1", "(BODY[HEADER])")
    assert typ == "OK"
    header = data[0][1]
    # Read as the most lenient client would: CR, LF or CRLF end a line.
    lines = re.split(rb"\r\n|\r|\n", header)
    assert lines[0] == b"Return-Path: <x@example.net>"
    assert lines[1] == b"Delivered-To: alice@example.test"
    assert lines[2] == b"Received: from client.example ([127.0.0.1])"
    assert re.fullmatch(rb"\tby mail\.example\.test \(mailpair\) with ESMTP id [0-9A-F]{17}",
                        lines[3]), lines[3]
    assert re.fullmatch(rb"\tfor <alice@example\.test>; .*", lines[4]), lines[4]
    assert lines[5] == b"Subject: hello"
    assert b"Authentication-Results" not in header
    imap.logout()


def test_lmtp_refuses_control_characters_in_lhlo_mail_and_rcpt(stack):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(stack.lmtp_socket))
        c = Raw(s)
        assert c.reply().startswith(b"220")
        assert c.cmd(b"LHLO a\r" + FORGED) == (
            b"501 5.5.2 Syntax error: control character (CR) in LHLO\r\n")
        assert c.cmd(b"LHLO mail.example.test").startswith(b"250-")
        assert c.cmd(b"MAIL FROM:<x@example.net>\r" + FORGED) == (
            b"501 5.5.2 Syntax error: control character (CR) in MAIL\r\n")
        assert c.cmd(b"MAIL FROM:<x@example.net>").startswith(b"250 ")
        assert c.cmd(b"RCPT TO:<alice@example.test>\x00") == (
            b"501 5.5.2 Syntax error: control character (NUL) in RCPT\r\n")
        assert c.cmd(b"QUIT").startswith(b"221")
