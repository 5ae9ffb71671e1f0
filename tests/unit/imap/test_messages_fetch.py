"""FETCH over a real store: chunking, the parsed-data cache, header-only reads,
messages expunged by another session, and sequence-set resolution."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mda.imap import fetch_cmd
from mda.imap.msgset import InvalidSequence, resolve
from mda.imap.seqset import SequenceSet
from mda.store.folder import Folder
from tests.unit.imap.messages_kit import Box


def message(i: int, extra: str = "") -> bytes:
    return (f"From: Sender {i} <s{i}@example.net>\nSubject: number {i}\n{extra}\n"
            f"body of {i}\n").encode()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path / "Maildir")
    yield b
    b.close()


def filled(box: Box, n: int) -> Box:
    for i in range(1, n + 1):
        box.deliver(message(i))
    box.refresh()
    return box


def test_resolve_by_sequence_number_and_by_uid(box: Box) -> None:
    filled(box, 5)
    folder = box.session.folder
    assert folder is not None
    folder.expunge([2], require_deleted=False)  # UIDs 1 3 4 5
    seqs = SequenceSet.parse
    assert resolve(folder, seqs("2:*"), uid=False) == [(2, 3), (3, 4), (4, 5)]
    assert resolve(folder, seqs("*:3,1"), uid=False) == [(1, 1), (3, 4), (4, 5)]
    with pytest.raises(InvalidSequence):
        resolve(folder, seqs("3:5"), uid=False)
    assert resolve(folder, seqs("2"), uid=True) == []
    assert resolve(folder, seqs("2:4"), uid=True) == [(2, 3), (3, 4)]
    # "*" is the highest UID in use: 10:* is 5:10.
    assert resolve(folder, seqs("10:*"), uid=True) == [(4, 5)]
    assert resolve(folder, seqs("4294967295"), uid=True) == []


def test_resolve_on_an_empty_mailbox(box: Box) -> None:
    folder = box.session.folder
    assert folder is not None
    assert resolve(folder, SequenceSet.parse("1:*"), uid=False) == []
    assert resolve(folder, SequenceSet.parse("*"), uid=True) == []
    with pytest.raises(InvalidSequence):
        resolve(folder, SequenceSet.parse("1"), uid=False)
    assert box.command(b"a FETCH 1:* FLAGS") == [b"a OK FETCH completed\r\n"]
    assert box.command(b"a FETCH 1 FLAGS")[-1].startswith(b"a BAD")


def test_chunks_cover_every_message_in_order(box: Box, monkeypatch) -> None:
    monkeypatch.setattr(fetch_cmd, "CHUNK", 3)
    filled(box, 10)
    out = box.command(b"a FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert out[-1] == b"a OK FETCH completed\r\n"
    assert out[:-1] == [
        b"* %d FETCH (UID %d BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\nSubject: number %d\r\n\r\n)\r\n"
        % (i, i, 20 + len(str(i)), i) for i in range(1, 11)]


def test_a_chunk_ends_early_after_enough_bytes(box: Box, monkeypatch) -> None:
    monkeypatch.setattr(fetch_cmd, "CHUNK_BYTES", 1)  # one message per chunk
    filled(box, 4)
    box.runs = 0
    out = box.command(b"a FETCH 1:4 (BODY.PEEK[TEXT])")
    assert [o.split(b" FETCH")[0] for o in out[:-1]] == [b"* 1", b"* 2", b"* 3", b"* 4"]
    assert box.runs == 1 + 1 + 4  # updates, resolve, one chunk per message


def test_envelope_reads_only_the_header_then_comes_from_the_cache(box: Box,
                                                                 monkeypatch) -> None:
    filled(box, 3)

    def no_whole_reads(self, uid):
        raise AssertionError("ENVELOPE must not read a whole message")

    monkeypatch.setattr(Folder, "read", no_whole_reads)
    read_at = fetch_cmd.read_at

    def headers_only(folder, paths, uid, header_only):
        assert header_only, "ENVELOPE must not read a whole message"
        return read_at(folder, paths, uid, header_only)

    monkeypatch.setattr(fetch_cmd, "read_at", headers_only)
    first = box.command(b"a FETCH 1:* (ENVELOPE)")
    assert first[0] == (b'* 1 FETCH (ENVELOPE (NIL "number 1" (("Sender 1" NIL "s1" "example.net"))'
                        b' (("Sender 1" NIL "s1" "example.net"))'
                        b' (("Sender 1" NIL "s1" "example.net")) NIL NIL NIL NIL NIL))\r\n')

    def no_files(*args):
        raise AssertionError("a cached ENVELOPE must not open the message")

    monkeypatch.setattr(Folder, "open_message", no_files)
    monkeypatch.setattr(fetch_cmd, "read_at", no_files)
    assert box.command(b"a FETCH 1:* (ENVELOPE)") == first


def test_cached_items_survive_a_changed_file(box: Box) -> None:
    """Proof that the second FETCH uses the index: the file says otherwise now."""
    name = box.deliver(message(1, "Content-Type: text/html\n"))
    box.refresh()
    first = box.command(b"a FETCH 1 (ENVELOPE BODY BODYSTRUCTURE)")
    assert b'"number 1"' in first[0] and b'("TEXT" "HTML"' in first[0]
    (path,) = [p for p in (box.root / "cur").iterdir() if p.name.startswith(name)]
    st = path.stat()
    path.write_bytes(message(2, "Content-Type: image/png\n"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert box.command(b"a FETCH 1 (ENVELOPE BODY BODYSTRUCTURE)") == first


THUNDERBIRD = (b"BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority "
               b"X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)]")


def test_a_header_field_list_is_read_once_then_comes_from_the_cache(box: Box,
                                                                    monkeypatch) -> None:
    for i in (1, 2, 3):
        box.deliver(message(i, f"X-Priority: {i}\nReceived: from a.example\n"))
    box.refresh()
    first = box.command(b"a UID FETCH 1:* (UID RFC822.SIZE FLAGS " + THUNDERBIRD + b")")
    assert len(first) == 4 and first[-1].startswith(b"a OK")
    assert first[1].endswith(b"{69}\r\nFrom: Sender 2 <s2@example.net>\r\nSubject: number 2\r\n"
                             b"X-Priority: 2\r\n\r\n)\r\n")
    loose = box.command(b"b FETCH 2 (BODY.PEEK[HEADER.FIELDS.NOT (Received x-priority)])")

    def no_files(*args, **kwargs):
        raise AssertionError("a cached header-field list must not open the message")

    monkeypatch.setattr(Folder, "open_message", no_files)
    monkeypatch.setattr(fetch_cmd, "read_at", no_files)
    assert box.command(b"a UID FETCH 1:* (UID RFC822.SIZE FLAGS " + THUNDERBIRD + b")") == first
    again = box.command(b"b FETCH 2 (BODY.PEEK[HEADER.FIELDS.NOT (x-priority RECEIVED)])")
    assert again[0].split(b"]", 1)[1] == loose[0].split(b"]", 1)[1]  # the names as asked
    # The same names in another order and case are the same entry; a part of it too.
    part = box.command(b"c FETCH 2 (BODY.PEEK[HEADER.FIELDS.NOT (received X-PRIORITY)]<0.12>)")
    assert part[0] == (b"* 2 FETCH (BODY[HEADER.FIELDS.NOT (received X-PRIORITY)]<0> {12}\r\n"
                       b"From: Sender)\r\n")
    with pytest.raises(AssertionError, match="must not open"):
        box.command(b"d FETCH 2 (BODY.PEEK[HEADER.FIELDS (Subject)])")  # another list


def test_cached_header_fields_beside_other_items(box: Box) -> None:
    """The whole message and the MIME tree alongside a cached list answer as alone,
    and a cached list without PEEK still sets \\Seen."""
    filled(box, 2)
    alone = {n: box.command(b"a FETCH %d (BODY.PEEK[] BODYSTRUCTURE)" % n)[0] for n in (1, 2)}
    box.command(b"b FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)])")  # 1 cached, 2 not
    for n in (1, 2):
        section = f" BODY[HEADER.FIELDS (Subject)] {{21}}\r\nSubject: number {n}\r\n\r\n"
        both = box.command(b"c FETCH %d (BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (Subject)]"
                           b" BODYSTRUCTURE)" % n)[0]
        assert section.encode() in both
        assert both.replace(section.encode(), b"") == alone[n]
    seen = box.command(b"d FETCH 1 (BODY[HEADER.FIELDS (Subject)])")
    assert seen[0].endswith(b"Subject: number 1\r\n\r\n FLAGS (\\Seen \\Recent))\r\n")


def test_a_size_not_known_yet_is_counted_from_the_one_read(box: Box, monkeypatch) -> None:
    # Names without S= (written by another program): the size needs the file.
    for i in (1, 2, 3):
        name = f"17000000{i:02d}.M1P1.other"
        (box.root / "new" / name).write_bytes(b"Subject: s%d\n\nline\nline\n" % i)
    box.refresh()
    reads: list[int] = []
    read_at = fetch_cmd.read_at

    def counting(folder, paths, uid, header_only):
        reads.append(uid)
        return read_at(folder, paths, uid, header_only)

    def no_second_open(*args, **kwargs):
        raise AssertionError("the size must come from the read FETCH does anyway")

    monkeypatch.setattr(fetch_cmd, "read_at", counting)
    monkeypatch.setattr(Folder, "open_message", no_second_open)
    monkeypatch.setattr(Folder, "_open_at", no_second_open)
    out = box.command(b"a FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert [line.split(b" BODY")[0] for line in out[:3]] == [
        b"* %d FETCH (RFC822.SIZE 27" % n for n in (1, 2, 3)]
    assert reads == [1, 2, 3]
    assert box.command(b"b FETCH 1:* (RFC822.SIZE)")[:3] == [
        b"* %d FETCH (RFC822.SIZE 27)\r\n" % n for n in (1, 2, 3)]
    assert reads == [1, 2, 3]  # remembered: no file read for sizes alone


def test_sizes_alone_read_each_file_once(box: Box, monkeypatch) -> None:
    (box.root / "new" / "1700000001.M1P1.other").write_bytes(b"A: b\n\nx\n")
    box.refresh()

    def no_second_open(*args, **kwargs):
        raise AssertionError("the size must come from the read FETCH does")

    monkeypatch.setattr(Folder, "_open_at", no_second_open)
    assert box.command(b"a FETCH 1 (RFC822.SIZE)")[0] == b"* 1 FETCH (RFC822.SIZE 11)\r\n"


def test_one_thread_call_per_chunk(box: Box) -> None:
    filled(box, 1200)
    box.runs = 0
    out = box.command(b"a FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE INTERNALDATE)")
    assert len(out) == 1201
    assert box.runs == 1 + 1 + 3  # updates, resolve, 1200 messages in chunks of 500


def test_expunged_by_another_session_during_fetch_by_sequence_number(box: Box) -> None:
    filled(box, 3)
    other = box.open_session()
    assert other.folder is not None
    other.folder.expunge([2], require_deleted=False)
    out = box.command(b"a FETCH 1:3 (FLAGS BODY.PEEK[TEXT])")
    assert not any(o.endswith(b" EXPUNGE\r\n") for o in out)
    assert [o.split(b" FETCH")[0] for o in out[:-1]] == [b"* 1", b"* 3"]
    assert out[-1].startswith(b"a NO [EXPUNGEISSUED]")
    # What does not need the file is still answered.
    assert box.command(b"a FETCH 2 (UID FLAGS)") == [b"* 2 FETCH (UID 2 FLAGS (\\Recent))\r\n",
                                                     b"a OK FETCH completed\r\n"]
    # UID FETCH may announce the expunge first.
    out = box.command(b"a UID FETCH 1:* (UID)")
    assert out == [b"* 2 EXPUNGE\r\n", b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 3)\r\n",
                   b"a OK UID FETCH completed\r\n"]


def test_a_store_failure_is_a_no_and_not_a_crash(box: Box, monkeypatch) -> None:
    filled(box, 2)

    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Folder, "put_parsed_many", broken)
    out = box.command(b"a FETCH 1 (ENVELOPE)")
    assert out[-1].startswith(b"a NO [UNAVAILABLE]")
    monkeypatch.setattr(Folder, "store", broken)
    assert box.command(b"a FETCH 1 BODY[]")[-1].startswith(b"a NO [UNAVAILABLE]")


def test_seen_on_fetch_reports_modseq_under_condstore(box: Box) -> None:
    filled(box, 1)
    box.session.condstore = True
    out = box.command(b"a FETCH 1 (BODY[TEXT])")
    assert out[0].startswith(b"* 1 FETCH (BODY[TEXT] {11}\r\nbody of 1\r\n FLAGS (\\Seen \\Recent)"
                             b" MODSEQ (")
    assert box.command(b"a FETCH 1 (BODY[TEXT])")[0] == \
        b"* 1 FETCH (BODY[TEXT] {11}\r\nbody of 1\r\n)\r\n"


def test_read_header_stops_at_the_blank_line(box: Box, monkeypatch) -> None:
    monkeypatch.setattr(fetch_cmd, "HEADER_READ", 7)  # blank lines across reads
    long_header = "X-Long: " + "y" * 50 + "\n"
    box.deliver(message(1, long_header))
    box.deliver(b"\nonly a body\n")
    box.deliver(b"Subject: no body at all\n")
    box.refresh()
    folder = box.session.folder
    assert folder is not None
    # As stored (LF); FETCH turns it into CRLF.
    assert fetch_cmd.read_header(folder, 1) == (
        b"From: Sender 1 <s1@example.net>\nSubject: number 1\n" + long_header.encode() + b"\n")
    assert fetch_cmd.read_header(folder, 2) == b"\n"
    assert fetch_cmd.read_header(folder, 3) == b"Subject: no body at all\n"
