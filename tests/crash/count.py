"""crashcount: what crashload's messages became, read from the Maildirs.

Expected: one copy of each acknowledged message in each mailbox its
recipients expand to. Per (message, mailbox) the copies are grouped by the
attempt number in them: copies of further attempts are "client retry"
duplicates (the client sent again after losing a 250, or after a 4xx that
came after some mailboxes were written); more than one copy of one attempt
is a "daemon" duplicate (the MTA handed it over again after a kill). A
missing copy of an acknowledged message is lost.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mda.store.sync import delivery_order
from tests.crash.load import Message

_TOKEN = re.compile(rb"^X-Crash-Token: (\d+)\r?$", re.M)
_ATTEMPT = re.compile(rb"^X-Crash-Attempt: (\d+)\r?$", re.M)


@dataclass
class Copy:
    token: str
    attempt: int
    mailbox: str
    written: float  # from the Maildir name: seconds.microseconds


@dataclass
class Report:
    sent: int = 0  # messages the clients had to send
    tries: int = 0  # SMTP transactions started, retries included
    acknowledged: int = 0
    refused: int = 0  # a 5xx answer (should not happen)
    expected: int = 0  # (message, mailbox) pairs for acknowledged messages
    delivered: int = 0  # of those, present at least once
    lost: int = 0
    client_retry_duplicates: int = 0
    daemon_duplicates: int = 0
    unacknowledged_delivered: int = 0  # copies of messages that never got a 250
    lost_pairs: list[tuple[str, str]] = field(default_factory=list)
    daemon_duplicate_pairs: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"sent            {self.sent} messages ({self.tries} SMTP tries)",
            f"acknowledged    {self.acknowledged} (refused: {self.refused})",
            f"expected        {self.expected} (message, mailbox) pairs",
            f"delivered       {self.delivered}",
            f"duplicates      {self.client_retry_duplicates + self.daemon_duplicates}"
            f" (client retry {self.client_retry_duplicates},"
            f" daemon {self.daemon_duplicates})",
            f"lost            {self.lost}",
        ]


def mailbox_of(path: Path, mail_root: Path) -> str:
    domain, local = path.relative_to(mail_root).parts[:2]
    return f"{local}@{domain}"


def scan(mail_root: Path) -> list[Copy]:
    copies = []
    for sub in ("new", "cur"):
        for f in mail_root.glob(f"*/*/Maildir/{sub}/*"):
            head = f.read_bytes()[:8192]
            t, a = _TOKEN.search(head), _ATTEMPT.search(head)
            if not t or not a:
                continue  # not crashload's (a bounce, say)
            secs, usecs, _ = delivery_order(f.name)
            copies.append(Copy(t.group(1).decode(), int(a.group(1)), mailbox_of(f, mail_root),
                               secs + usecs / 1e6))
    return copies


def count(messages: list[Message], copies: list[Copy]) -> Report:
    rep = Report(sent=len(messages), tries=sum(len(m.tries) for m in messages))
    by_pair: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for c in copies:
        by_pair[(c.token, c.mailbox)][c.attempt] += 1
    known = {m.token: m for m in messages}
    for m in messages:
        if m.refused:
            rep.refused += 1
        if m.acked_at is None:
            continue
        rep.acknowledged += 1
        for box in sorted(m.mailboxes):
            rep.expected += 1
            attempts = by_pair.get((m.token, box))
            if not attempts:
                rep.lost += 1
                rep.lost_pairs.append((m.token, box))
                continue
            rep.delivered += 1
            rep.client_retry_duplicates += len(attempts) - 1
            extra = sum(n - 1 for n in attempts.values())
            if extra:
                rep.daemon_duplicates += extra
                rep.daemon_duplicate_pairs.append((m.token, box))
    for (token, _box), attempts in by_pair.items():
        m = known.get(token)
        if m is None or m.acked_at is None:
            rep.unacknowledged_delivered += sum(attempts.values())
    return rep


def written_times(copies: list[Copy], token: str, mailbox: str) -> list[float]:
    return sorted(c.written for c in copies if c.token == token and c.mailbox == mailbox)
