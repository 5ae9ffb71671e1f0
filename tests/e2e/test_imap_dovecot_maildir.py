"""A Maildir that Dovecot served, built by hand from its documented formats, is a drop-in:
same UIDVALIDITY, UIDs, flags, keywords and subscriptions; and it stays readable by Dovecot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from tests.conftest import ROOT

UIDVALIDITY = 1700000123
GUID = "0f0e0d0c0b0a09080706050403020100"
FILES = {  # base name -> (uid, info suffix)
    "1700000001.M1P100.oldhost,S=60,W=63": (5, ":2,S"),
    "1700000002.M2P100.oldhost,S=61,W=64": (7, ":2,FSb"),
    "1700000003.M3P100.oldhost,S=62,W=65": (9, ":2,"),
}


def build(maildir):
    for sub in ("cur", "new", "tmp", ".Archive/cur", ".Archive/new", ".Archive/tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (maildir / ".Archive" / "maildirfolder").write_bytes(b"")
    lines = [f"3 V{UIDVALIDITY} N12 G{GUID}"]
    for n, (base, (uid, info)) in enumerate(FILES.items()):
        (maildir / "cur" / (base + info)).write_bytes(
            f"Subject: old {n}\nFrom: a@b.test\n\nbody {n}\n".encode())
        lines.append(f"{uid} :{base}")
    (maildir / "dovecot-uidlist").write_text("\n".join(lines) + "\n")
    (maildir / "dovecot-keywords").write_text("0 $Forwarded\n1 Important\n")
    (maildir / "subscriptions").write_text("INBOX\nArchive\n")
    (maildir / ".Archive" / "dovecot-uidlist").write_text(f"3 V{UIDVALIDITY + 1} N1 G{GUID}\n")
    if os.geteuid() == 0:
        for p in [maildir.parent.parent, maildir.parent, maildir, *maildir.rglob("*")]:
            shutil.chown(p, "vmail", "vmail")


def test_a_dovecot_maildir_is_a_drop_in_and_stays_one(bare_stack):
    stack = bare_stack
    maildir = stack.maildir("alice@example.test")
    build(maildir)
    stack.start("mdad")
    c = stack.imap()
    typ, data = c.select("INBOX")
    assert data == [b"3"]
    assert c.response("UIDVALIDITY")[1] == [str(UIDVALIDITY).encode()]
    assert c.response("UIDNEXT")[1] == [b"12"]
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
    got = {int(re.search(rb"UID (\d+)", d).group(1)):
           set(re.search(rb"FLAGS \(([^)]*)\)", d).group(1).split()) for d in data}
    assert got == {5: {b"\\Seen"}, 7: {b"\\Flagged", b"\\Seen", b"Important"}, 9: set()}
    typ, data = c.lsub('""', "*")
    assert sorted(d.decode().rsplit(" ", 1)[1].strip('"') for d in data) == ["Archive", "INBOX"]
    assert c.status("Archive", "(UIDVALIDITY)")[1][0].endswith(
        f"(UIDVALIDITY {UIDVALIDITY + 1})".encode())
    # Our changes are written in Dovecot's forms: letters in the name, v3 uidlist.
    c.uid("STORE", "9", "+FLAGS", "(\\Answered Important)")
    c.append("INBOX", None, None, b"Subject: new\r\n\r\nx\r\n")
    c.logout()
    names = {p.name.split(":2,")[0]: p.name.split(":2,")[1] for p in (maildir / "cur").iterdir()}
    assert names["1700000003.M3P100.oldhost,S=62,W=65"] == "Rb"
    uidlist = (maildir / "dovecot-uidlist").read_text().splitlines()
    # New lines are appended as Dovecot does; the header's N may lag, never the UIDs.
    assert re.fullmatch(rf"3 V{UIDVALIDITY} N1[23] G{GUID}.*", uidlist[0])
    entries = dict(re.fullmatch(r"(\d+) (?:\S+ )*:(\S+)", line).groups() for line in uidlist[1:])
    assert {b: int(u) for u, b in entries.items()} == {
        **{b: u for b, (u, _) in FILES.items()},
        next(b for b in entries.values() if b not in FILES): 12,
    }
    assert "1 Important" in (maildir / "dovecot-keywords").read_text()


def test_reindex_rebuilds_the_index_with_the_same_uids(stack):
    from imapclient import IMAPClient

    from tests.conftest import PASSWORD
    with stack.smtp() as s:
        for n in range(3):
            s.sendmail("far@remote.test", ["alice@example.test"],
                       f"Subject: {n}\r\n\r\nx\r\n".encode())
    stack.wait_messages("alice@example.test", 3)

    def session():
        c = IMAPClient(*stack.address("imap"), ssl=False, timeout=30)
        c.login("alice@example.test", PASSWORD)
        return c, c.select_folder("INBOX")[b"UIDVALIDITY"]
    c, validity = session()
    c.add_flags([2], [b"\\Flagged"])

    def state(client):
        return {uid: sorted(f for f in d[b"FLAGS"] if f != b"\\Recent")
                for uid, d in client.fetch(client.search(), ["FLAGS"]).items()}
    before = state(c)
    assert before[2] == [b"\\Flagged"]
    r = subprocess.run([sys.executable, "-m", "mda.ctl", "-c", str(stack.config), "reindex",
                        "alice@example.test", "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '"INBOX": 3' in r.stdout
    maildir = stack.maildir("alice@example.test")
    assert (maildir / "mailpair-index.sqlite").stat().st_uid == maildir.stat().st_uid
    # The session that was open follows the new index; a new one sees the same.
    c.noop()
    assert state(c) == before
    d, validity2 = session()
    assert validity2 == validity and state(d) == before
