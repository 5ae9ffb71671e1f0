"""Figure: a mail client's message list, as Thunderbird builds it.

Thunderbird's first sync of a folder fetches, for every message, its size,
flags and a list of header fields; mutt without a header cache does the
same at each open. Each run: the mailbox is emptied and --count messages
(~3 KB) are written into it (the shared harness's fill), the folder is
selected once (indexing, not timed), then timed one after the other:

  list_first   UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (...)])
  list_again   the same again, on the same connection

Times in seconds, imaplib's parsing included (the same client for every
server). Run by `make bench` (bench/run.py) against mailpair and Dovecot.
"""

from __future__ import annotations

import imaplib
import os
import sys
import time
from pathlib import Path

# The shared harness's helpers: where bench/run.py says, else beside the project.
sys.path.insert(0, os.environ.get("MAILPAIR_BENCH_SCRIPTS",
                                  str(Path(__file__).resolve().parents[2] / "shared" / "bench")))
import benchlib as B  # noqa: E402 - the shared harness, found through the path above

# Thunderbird 153's list (its IMAP log).
ITEMS = ("(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
         "Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type "
         "Reply-To)])")


def one_run(a) -> dict[str, float]:
    B.fill_maildir(a, a.user, a.count)
    client = imaplib.IMAP4(a.host, a.port, timeout=600)
    client.login(a.user, a.password)
    typ, data = client.select("INBOX")
    assert typ == "OK" and int(data[0]) >= a.count, (typ, data)
    out = {}
    for name in ("list_first", "list_again"):
        t0 = time.monotonic()
        typ, data = client.uid("FETCH", "1:*", ITEMS)
        out[name] = time.monotonic() - t0
        answered = sum(1 for x in data if isinstance(x, tuple))
        assert typ == "OK" and answered >= a.count, (name, typ, answered)
    client.logout()
    print("  " + " ".join(f"{k}={v:.3f}s" for k, v in out.items()), flush=True)
    return out


def main() -> None:
    ap = B.base_parser(__doc__)
    ap.add_argument("--port", type=int, default=143)
    ap.add_argument("--count", type=int, default=10000)
    a = B.finish_args(ap.parse_args())
    results: dict[str, list[float]] = {}
    for _ in range(a.runs):
        for k, v in one_run(a).items():
            results.setdefault(k, []).append(v)
    B.report(a, "imap_client_list", {"messages": a.count, "port": a.port},
             {k + "_s": v for k, v in results.items()})


if __name__ == "__main__":
    main()
