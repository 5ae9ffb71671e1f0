"""crashcount's arithmetic on Maildirs made by hand: lost, client-retry and daemon duplicates."""

from __future__ import annotations

from pathlib import Path

from tests.crash.count import count, scan
from tests.crash.load import Message, body


def put(root: Path, mailbox: str, m: Message, attempt: int, n: int) -> None:
    local, domain = mailbox.split("@")
    new = root / domain / local / "Maildir" / "new"
    new.mkdir(parents=True, exist_ok=True)
    (new / f"{1700000000 + n}.M{n}P1Q{n}.host,S=1").write_bytes(body(m, attempt))


def test_lost_and_both_kinds_of_duplicate(tmp_path: Path):
    a = Message("000001", ["team@example.test"])  # alice and bob
    a.tries, a.acked_at, a.acked_attempt = [1.0, 2.0], 2.5, 2
    b = Message("000002", ["carol@example.test"])
    b.tries, b.acked_at, b.acked_attempt = [1.0], 1.5, 1
    c = Message("000003", ["bob@example.test"])  # never acknowledged
    c.tries = [1.0]
    put(tmp_path, "alice@example.test", a, 1, 1)  # the try whose 250 was lost
    put(tmp_path, "alice@example.test", a, 2, 2)  # the retry: a client duplicate
    put(tmp_path, "bob@example.test", a, 2, 3)
    put(tmp_path, "bob@example.test", a, 2, 4)  # the same try twice: the daemon's
    put(tmp_path, "bob@example.test", c, 1, 5)
    # carol never got message 2: lost.
    other = tmp_path / "x.test" / "u" / "Maildir" / "new"
    other.mkdir(parents=True)
    (other / "1.M1P1Q1.h").write_bytes(b"Subject: not from crashload\n\n")

    rep = count([a, b, c], scan(tmp_path))
    assert (rep.sent, rep.tries, rep.acknowledged) == (3, 4, 2)
    assert (rep.expected, rep.delivered, rep.lost) == (3, 2, 1)
    assert rep.lost_pairs == [("000002", "carol@example.test")]
    assert rep.client_retry_duplicates == 1
    assert rep.daemon_duplicates == 1
    assert rep.daemon_duplicate_pairs == [("000001", "bob@example.test")]
    assert rep.unacknowledged_delivered == 1
