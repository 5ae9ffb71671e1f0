"""Session rules over a fake maildrop and a fake password check: no sockets, no daemons."""

from __future__ import annotations

import asyncio
import base64

import pytest

from mda.pop3 import parser as P
from mda.pop3 import session as S
from mda.pop3.maildrop import InUse, dovecot_uidl
from mda.store.errors import MessageGone

USER, PASSWORD = "alice@example.test", "secret"
MESSAGES = {
    3: b"Subject: one\r\n\r\nbody\r\n",
    5: b"Subject: two\r\nX: y\r\n\r\n.starts with a dot\r\nline 2\r\n.\r\nline 4\r\n",
    9: b"Subject: no body and no line end",
}


class FakeAuth:
    failures_per_connection = 3

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.addresses: list[str] = []
        self.down = False

    async def check(self, user: str, password: str, *, authzid: str = "",
                    address: str = "") -> str | None:
        self.calls.append((user, password))
        self.addresses.append(address)
        if self.down:
            raise S.AuthUnavailable("auth process gone")
        if authzid and authzid != user:
            return None
        return USER if (user, password) == (USER, PASSWORD) else None


class FakeDrop:
    def __init__(self, store: dict[int, bytes]) -> None:
        self.store = store
        self.messages = [(uid, len(data)) for uid, data in sorted(store.items())]
        self.finished: list[tuple[list[int], list[int]]] = []
        self.reads: list[int] = []
        self.batches: list[list[int]] = []  # read_many calls
        self.closed = False

    def uidl(self, uid: int) -> str:
        return dovecot_uidl(uid, 0x5F3A1B2C)

    def read(self, uid: int) -> bytes:
        self.reads.append(uid)
        if uid not in self.store:
            raise MessageGone(str(uid))
        return self.store[uid]

    def read_many(self, uids: list[int]) -> dict[int, bytes]:
        self.batches.append(list(uids))
        self.reads.extend(uids)
        return {uid: self.store[uid] for uid in uids if uid in self.store}

    def finish(self, deleted: list[int], seen: list[int]) -> int:
        self.finished.append((deleted, seen))
        for uid in deleted:
            self.store.pop(uid, None)
        return len(deleted)

    def close(self) -> None:
        self.closed = True


LOOPS: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(autouse=True)
def _close_loops():
    yield
    while LOOPS:
        LOOPS.pop().close()


class Harness:
    def __init__(self, secure: bool = True, plaintext_anyway: bool = False,
                 busy: bool = False) -> None:
        self.auth = FakeAuth()
        self.drop = FakeDrop(dict(MESSAGES))
        self.opened: list[str] = []

        def opener(account: str) -> FakeDrop:
            self.opened.append(account)
            if busy:
                raise InUse("locked")
            return self.drop

        self.session = S.Session(self.auth, opener, secure=secure,
                                 plaintext_anyway=plaintext_anyway, peer="192.0.2.7")
        # One loop for the whole session, as in the server: reads ahead outlive a command.
        self.loop = asyncio.new_event_loop()
        LOOPS.append(self.loop)

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def __call__(self, line: bytes) -> bytes:
        ev = P.parse_line(line)
        if isinstance(ev, P.BadCommand):
            return self.session.bad_command(ev)
        return self.run(self.session.execute(ev))

    def login(self) -> bytes:
        assert self(b"USER " + USER.encode()) == b"+OK\r\n"
        return self(b"PASS " + PASSWORD.encode())


def lines(reply: bytes) -> list[bytes]:
    assert reply.endswith(b"\r\n.\r\n"), reply
    return reply.split(b"\r\n")[1:-2]


def test_user_pass_then_transaction() -> None:
    h = Harness()
    assert h.login() == b"+OK Logged in, 3 messages (115 octets).\r\n"
    assert h.session.state == S.TRANSACTION
    assert h.opened == [USER]
    assert h(b"STAT") == b"+OK 3 115\r\n"


