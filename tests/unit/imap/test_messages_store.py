"""STORE, COPY, MOVE and EXPUNGE over a real store: the edge cases (read-only
views, messages another session expunged, CONDSTORE answers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.imap.messages_kit import Box


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path / "Maildir")
    for i in range(1, 5):
        b.deliver(f"Subject: {i}\n\nbody {i}\n".encode())
    b.refresh()
    yield b
    b.close()


def test_store_answers_under_condstore(box: Box) -> None:
    folder = box.session.folder
    assert folder is not None
    box.session.condstore = True
    out = box.command(b"a UID STORE 1 +FLAGS (\\Seen)")
    assert out == [b"* 1 FETCH (FLAGS (\\Seen \\Recent) UID 1 MODSEQ (%d))\r\n" % folder.modseq(1),
                   b"a OK UID STORE completed\r\n"]
    base = folder.modseq(1)
    out = box.command(b"a STORE 1:3 (UNCHANGEDSINCE %d) FLAGS.SILENT (\\Answered)" % base)
    # 1 is at `base`, 2 and 3 below it: all three change, silently but with MODSEQ.
    assert [o.split(b" (")[0] for o in out[:-1]] == [b"* 1 FETCH", b"* 2 FETCH", b"* 3 FETCH"]
    assert all(b"FLAGS" not in o and b"MODSEQ (" in o for o in out[:-1])
    assert out[-1] == b"a OK STORE completed\r\n"
    out = box.command(b"a STORE 1:4 (UNCHANGEDSINCE %d) -FLAGS (\\Answered)" % base)
    assert out == [b"* 4 FETCH (FLAGS (\\Recent) MODSEQ (%d))\r\n" % folder.modseq(4),
                   b"a OK [MODIFIED 1:3] Some messages were changed since;"
                   b" they were left alone\r\n"]
    out = box.command(b"a UID STORE 3:4 (UNCHANGEDSINCE 1) +FLAGS.SILENT (\\Draft)")
    assert out[-1].startswith(b"a OK [MODIFIED 3:4]")


def test_store_without_condstore_has_no_modseq(box: Box) -> None:
    assert box.command(b"a STORE 2 +FLAGS (\\Flagged)") == [
        b"* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n", b"a OK STORE completed\r\n"]
    assert box.command(b"a STORE 2 -FLAGS.SILENT (\\Flagged)") == [b"a OK STORE completed\r\n"]
    assert not box.session.condstore
    box.command(b"a STORE 2 (UNCHANGEDSINCE 99999999999999) +FLAGS.SILENT (\\Seen)")
    assert box.session.condstore  # UNCHANGEDSINCE enables CONDSTORE


def test_store_on_messages_another_session_expunged(box: Box) -> None:
    other = box.open_session()
    assert other.folder is not None
    other.folder.expunge([2], require_deleted=False)
    out = box.command(b"a STORE 1:3 +FLAGS (\\Seen)")
    assert out == [b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n",
                   b"* 3 FETCH (FLAGS (\\Seen \\Recent))\r\n",
                   b"a OK [EXPUNGEISSUED] STORE completed;"
                   b" some messages were expunged meanwhile\r\n"]


def test_copy_of_messages_that_are_gone(box: Box) -> None:
    other = box.open_session()
    assert other.folder is not None
    other.folder.expunge([2], require_deleted=False)
    out = box.command(b"a COPY 1:3 Archive")
    assert out[-1].startswith(b"a OK [COPYUID ")
    assert b" 1,3 1:2] " in out[-1] and b"expunged meanwhile" in out[-1]
    # COPY may report the expunge (it is not FETCH, STORE or SEARCH).
    assert out[:-1] == [b"* 2 EXPUNGE\r\n"]
    other.folder.refresh()
    other.folder.expunge([3], require_deleted=False)
    out = box.command(b"a COPY 2 Archive")
    assert out == [b"* 2 EXPUNGE\r\n",
                   b"a NO [EXPUNGEISSUED] The messages were expunged meanwhile\r\n"]


def test_move_reports_moved_and_missing_messages_as_expunged(box: Box) -> None:
    other = box.open_session()
    assert other.folder is not None
    other.folder.expunge([3], require_deleted=False)
    out = box.command(b"a MOVE 2:4 Trash")
    assert out[0].startswith(b"* OK [COPYUID ") and out[0].endswith(b" 2,4 1:2] Moved\r\n")
    assert out[1:] == [b"* 4 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n",
                       b"a OK MOVE completed\r\n"]
    assert box.session.folder is not None and box.session.folder.uids == [1]


def test_read_only_view(box: Box) -> None:
    ro = box.open_session(readonly=True)
    for line in (b"a STORE 1 +FLAGS (\\Seen)", b"a EXPUNGE", b"a UID EXPUNGE 1",
                 b"a MOVE 1 Trash", b"a UID MOVE 1 Trash"):
        out = box.command(line, ro)
        assert out == [b"a NO The mailbox is open read-only (EXAMINE)\r\n"], line
    assert box.command(b"a COPY 1 Trash", ro)[-1].startswith(b"a OK [COPYUID ")
    assert box.command(b"a FETCH 1 (FLAGS)", ro) == [b"* 1 FETCH (FLAGS ())\r\n",
                                                    b"a OK FETCH completed\r\n"]
    assert box.command(b"a FETCH 1 (RFC822.TEXT)", ro)[0] == \
        b"* 1 FETCH (RFC822.TEXT {8}\r\nbody 1\r\n)\r\n"  # and no \Seen


def test_keyword_limit(box: Box) -> None:
    keywords = b" ".join(b"k%d" % i for i in range(26))
    assert box.command(b"a STORE 1 +FLAGS.SILENT (" + keywords + b")")[-1].startswith(b"a OK")
    out = box.command(b"a STORE 2 +FLAGS (extra)")
    assert out == [b"a NO [LIMIT] Too many keywords in this mailbox (Maildir allows 26)\r\n"]
    assert box.command(b"a STORE 2 +FLAGS (k25)")[-1] == b"a OK STORE completed\r\n"


def test_uid_expunge_only_in_its_set(box: Box) -> None:
    box.command(b"a STORE 1:4 +FLAGS.SILENT (\\Deleted)")
    assert box.command(b"a UID EXPUNGE 2,4:*") == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n",
                                                  b"a OK UID EXPUNGE completed\r\n"]
    assert box.command(b"a UID EXPUNGE 9") == [b"a OK UID EXPUNGE completed\r\n"]
    assert box.command(b"a EXPUNGE") == [b"* 2 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n",
                                         b"a OK EXPUNGE completed\r\n"]
