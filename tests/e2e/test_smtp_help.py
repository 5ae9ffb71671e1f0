"""HELP is answered 214 (RFC 5321 4.1.1.8), on SMTP and on the MDA's LMTP."""

from __future__ import annotations

import socket

from tests.e2e.smtpwire import Raw, smtp


def test_help_on_smtp_is_214(stack):
    c = smtp(stack)
    help_all = c.cmd(b"HELP")
    assert help_all.startswith(b"214 2.0.0 Supported commands: ")
    assert b" MAIL " in help_all and b" RCPT " in help_all
    assert c.cmd(b"HELP MAIL") == b"214 2.0.0 Syntax: MAIL FROM: <address>\r\n"
    assert c.cmd(b"HELP NOSUCH").startswith(b"501 5.5.4 Supported commands: ")
    # Only HELP's answer changed: the EHLO lines stay bare, NOOP says 250.
    assert c.cmd(b"EHLO client.example").startswith(b"250-mail.example.test\r\n")
    assert c.cmd(b"NOOP") == b"250 2.0.0 OK\r\n"
    assert c.cmd(b"QUIT").startswith(b"221")


def test_help_on_lmtp_is_214(stack):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(stack.lmtp_socket))
        c = Raw(s)
        assert c.reply().startswith(b"220")
        assert c.cmd(b"HELP").startswith(b"214 2.0.0 Supported commands: ")
        assert c.cmd(b"HELP LHLO") == b"214 2.0.0 Syntax: LHLO hostname\r\n"