def test_wrong_password_is_an_auth_error_and_the_third_closes() -> None:
    h = Harness()
    for i in range(3):
        assert h(b"USER " + USER.encode()) == b"+OK\r\n"
        reply = h(b"PASS wrong")
        assert reply.startswith(b"-ERR [AUTH] Authentication failed")
        assert h.session.closing == (i == 2)
    assert h.opened == []
    # The auth process is told who asks: it counts failures per address.
    assert h.auth.addresses == ["192.0.2.7"] * 3


def test_the_failure_limit_is_the_authenticators() -> None:
    h = Harness()
    h.auth.failures_per_connection = 1
    assert h(b"USER " + USER.encode()) == b"+OK\r\n"
    assert h(b"PASS wrong") == b"-ERR [AUTH] Authentication failed; too many failures, closing.\r\n"
    assert h.session.closing


def test_pass_without_user() -> None:
    h = Harness()
    assert h(b"PASS secret").startswith(b"-ERR No user name")
    assert h.auth.calls == []


def test_transaction_commands_before_login_are_refused() -> None:
    h = Harness()
    for line in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"UIDL", b"TOP 1 1", b"RSET"):
        assert h(line).startswith(b"-ERR"), line
    assert h.drop.finished == []


def test_user_and_pass_after_login_are_refused() -> None:
    h = Harness()
    h.login()
    assert h(b"USER bob").startswith(b"-ERR")
    assert h(b"PASS x").startswith(b"-ERR")
    assert h.auth.calls == [(USER, PASSWORD)]


def test_in_use_keeps_authorization_state() -> None:
    h = Harness(busy=True)
    assert h.login() == b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    assert h.session.state == S.AUTHORIZATION
    assert not h.session.closing


def test_auth_unavailable_is_sys_temp() -> None:
    h = Harness()
    h.auth.down = True
    assert h.login().startswith(b"-ERR [SYS/TEMP]")
    assert h.session.auth_failures == 0


def test_no_password_in_the_clear() -> None:
    h = Harness(secure=False)
    caps = lines(h(b"CAPA"))
    assert b"STLS" in caps and b"USER" not in caps
    assert not any(c.startswith(b"SASL") for c in caps)
    assert h(b"USER " + USER.encode()).startswith(b"-ERR [SYS/PERM] Use STLS first")
    assert h(b"PASS " + PASSWORD.encode()).startswith(b"-ERR [SYS/PERM]")
    assert h.session.auth_problem(P.Auth("PLAIN", "x")).startswith(b"-ERR [SYS/PERM]")
    assert h.auth.calls == []
    assert h.session.stls_problem() is None
    h.session.tls_started()
    caps = lines(h(b"CAPA"))
    assert b"STLS" not in caps and b"USER" in caps and b"SASL PLAIN" in caps
    assert h.login().startswith(b"+OK")


def test_loopback_may_send_passwords_in_the_clear_when_allowed() -> None:
    h = Harness(secure=False, plaintext_anyway=True)
    caps = lines(h(b"CAPA"))
    assert {b"STLS", b"USER", b"SASL PLAIN"} <= set(caps)
    assert h.login().startswith(b"+OK")


def test_capa_lists_the_extensions() -> None:
    h = Harness()
    caps = lines(h(b"CAPA"))
    assert caps == [b"CAPA", b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"AUTH-RESP-CODE",
                    b"USER", b"SASL PLAIN", b"IMPLEMENTATION mailpair"]
    h.login()
    caps = lines(h(b"CAPA"))
    assert b"USER" not in caps and b"UIDL" in caps and b"TOP" in caps
    assert h.session.stls_problem().startswith(b"-ERR")


