"""SMTP and LMTP by hand, for what smtplib will not send (a CR inside a command)."""

from __future__ import annotations

import socket


class Raw:
    """A client by hand: smtplib would not send a CR inside a command."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.f = sock.makefile("rb")

    def reply(self) -> bytes:
        lines = []
        while True:
            line = self.f.readline()
            assert line, "the server closed the connection"
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def cmd(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()


def smtp(stack) -> Raw:
    c = Raw(socket.create_connection(("127.0.0.1", stack.port("smtp")), timeout=30))
    assert c.reply().startswith(b"220")
    return c
