"""crashload: many clients sending numbered mail, retrying until each gets its 250.

Each message has a unique token (X-Crash-Token and its Message-ID) and each
try of it a number (X-Crash-Attempt), so crashcount can tell a copy the
client sent again after losing a 250 (another attempt number) from one the
daemons delivered twice (the same attempt twice). Half the clients use port
25 as another MTA would, half submission (587) with STARTTLS and AUTH.
Recipients are 1 to 5 of the book below, some of them aliases. Each client
keeps one connection (one listener, one login), as a real one would: idle
connections kept per listener would hold the server's per-address cap
(limits.connections_per_client) against the clients' own new ones.

What it records per message: the recipients, the mailboxes they expand to,
when each try began, and whether and when it got its 250. Connection errors
and 4xx replies are tried again with a short backoff; a daemon being
restarted may move its ports, so the address is asked for at each connect.
"""

from __future__ import annotations

import random
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Each address and the mailboxes it reaches (aliases as tests/conftest.py sets them).
BOOK: dict[str, tuple[str, ...]] = {
    "alice@example.test": ("alice@example.test",),
    "bob@example.test": ("bob@example.test",),
    "carol@example.test": ("carol@example.test",),
    "team@example.test": ("alice@example.test", "bob@example.test"),
    "postmaster@example.test": ("alice@example.test",),
}
LOGINS = ("alice@example.test", "bob@example.test", "carol@example.test")
MX, SUBMISSION = "smtp", "submission"
TIMEOUT = 60.0
GIVE_UP_AFTER = 600.0  # seconds of failed tries for one message


@dataclass
class Message:
    token: str
    rcpts: list[str]
    listener: str = MX  # set by the client that sends it
    login: str | None = None
    tries: list[float] = field(default_factory=list)  # when each attempt began
    acked_at: float | None = None  # the 250
    acked_attempt: int | None = None
    refused: str | None = None  # a 5xx: never tried again

    @property
    def mailboxes(self) -> set[str]:
        return {m for r in self.rcpts for m in BOOK[r]}


def make_messages(count: int, rng: random.Random) -> list[Message]:
    out = []
    for n in range(count):
        rcpts = rng.sample(sorted(BOOK), rng.randint(1, 5))
        out.append(Message(f"{n:06d}", rcpts))
    return out


def body(m: Message, attempt: int) -> bytes:
    sender = m.login or f"sender{m.token}@remote.test"
    return (f"From: <{sender}>\r\nTo: {', '.join(m.rcpts)}\r\n"
            f"Message-ID: <crash-{m.token}@remote.test>\r\nSubject: crash {m.token}\r\n"
            f"X-Crash-Token: {m.token}\r\nX-Crash-Attempt: {attempt}\r\n\r\n"
            f"message {m.token}, try {attempt}\r\n" + "filler line\r\n" * 20).encode()


class Load:
    """Sends messages from `clients` threads; address(listener) gives (host, port) now."""

    def __init__(self, messages: list[Message], clients: int,
                 address: Callable[[str], tuple[str, int]], password: str) -> None:
        self.messages = messages
        self.clients = clients
        self.address = address
        self.password = password
        self.acked = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._next = 0
        self._threads: list[threading.Thread] = []
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    def start(self) -> None:
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _take(self) -> Message | None:
        with self._lock:
            if self._next >= len(self.messages):
                return None
            m = self.messages[self._next]
            self._next += 1
            return m

    def _connect(self, m: Message) -> smtplib.SMTP:
        s = smtplib.SMTP(*self.address(m.listener), timeout=TIMEOUT)
        try:
            if m.listener == SUBMISSION:
                s.starttls(context=self.tls)
                s.login(m.login or "", self.password)
        except BaseException:
            s.close()
            raise
        return s

    def _client(self, i: int) -> None:
        rng = random.Random(i)
        # Even clients are other MTAs on 25; odd ones users on submission.
        listener = MX if i % 2 == 0 else SUBMISSION
        login = LOGINS[(i // 2) % len(LOGINS)] if listener == SUBMISSION else None
        conns: dict[tuple[str, str | None], smtplib.SMTP] = {}
        while (m := self._take()) is not None:
            m.listener, m.login = listener, login
            self._send(m, conns, rng)
        for s in conns.values():
            try:
                s.quit()
            except (OSError, smtplib.SMTPException):
                s.close()

    def _send(self, m: Message, conns: dict, rng: random.Random) -> None:
        key = (m.listener, m.login)
        first = time.time()
        pause = 0.1
        while time.time() - first < GIVE_UP_AFTER:
            attempt = len(m.tries) + 1
            m.tries.append(time.time())
            try:
                s = conns.get(key)
                if s is None:
                    s = conns[key] = self._connect(m)
                sender = m.login or f"sender{m.token}@remote.test"
                refused = s.sendmail(sender, m.rcpts, body(m, attempt))
                if refused:
                    raise smtplib.SMTPRecipientsRefused(refused)
                m.acked_at, m.acked_attempt = time.time(), attempt
                with self._lock:
                    self.acked += 1
                return
            except smtplib.SMTPResponseException as e:
                if 500 <= e.smtp_code < 600 and not isinstance(e, smtplib.SMTPServerDisconnected):
                    m.refused = f"{e.smtp_code} {e.smtp_error!r}"
                    return
                self._drop(conns, key)
            except smtplib.SMTPRecipientsRefused as e:
                codes = [c for c, _ in e.recipients.values()]
                if any(500 <= c < 600 for c in codes):
                    m.refused = repr(e.recipients)
                    return
                self._drop(conns, key)
            except (OSError, smtplib.SMTPException, AssertionError, KeyError, TypeError):
                # AssertionError/KeyError/TypeError: the daemon's state file is gone
                # or half written while it restarts.
                self._drop(conns, key)
            with self._lock:
                self.errors += 1
            time.sleep(pause * (0.5 + rng.random()))
            pause = min(pause * 2, 2.0)

    @staticmethod
    def _drop(conns: dict, key) -> None:
        s = conns.pop(key, None)
        if s is not None:
            s.close()