def test_auth_plain() -> None:
    h = Harness()
    good = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert h.session.auth_problem(P.Auth("LOGIN")).startswith(b"-ERR Unsupported")
    assert h.session.auth_problem(P.Auth("PLAIN", good)) is None
    assert h.run(h.session.auth_plain("not base64!")).startswith(b"-ERR")
    assert h.run(h.session.auth_plain("=")).startswith(b"-ERR")
    other = base64.b64encode(f"bob@example.test\0{USER}\0{PASSWORD}".encode()).decode()
    assert h.run(h.session.auth_plain(other)).startswith(b"-ERR [AUTH]")
    assert h.run(h.session.auth_plain(good)).startswith(b"+OK Logged in")
    assert h.session.auth_problem(P.Auth("PLAIN", good)).startswith(b"-ERR Already")


def test_list_uidl_and_numbers() -> None:
    h = Harness()
    h.login()
    assert h(b"LIST") == (b"+OK 3 messages (115 octets)\r\n1 22\r\n2 61\r\n3 32\r\n.\r\n")
    assert h(b"LIST 2") == b"+OK 2 61\r\n"
    assert h(b"LIST 4") == b"-ERR There is no message 4.\r\n"
    assert h(b"LIST 0") == b"-ERR There is no message 0.\r\n"
    assert lines(h(b"UIDL")) == [b"1 000000035f3a1b2c", b"2 000000055f3a1b2c",
                                 b"3 000000095f3a1b2c"]
    assert h(b"UIDL 3") == b"+OK 3 000000095f3a1b2c\r\n"


def test_retr_byte_stuffs_and_ends_every_message_properly() -> None:
    h = Harness()
    h.login()
    assert h(b"RETR 1") == b"+OK 22 octets\r\nSubject: one\r\n\r\nbody\r\n.\r\n"
    assert h(b"RETR 2") == (b"+OK 61 octets\r\nSubject: two\r\nX: y\r\n\r\n..starts with a dot"
                            b"\r\nline 2\r\n..\r\nline 4\r\n.\r\n")
    assert h(b"RETR 3") == b"+OK 32 octets\r\nSubject: no body and no line end\r\n.\r\n"
    assert S.dot_stuffed(b".x\r\n") == b"..x\r\n.\r\n"
    assert S.dot_stuffed(b"") == b".\r\n"


def test_top() -> None:
    h = Harness()
    h.login()
    assert h(b"TOP 2 0") == b"+OK\r\nSubject: two\r\nX: y\r\n\r\n.\r\n"
    assert h(b"TOP 2 1") == b"+OK\r\nSubject: two\r\nX: y\r\n\r\n..starts with a dot\r\n.\r\n"
    assert h(b"TOP 2 100") == h(b"RETR 2").replace(b"+OK 61 octets", b"+OK")
    assert h(b"TOP 3 5") == b"+OK\r\nSubject: no body and no line end\r\n.\r\n"
    assert S.top_part(b"\r\nbody\r\nmore\r\n", 1) == b"\r\nbody\r\n"
    # TOP marks nothing \Seen.
    h(b"QUIT")
    assert h.drop.finished == [([], [5])]


def test_dele_rset_and_quit_deletes_in_update() -> None:
    h = Harness()
    h.login()
    assert h(b"DELE 1") == b"+OK Message 1 marked to be deleted.\r\n"
    assert h(b"DELE 1") == b"-ERR Message 1 is deleted.\r\n"
    assert h(b"RETR 1") == b"-ERR Message 1 is deleted.\r\n"
    assert h(b"LIST 1") == b"-ERR Message 1 is deleted.\r\n"
    assert h(b"STAT") == b"+OK 2 93\r\n"
    assert lines(h(b"LIST")) == [b"2 61", b"3 32"]
    assert lines(h(b"UIDL")) == [b"2 000000055f3a1b2c", b"3 000000095f3a1b2c"]
    assert h(b"RSET") == b"+OK 3 messages (115 octets).\r\n"
    assert h(b"STAT") == b"+OK 3 115\r\n"
    h(b"DELE 2")
    h(b"DELE 3")
    h(b"RETR 1")
    assert h.drop.finished == []  # nothing happens before QUIT
    assert h(b"QUIT") == b"+OK Logging out, 2 messages deleted.\r\n"
    assert h.session.state == S.UPDATE and h.session.closing
    assert h.drop.finished == [([5, 9], [3])]
    assert h.drop.closed


