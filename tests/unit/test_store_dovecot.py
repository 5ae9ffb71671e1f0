"""A Maildir that Dovecot served, built by hand, opens as it was and stays Dovecot's format."""

from __future__ import annotations

import os
from pathlib import Path

from mda.store import flags, keywords, subscriptions, uidlist
from mda.store.mailstore import MailStore

GUID = "8c2f6a1e5b4d3c2a1f0e9d8c7b6a5948"
M3 = "1500000001.M100P1.dovecot,S=30"
M5 = "1500000002.M200P1.dovecot,S=30,W=32"
M9 = "1500000003.M300P1.dovecot,S=30"
BODY = b"Subject: dovecot\n\n0123456789X\n"  # 30 bytes stored, 33 with CRLF
BODY5 = b"Subject: dovecot\n" + b"x" * 12 + b"\n"  # 30 bytes, 32 with CRLF (W=32)


def build(root: Path) -> None:
    for d in (root, root / ".Sent", root / ".Archive.2024"):
        for sub in ("cur", "new", "tmp"):
            os.makedirs(d / sub)
    (root / ".Sent" / "maildirfolder").write_bytes(b"")
    (root / ".Archive.2024" / "maildirfolder").write_bytes(b"")
    (root / "dovecot-uidlist").write_bytes(
        f"3 V1500000000 N12 G{GUID}\n"
        f"3 W33 :{M3}\n"
        f"5 W32 S30 :{M5}\n"
        f"9 :{M9}\n".encode())
    (root / "dovecot-keywords").write_bytes(b"0 $Junk\n1 project\n")
    (root / "cur" / f"{M3}:2,S").write_bytes(BODY)
    (root / "cur" / f"{M5}:2,Fa").write_bytes(BODY5)
    (root / "new" / M9).write_bytes(BODY)
    (root / "subscriptions").write_bytes(b"Sent\nArchive.2024\n")
    # Dovecot's own index files: a cache we leave alone.
    (root / "dovecot.index.log").write_bytes(b"\x01\x02binary")
    sent = root / ".Sent"
    (sent / "dovecot-uidlist").write_bytes(b"3 V1500000100 N3 G00ff\n2 :1500000100.M1P1.x\n")
    (sent / "dovecot-keywords").write_bytes(b"0 x\n1 sentkw\n")
    (sent / "cur" / "1500000100.M1P1.x:2,RSb").write_bytes(b"Subject: s\n\n")


def reparse(path: Path) -> uidlist.UidList:
    parsed = uidlist.parse((path / "dovecot-uidlist").read_bytes())
    assert parsed is not None and parsed[1] == 3
    return parsed[0]


def test_dovecot_maildir_opens_as_dovecot_left_it(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    build(root)
    with MailStore(root, default_folders=["Drafts"]) as store:
        assert not (root / ".Drafts").exists()  # an existing Maildir gets nothing added
        inbox = store.open_folder("INBOX", readonly=True)
        assert inbox.uidvalidity == 1500000000
        assert inbox.uids == [3, 5, 9]
        assert inbox.uidnext == 12
        assert inbox.flags(3) == {flags.SEEN}
        assert inbox.flags(5) == {flags.FLAGGED, "$Junk"}
        assert inbox.flags(9) == frozenset() and inbox.is_recent(9)
        assert inbox.keywords == ["$Junk", "project"]
        assert inbox.sizes([5]) == {5: 32}  # W= from the name, as Dovecot
        assert inbox.read(3) == BODY and len(BODY) == 30 and len(BODY5) == 30
        assert inbox.sizes([3, 9]) == {3: 33, 9: 33}
        sent = store.open_folder("Sent", readonly=True)
        assert (sent.uidvalidity, sent.uids, sent.uidnext) == (1500000100, [2], 3)
        assert sent.flags(2) == {flags.ANSWERED, flags.SEEN, "sentkw"}
        assert store.subscriptions() == ["Sent", "Archive/2024"]
        assert [f.name for f in store.list_folders()] == ["INBOX", "Archive", "Archive/2024",
                                                          "Sent"]
        status = store.status("INBOX")
        assert (status.messages, status.unseen, status.uidnext, status.uidvalidity) == (
            3, 2, 12, 1500000000)
        # Read-only: nothing on disk changed.
        assert sorted(os.listdir(root / "new")) == [M9]
        assert (root / "dovecot-uidlist").read_bytes().startswith(b"3 V1500000000 N12 ")


def test_after_our_changes_it_is_still_dovecot_format(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    build(root)
    with MailStore(root) as store:
        inbox = store.open_folder("INBOX")
        inbox.store([9], [flags.SEEN])
        inbox.store([3], ["project", "fresh"])
        inbox.store([5], [flags.DELETED])
        assert inbox.expunge().uids == [5]
        new_uid = store.append("INBOX", b"Subject: ours\r\n\r\nhi\r\n", [flags.DRAFT]).uid
        assert new_uid == 12  # Dovecot's N, not just last + 1
        store.subscribe("Drafts")
        archive = store.open_folder("Archive/2024")  # had no uidlist yet
        assert archive.uidvalidity > 0
    ul = reparse(root)
    assert (ul.uidvalidity, ul.guid) == (1500000000, GUID)
    assert ul.next_uid == 13 and ul.nextuid in (12, 13)
    assert list(ul.records) == [3, 9, 12]
    assert ul.records[3].base == M3 and ul.records[3].ext == "W33"
    assert ul.records[9].base == M9
    names = sorted(os.listdir(root / "cur"))
    assert f"{M3}:2,Sbc" in names and f"{M9}:2,S" in names
    assert any(n.startswith(ul.records[12].base) and n.endswith(":2,D") for n in names)
    assert os.listdir(root / "new") == []
    assert keywords.parse((root / "dovecot-keywords").read_bytes()) == {
        0: "$Junk", 1: "project", 2: "fresh"}
    assert (root / "subscriptions").read_bytes() == b"Sent\nArchive.2024\nDrafts\n"
    assert subscriptions.parse((root / "subscriptions").read_bytes()) == [
        "Sent", "Archive/2024", "Drafts"]
    archive_ul = reparse(root / ".Archive.2024")
    assert archive_ul.guid and not archive_ul.records
    # Ascending UIDs, header first, every line "<uid> [fields] :<base>": what Dovecot reads.
    lines = (root / "dovecot-uidlist").read_text().splitlines()
    assert lines[0].startswith("3 V1500000000 N")
    uids = [int(line.split(" ", 1)[0]) for line in lines[1:]]
    assert uids == sorted(uids) and all(" :" in line for line in lines[1:])
    assert not (root / "dovecot-uidlist.lock").exists()
    assert (root / "dovecot.index.log").read_bytes() == b"\x01\x02binary"


def test_dovecot_appended_records_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    build(root)
    with MailStore(root) as store:
        inbox = store.open_folder("INBOX")
        # Dovecot, running beside us, takes a delivery and appends its line.
        (root / "new" / "1500000009.M1P2.dovecot").write_bytes(b"X: y\n\n")
        with open(root / "dovecot-uidlist", "ab") as f:
            f.write(b"20 :1500000009.M1P2.dovecot\n")
        assert inbox.refresh().added == [20]
        assert inbox.uidnext == 21
        assert store.append("INBOX", b"z\r\n").uid == 21
