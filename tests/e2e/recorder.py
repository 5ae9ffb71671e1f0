"""An MX host for outbound tests that records the exact bytes it was sent.

It answers like a lenient receiver (a line ends at LF, a CR before it is
dropped: what many servers did before the 2023 SMTP smuggling reports), so
a body that ends the data early shows up here as a second transaction: the
commands it saw are in `transactions`, the raw bytes of each connection in
`wire`. No STARTTLS, so what it records is what we put on the wire.
"""

from __future__ import annotations

import socket
import threading


class Recorder:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.5)
        self.wire: list[bytes] = []  # one entry per connection, appended to as it arrives
        # (MAIL FROM argument, data bytes as received, before any un-stuffing)
        self.transactions: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(30)
                try:
                    self._session(conn)
                except OSError:
                    pass

    def _session(self, conn: socket.socket) -> None:
        index = len(self.wire)
        self.wire.append(b"")
        buf = b""

        def line() -> bytes | None:
            nonlocal buf
            while b"\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                self.wire[index] += chunk
                buf += chunk
            raw, _, buf = buf.partition(b"\n")
            return raw

        conn.sendall(b"220 recorder ESMTP\r\n")
        mail_from = None
        while (raw := line()) is not None:
            cmd = raw.rstrip(b"\r").decode("utf-8", "replace")
            verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                conn.sendall(b"250-recorder\r\n250 8BITMIME\r\n")
            elif verb == "MAIL":
                mail_from = cmd.partition(":")[2]
                conn.sendall(b"250 ok\r\n")
            elif verb == "RCPT":
                conn.sendall(b"250 ok\r\n")
            elif verb == "DATA":
                conn.sendall(b"354 go\r\n")
                data = b""
                while (raw := line()) is not None and raw.rstrip(b"\r") != b".":
                    data += raw + b"\n"
                self.transactions.append((str(mail_from), data))
                conn.sendall(b"250 recorded\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")  # RSET, NOOP and whatever a smuggler sends