def test_a_dropped_session_deletes_nothing_but_marks_seen() -> None:
    h = Harness()
    h.login()
    h(b"RETR 2")
    h(b"DELE 1")
    h(b"DELE 2")
    h.run(h.session.close())
    assert h.drop.finished == [([], [5])]
    assert h.drop.closed
    assert set(h.drop.store) == {3, 5, 9}


def test_quit_before_login() -> None:
    h = Harness()
    assert h(b"QUIT") == b"+OK Logging out.\r\n"
    assert h.session.closing


def test_message_removed_by_another_session() -> None:
    h = Harness()
    h.login()
    del h.drop.store[5]  # an IMAP client expunged it meanwhile
    assert h(b"RETR 2") == b"-ERR Message 2 was removed by another session.\r\n"
    assert h(b"TOP 2 0").startswith(b"-ERR")
    assert h(b"LIST 2") == b"+OK 2 61\r\n"  # the snapshot still lists it
    h(b"DELE 2")
    assert h(b"QUIT").startswith(b"+OK")
    assert h.drop.finished == [([5], [])]


@pytest.mark.parametrize("line", [b"FOO", b"RETR x", b"STAT"])
def test_too_many_bad_commands_close(line: bytes) -> None:
    h = Harness()
    for _ in range(S.MAX_BAD - 1):
        assert h(line).startswith(b"-ERR")
        assert not h.session.closing
    assert h(line).endswith(b"-ERR Too many bad commands, closing the connection.\r\n")
    assert h.session.closing


def test_the_next_message_is_read_ahead_once() -> None:
    h = Harness()
    h.login()
    h(b"RETR 1")
    h(b"RETR 2")
    h(b"RETR 3")
    assert h.drop.reads == [3, 5, 9]
    h(b"RETR 1")  # out of order: read again
    assert h(b"RETR 3").startswith(b"+OK 32 octets")
    assert h.drop.reads == [3, 5, 9, 3, 5, 9]
    h(b"QUIT")
    assert h.drop.closed


def test_a_run_of_messages_is_read_ahead_in_a_few_calls() -> None:
    h = Harness()
    h.drop = FakeDrop({uid: b"Subject: %d\r\n\r\nbody\r\n" % uid for uid in range(1, 41)})
    h.login()
    for n in range(1, 41):
        assert h(b"RETR %d" % n).startswith(b"+OK")
    # One read for the first, then the rest in windows of READ_AHEAD_COUNT.
    assert h.drop.reads == list(range(1, 41))
    assert h.drop.batches == [list(range(2, 34)), list(range(34, 41))]
    assert S.READ_AHEAD_COUNT == 32


def test_read_ahead_holds_at_most_read_ahead_max_bytes(monkeypatch) -> None:
    monkeypatch.setattr(S, "READ_AHEAD_MAX", 100)
    h = Harness()
    h.drop = FakeDrop({uid: b"x" * 40 for uid in range(1, 8)})
    h.login()
    for n in range(1, 8):
        assert h(b"RETR %d" % n).startswith(b"+OK 40 octets")
    assert h.drop.batches == [[2, 3], [4, 5], [6, 7]]


def test_a_message_read_ahead_and_then_gone_or_deleted() -> None:
    h = Harness()
    h.login()
    del h.drop.store[5]
    assert h(b"RETR 1").startswith(b"+OK")  # reads 2 ahead, which fails
    assert h(b"RETR 2") == b"-ERR Message 2 was removed by another session.\r\n"
    h.drop.store[5] = MESSAGES[5]
    h(b"RETR 1")
    assert h(b"DELE 2").startswith(b"+OK")
    assert h(b"RETR 2") == b"-ERR Message 2 is deleted.\r\n"
    assert h(b"QUIT").startswith(b"+OK")
    assert h.drop.finished == [([5], [3])]
