"""Messages in a folder: UIDs, flags and keywords, append, copy, move, expunge, reading."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mda.store import flags, keywords, maildir, uidlist
from mda.store.errors import InvalidFlag, MessageGone, ReadOnly, TooManyKeywords
from mda.store.mailstore import MailStore

FOLDERS = ["Sent", "Drafts", "Trash", "Junk", "Archive"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "Maildir"
    maildir.ensure_maildir(path, FOLDERS)
    return path


def deliver(root: Path, n: int) -> list[str]:
    return [maildir.deliver(root, f"Subject: {i}\r\n\r\nbody {i}\r\n".encode()) for i in range(n)]


def files(path: Path) -> list[str]:
    return sorted(os.listdir(path / "cur")) + sorted(os.listdir(path / "new"))


def uid_lines(path: Path) -> dict[int, str]:
    parsed = uidlist.parse((path / uidlist.NAME).read_bytes())
    assert parsed is not None
    return {u: r.base for u, r in parsed[0].records.items()}


def test_uids_stable_across_reopen_and_stores(root: Path) -> None:
    names = deliver(root, 3)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert folder.uids == [1, 2, 3]
        assert uid_lines(root) == {1: names[0], 2: names[1], 3: names[2]}
        uidvalidity = folder.uidvalidity
    with MailStore(root) as store, MailStore(root) as other:
        a, b = store.open_folder("INBOX"), other.open_folder("INBOX")
        assert a.uids == b.uids == [1, 2, 3]
        assert a.uidvalidity == b.uidvalidity == uidvalidity
        assert a.uidnext == 4


def test_copied_in_files_get_next_uids_in_delivery_order(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert folder.uids == [1, 2]
        later, earlier = "1900000000.M5P9.other,S=8", "1800000000.M7P9.other"
        (root / "new" / later).write_bytes(b"later\n\n")
        (root / "cur" / (earlier + ":2,S")).write_bytes(b"earlier\n")
        changes = folder.refresh()
        assert changes.added == [3, 4]
        assert uid_lines(root)[3] == earlier and uid_lines(root)[4] == later
        assert folder.flags(3) == {flags.SEEN} and folder.flags(4) == frozenset()
        assert folder.read(4) == b"later\n\n"
        assert folder.uidnext == 5


def test_flag_change_keeps_uid_and_other_session_sees_it(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as s1, MailStore(root) as s2:
        a, b = s1.open_folder("INBOX"), s2.open_folder("INBOX")
        result = a.store([1], [flags.SEEN, flags.FLAGGED, flags.ANSWERED, flags.DRAFT], "add")
        assert result.changed == {1: {flags.SEEN, flags.FLAGGED, flags.ANSWERED, flags.DRAFT}}
        name = [f for f in os.listdir(root / "cur") if uid_lines(root)[1] in f][0]
        assert name.endswith(":2,DFRS")  # sorted letters, as Maildir wants
        changes = b.refresh()
        assert changes.flags == [1] and not changes.added and not changes.expunged
        assert b.flags(1) == {flags.SEEN, flags.FLAGGED, flags.ANSWERED, flags.DRAFT}
        assert b.modseq(1) == result.modseq > b.modseq(2)
        a.store([1], [flags.FLAGGED], "remove")
        a.store([2], [flags.DELETED], "replace")
        assert b.refresh().flags == [1, 2]
        assert b.flags(1) == {flags.SEEN, flags.ANSWERED, flags.DRAFT}
        assert b.flags(2) == {flags.DELETED}
        assert uid_lines(root)[1] in name and len(uid_lines(root)) == 2
        assert not a.refresh()  # its own changes are not news to it


def test_keywords_use_letters_and_dovecot_keywords(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        folder.store([1], ["$Junk", "todo"])
        folder.store([2], ["TODO", flags.SEEN])  # keywords match without regard to case
        assert (root / "dovecot-keywords").read_text() == "0 $Junk\n1 todo\n"
        assert folder.flags(1) == {"$Junk", "todo"}
        assert folder.flags(2) == {"todo", flags.SEEN}
        assert sorted(n.split(":2,")[1] for n in os.listdir(root / "cur")) == ["Sb", "ab"]
        assert folder.keywords == ["$Junk", "todo"]
        folder.store([1], ["$junk"], "remove")
        assert folder.flags(1) == {"todo"}


def test_forwarded_is_maildir_p(root: Path) -> None:
    deliver(root, 1)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        folder.store([1], [flags.FORWARDED])
        assert os.listdir(root / "cur")[0].endswith(":2,P")
        assert folder.flags(1) == {flags.FORWARDED}
        assert not (root / "dovecot-keywords").exists()
        folder.store([1], [flags.FORWARDED], "remove")
        assert os.listdir(root / "cur")[0].endswith(":2,")


def test_27th_keyword_is_refused_and_nothing_changes(root: Path) -> None:
    deliver(root, 1)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        folder.store([1], [f"k{i}" for i in range(26)])
        before = files(root)
        assert not folder.can_create_keywords
        with pytest.raises(TooManyKeywords):
            folder.store([1], ["k26", flags.SEEN])
        assert files(root) == before
        assert flags.SEEN not in folder.flags(1)
        with pytest.raises(InvalidFlag):
            folder.store([1], ["\\Recent"])
        with pytest.raises(InvalidFlag):
            folder.store([1], ["two words"])


def test_unknown_letters_are_kept(root: Path) -> None:
    base = "1700000000.M1P1.host"
    (root / "cur" / f"{base}:2,SXz").write_bytes(b"x\n")
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert folder.flags(1) == {flags.SEEN}
        folder.store([1], [flags.SEEN], "replace")
        folder.store([1], [flags.FLAGGED])
        assert os.listdir(root / "cur") == [f"{base}:2,FSXz"]


def test_unchangedsince(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        first = folder.store([1], [flags.SEEN])
        result = folder.store([1, 2], [flags.FLAGGED], unchangedsince=first.modseq - 1)
        assert result.modified == [1] and set(result.changed) == {2}
        assert flags.FLAGGED not in folder.flags(1)


def test_recent_goes_to_the_first_session(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as s1, MailStore(root) as s2:
        assert s1.status("INBOX").recent == 2
        looker = s1.open_folder("INBOX", readonly=True)
        assert looker.recent_count == 2 and len(os.listdir(root / "new")) == 2
        first = s1.open_folder("INBOX")
        assert first.recent_count == 2 and first.is_recent(1)
        assert os.listdir(root / "new") == []
        assert all(n.endswith(":2,") for n in os.listdir(root / "cur"))
        second = s2.open_folder("INBOX")
        assert second.recent_count == 0
        deliver(root, 1)
        assert second.refresh().added == [3] and second.is_recent(3)
        assert first.refresh().added == [3] and not first.is_recent(3)
        assert s1.status("INBOX").recent == 0
        with pytest.raises(ReadOnly):
            looker.store([1], [flags.SEEN])
        with pytest.raises(ReadOnly):
            looker.expunge()


def test_append(root: Path) -> None:
    with MailStore(root) as store:
        data = b"Subject: sent\r\n\r\nline 1\r\nline 2\r\n"
        result = store.append("Sent", data, [flags.SEEN, "$label1"], internal_date=1_600_000_000)
        assert result.uid == 1
        assert result.uidvalidity == store.status("Sent").uidvalidity
        (name,) = os.listdir(root / ".Sent" / "cur")
        assert name.endswith(f",W={len(data)}:2,Sa")
        stored = root / ".Sent" / "cur" / name
        assert stored.read_bytes() == data.replace(b"\r\n", b"\n")
        assert int(stored.stat().st_mtime) == 1_600_000_000
        assert os.listdir(root / ".Sent" / "tmp") == []
        sent = store.open_folder("Sent")
        assert sent.internal_date(1) == 1_600_000_000
        assert sent.size(1) == len(data)
        assert sent.read_crlf(1) == data
        assert sent.flags(1) == {flags.SEEN, "$label1"}
        assert store.append("Sent", b"x\r\n").uid == 2
        assert sent.refresh().added == [2]
        status = store.status("Sent")
        assert (status.messages, status.unseen, status.uidnext) == (2, 1, 3)


def test_crlf_sizes_and_bytes(root: Path) -> None:
    deliver(root, 1)
    # A file copied in from elsewhere with CRLF lines: not doubled.
    (root / "new" / "1800000000.M1P1.cp").write_bytes(b"A: b\r\n\r\nx\r\ny\n")
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert folder.read(1) == b"Subject: 0\n\nbody 0\n"
        assert folder.read_crlf(1) == b"Subject: 0\r\n\r\nbody 0\r\n"
        assert folder.read_crlf(2) == b"A: b\r\n\r\nx\r\ny\r\n"
        assert folder.sizes() == {1: 22, 2: 14}
        assert folder.sizes() == {1: 22, 2: 14}  # from the index now


def test_first_sizes_follow_a_file_renamed_behind_the_index(root: Path, monkeypatch) -> None:
    # The first sizes of many messages open files at the paths of one index
    # query; one renamed meanwhile (another program set a flag) is looked up
    # again, and one deleted meanwhile is left out.
    for i in range(4):  # no S= in the names: sizes unknown until a file is read
        name = f"18000000{i:02d}.M1P1.cp"
        (root / "new" / name).write_bytes(b"Subject: %d\n\nbody %d\n" % (i, i))
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        real_paths_of = folder.paths_of

        def paths_then_change(uids):
            paths = real_paths_of(uids)
            os.rename(paths[2], paths[2].rsplit(":2,", 1)[0] + ":2,S")
            os.unlink(paths[3])
            return paths
        monkeypatch.setattr(folder, "paths_of", paths_then_change)
        sizes = folder.sizes()
        assert sizes == {1: 22, 2: 22, 4: 22}


def test_copy_and_move(root: Path) -> None:
    deliver(root, 3)
    with MailStore(root) as store:
        inbox = store.open_folder("INBOX")
        # Archive's letter a is another keyword than INBOX's.
        store.append("Archive", b"x\r\n", ["other"])
        inbox.store([1], ["important", flags.SEEN])
        copied = inbox.copy([1, 2, 99], "Archive")
        assert copied.pairs == [(1, 2), (2, 3)] and copied.missing == [99]
        assert copied.uidvalidity == store.status("Archive").uidvalidity
        archive = store.open_folder("Archive")
        assert archive.flags(2) == {"important", flags.SEEN}
        assert (root / ".Archive" / "dovecot-keywords").read_text() == "0 other\n1 important\n"
        assert archive.read(2) == inbox.read(1)
        src = [n for n in os.listdir(root / "cur") if uid_lines(root)[1] in n][0]
        dst = [n for n in os.listdir(root / ".Archive" / "cur") if uid_lines(root / ".Archive")[2]
               in n][0]
        assert os.stat(root / "cur" / src).st_ino == os.stat(root / ".Archive" / "cur" / dst).st_ino
        assert len(inbox) == 3

        moved = inbox.move([2, 3], "Trash")
        assert moved.pairs == [(2, 1), (3, 2)]
        assert moved.expunged == [2, 3] and moved.expunged_seqs == [3, 2]
        assert inbox.uids == [1]
        assert sorted(uid_lines(root)) == [1]
        assert store.status("Trash").messages == 2
        assert store.open_folder("Trash").read(2) == b"Subject: 2\n\nbody 2\n"


def test_expunge(root: Path) -> None:
    deliver(root, 5)
    with MailStore(root) as s1, MailStore(root) as s2:
        a, b = s1.open_folder("INBOX"), s2.open_folder("INBOX")
        a.store([2, 3, 5], [flags.DELETED])
        result = a.expunge(uids=[3, 4, 5])  # UID EXPUNGE: only \Deleted among these
        assert result.uids == [3, 5] and result.seqs == [5, 3]
        assert a.uids == [1, 2, 4]
        assert sorted(uid_lines(root)) == [1, 2, 4]
        assert a.expunge().uids == [2]
        # The other session keeps seeing them until it may be told.
        changes = b.refresh(allow_expunge=False)
        assert changes.expunged == [] and b.uids == [1, 2, 3, 4, 5]
        assert b.is_expunged(3)
        with pytest.raises(MessageGone):
            b.read(3)
        changes = b.refresh()
        assert changes.expunged == [2, 3, 5] and changes.expunged_seqs == [5, 3, 2]
        assert b.uids == [1, 4]
        # POP3 deletes what it was told to, whatever the flags.
        assert a.expunge([1], require_deleted=False).uids == [1]
        assert a.uids == [4] and len(files(root)) == 1
        # A UID never comes back, even if its file does.
        assert s1.append("INBOX", b"new\r\n").uid == 6


def test_external_changes_are_found(root: Path) -> None:
    names = deliver(root, 3)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")  # moves them to cur/
        cur = root / "cur"
        # mutt marks one seen, another program deletes one, another moves one back.
        os.rename(cur / f"{names[0]}:2,", cur / f"{names[0]}:2,S")
        os.unlink(cur / f"{names[1]}:2,")
        changes = folder.refresh()
        assert changes.flags == [1] and changes.expunged == [2]
        assert folder.flags(1) == {flags.SEEN}
        assert sorted(uid_lines(root)) == [1, 3]


def test_file_renamed_behind_the_index_is_still_read(root: Path) -> None:
    names = deliver(root, 1)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        # Renamed by another program after our last look (same mtime tick or not).
        os.rename(root / "cur" / f"{names[0]}:2,", root / "cur" / f"{names[0]}:2,F")
        assert folder.read(1) == b"Subject: 0\n\nbody 0\n"
        os.rename(root / "cur" / f"{names[0]}:2,F", root / "cur" / f"{names[0]}:2,FR")
        folder.store([1], [flags.SEEN])
        assert os.listdir(root / "cur") == [f"{names[0]}:2,FRS"]
        os.unlink(root / "cur" / f"{names[0]}:2,FRS")
        with pytest.raises(MessageGone):
            folder.read(1)


def test_deleted_uidlist_means_new_uidvalidity(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        old = folder.uidvalidity
        os.unlink(root / uidlist.NAME)
        changes = folder.refresh()
        assert changes.uidvalidity_changed and len(folder) == 0
        again = store.open_folder("INBOX")
        assert again.uidvalidity != old and again.uids == [1, 2]


def test_deleted_folder_is_gone_for_an_open_view(root: Path) -> None:
    with MailStore(root) as s1, MailStore(root) as s2:
        s1.append("Junk", b"x\r\n")
        view = s1.open_folder("Junk")
        s2.delete_folder("Junk")
        changes = view.refresh()
        assert changes.gone and changes.expunged == [1] and len(view) == 0


def test_keywords_helpers(tmp_path: Path) -> None:
    kw = keywords.Keywords(tmp_path)
    assert keywords.letters_for([flags.SEEN, "a1"], kw, create=False) == {"S"}
    assert keywords.letters_for([flags.SEEN, "a1"], kw, create=True) == {"S", "a"}
    assert keywords.letters_to_remove([flags.FORWARDED], kw) == {"P"}


def test_parsed_cache_lives_and_dies_with_the_message(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        folder.put_parsed(1, "envelope", b'("date" "subject")')
        folder.put_parsed_many("headers", {1: "{}", 2: '{"subject": "x"}'})
        assert folder.get_parsed(1, "envelope") == b'("date" "subject")'
        assert folder.get_parsed(2, "envelope") is None
        assert folder.get_parsed_many("headers") == {1: "{}", 2: '{"subject": "x"}'}
        copied = folder.copy([1], "Archive")
        archive = store.open_folder("Archive")
        assert archive.get_parsed(copied.pairs[0][1], "envelope") == b'("date" "subject")'
        folder.expunge([1], require_deleted=False)
        assert folder.get_parsed_many("headers") == {2: '{"subject": "x"}'}
        folder.put_parsed(1, "envelope", b"late")  # for a message already gone: dropped
        assert folder.get_parsed(1, "envelope") is None


def test_maildir_copied_wholesale_keeps_working(root: Path, tmp_path: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as store:
        store.open_folder("INBOX").store([2], [flags.SEEN])
    copy = tmp_path / "copy" / "Maildir"
    shutil.copytree(root, copy)
    with MailStore(copy) as store:
        folder = store.open_folder("INBOX")
        assert folder.uids == [1, 2] and folder.flags(2) == {flags.SEEN}


def test_expunged_since_and_base_names(root: Path) -> None:
    names = deliver(root, 3)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert [folder.base_name(u) for u in folder.uids] == names
        mark = folder.highestmodseq
        folder.expunge([2], require_deleted=False)
        assert folder.expunged_since(mark) == [2]
        assert folder.expunged_since(folder.highestmodseq) == []
        assert folder.expunged_since(0) is None  # older than what the index remembers
        with pytest.raises(MessageGone):
            folder.base_name(2)


def test_copies_carry_the_known_size_in_their_name(root: Path) -> None:
    deliver(root, 2)
    with MailStore(root) as store:
        folder = store.open_folder("INBOX")
        assert folder.size(1) == 22  # read once, now known
        folder.copy([1, 2], "Archive")
        names = sorted(os.listdir(root / ".Archive" / "cur"))
        assert sum(",W=22:2," in n for n in names) == 1
        assert sum(",W=" not in n for n in names) == 1
        assert store.open_folder("Archive").sizes() == {1: 22, 2: 22}
