"""dovecot-uidlist parsing and writing, keywords and subscriptions files, dot-locks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mda.store import keywords, subscriptions, uidlist
from mda.store.errors import LockTimeout, TooManyKeywords
from mda.store.lock import DotLock
from mda.store.uidlist import Record, UidList, UidListFile

DOVECOT = (
    b"3 V1700000000 N7 G0123456789abcdef0123456789abcdef X-future\n"
    b"2 :1700000001.M1P1.host,S=10\n"
    b"4 W1300 S1200 :1700000002.M2P1.host,S=1200,W=1300\n"
    b"6 G8d3f :1700000003.M3P1.host\n"
)


def test_parse_dovecot_v3() -> None:
    parsed = uidlist.parse(DOVECOT)
    assert parsed is not None
    ul, version, consumed = parsed
    assert version == 3 and consumed == len(DOVECOT)
    assert ul.uidvalidity == 1700000000
    assert ul.next_uid == 7
    assert ul.guid == "0123456789abcdef0123456789abcdef"
    assert ul.header_ext == ["X-future"]
    assert list(ul.records) == [2, 4, 6]
    assert ul.records[4].base == "1700000002.M2P1.host,S=1200,W=1300"
    assert ul.records[4].field("W") == "1300"
    assert ul.records[6].ext == "G8d3f"
    assert ul.uid_of("1700000003.M3P1.host") == 6
    # What we write keeps all of it.
    assert uidlist.serialize(ul) == DOVECOT


def test_parse_version_1_and_appended_records() -> None:
    ul, version, _ = uidlist.parse(b"1 1600000000 3\n1 a.host\n2 b.host:2,S\n")  # type: ignore[misc]
    assert version == 1 and ul.uidvalidity == 1600000000
    assert {r.base for r in ul.records.values()} == {"a.host", "b.host"}
    # Records appended after the header's N (Dovecot appends without rewriting it).
    ul, _, _ = uidlist.parse(b"3 V5 N2 Gaa\n1 :a\n2 :b\n3 :c\n")  # type: ignore[misc]
    assert ul.next_uid == 4
    assert uidlist.serialize(ul).startswith(b"3 V5 N4 Gaa\n")


def test_no_header_means_no_uidlist() -> None:
    for data in (b"", b"garbage\n1 :a\n", b"3 N5\n", b"3 V0 N1\n", b"1 x y\n", b"3 V5 N1"):
        assert uidlist.parse(data) is None


def test_garbage_lines_and_partial_last_line_are_skipped() -> None:
    data = (b"3 V9 N20 Gab\n1 :good\nnot a line\n0 :zero\n-3 :neg\n2 :\n3 :a/b\n"
            b"x :y\n4 :good\n5 :dup-uid\n5 :other\n6 :last-partial")
    ul, _, consumed = uidlist.parse(data)  # type: ignore[misc]
    assert [(r.uid, r.base) for r in ul.records.values()] == [(1, "good"), (5, "dup-uid")]
    assert consumed == data.rfind(b"\n") + 1


record_bases = st.text(
    alphabet=st.characters(blacklist_characters=":/\n\r\0 ", blacklist_categories=("Cs",)),
    min_size=1, max_size=30,
).filter(lambda b: b not in (".", ".."))
ext_fields = st.lists(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef", min_size=1, max_size=8),
    max_size=3,
).map(" ".join)


@st.composite
def uidlists(draw: st.DrawFn) -> UidList:
    ul = UidList(uidvalidity=draw(st.integers(1, 2**32 - 1)),
                 nextuid=draw(st.integers(1, 1000)),
                 guid=draw(st.text(alphabet="0123456789abcdef", max_size=32)))
    uid = 0
    for base in draw(st.lists(record_bases, max_size=20, unique=True)):
        uid += draw(st.integers(1, 50))
        ul.add(Record(uid, base, draw(ext_fields)))
    return ul


@given(uidlists())
def test_round_trip(ul: UidList) -> None:
    parsed = uidlist.parse(uidlist.serialize(ul))
    assert parsed is not None
    again, version, _ = parsed
    assert version == 3
    assert (again.uidvalidity, again.next_uid, again.guid) == (ul.uidvalidity, ul.next_uid, ul.guid)
    assert again.records == ul.records


def _not_a_record(line: bytes) -> bool:
    return uidlist.parse_record(os.fsdecode(line), 3) is None


junk_lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")).filter(
    _not_a_record), max_size=10)


@given(uidlists(), junk_lines, st.randoms())
def test_garbage_lines_are_ignored(ul: UidList, junk: list[bytes], rnd) -> None:
    lines = uidlist.serialize(ul).split(b"\n")[:-1]
    body = lines[1:]
    for j in junk:
        body.insert(rnd.randint(0, len(body)), j)
    parsed = uidlist.parse(b"\n".join([lines[0], *body]) + b"\n")
    assert parsed is not None
    assert parsed[0].records == ul.records


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    uidlist.parse(data)
    keywords.parse(data)
    subscriptions.parse(data)


def test_file_reads_only_what_was_appended(tmp_path: Path) -> None:
    path = tmp_path / uidlist.NAME
    path.write_bytes(b"3 V1 N3 Gab\n1 :a\n2 :b\n")
    f = UidListFile(tmp_path)
    first = f.read()
    assert first is not None and list(first.records) == [1, 2]
    with open(path, "ab") as out:  # another writer, as Dovecot appends
        out.write(b"3 :c\n4 :d")
    again = f.read()
    assert again is first and list(again.records) == [1, 2, 3]
    with open(path, "ab") as out:
        out.write(b"\n")
    assert list(f.read().records) == [1, 2, 3, 4]  # type: ignore[union-attr]
    # A rewrite (new inode) is read from the start.
    path.with_name("x").write_bytes(b"3 V1 N9 Gab\n8 :h\n")
    os.rename(path.with_name("x"), path)
    assert list(f.read().records) == [8]  # type: ignore[union-attr]
    f.close()


def test_append_after_a_torn_line_rewrites(tmp_path: Path) -> None:
    path = tmp_path / uidlist.NAME
    path.write_bytes(b"3 V1 N2 Gab\n1 :a\n2 :tor")
    f = UidListFile(tmp_path)
    ul = f.read()
    assert ul is not None
    pairs, added = ul.assign(["new"])
    assert pairs == [(2, "new")]
    f.append(ul, added)
    assert path.read_bytes() == b"3 V1 N3 Gab\n1 :a\n2 :new\n"
    f.close()


def test_keywords_file() -> None:
    assert keywords.parse(b"0 $Junk\n1 todo\n30 toohigh\nx bad\n1 dup\n2 $junk\n4 sp ace\n") == {
        0: "$Junk", 1: "todo"}
    assert keywords.serialize({1: "b", 0: "a"}) == b"0 a\n1 b\n"


def test_keywords_fill_all_26_then_refuse(tmp_path: Path) -> None:
    kw = keywords.Keywords(tmp_path)
    letters = kw.ensure([f"k{i}" for i in range(26)])
    assert sorted(letters.values()) == [chr(c) for c in range(ord("a"), ord("z") + 1)]
    assert kw.ensure(["K3"]) == {"K3": "d"}  # case-insensitive, no new entry
    with pytest.raises(TooManyKeywords):
        kw.ensure(["one-more"])
    assert len(keywords.parse((tmp_path / keywords.NAME).read_bytes())) == 26


def test_subscriptions_both_formats() -> None:
    v1 = b"Sent\nArchive.2024\nEntw&APw-rfe\ninbox\nTrash/\nSent\n\nbad.\xff\na/b\n"
    assert subscriptions.parse(v1) == ["Sent", "Archive/2024", "Entwürfe", "INBOX", "Trash", "a/b"]
    v2 = b"V\t2\n\nSent\nArchive\t2024\nEntw&APw-rfe\ttab\x01tin\n"
    assert subscriptions.parse(v2) == ["Sent", "Archive/2024"]
    assert subscriptions.serialize(["Archive/2024", "Entwürfe", "INBOX"]) == (
        b"Archive.2024\nEntw&APw-rfe\nINBOX\n")


def test_dot_lock_excludes_and_is_released(tmp_path: Path) -> None:
    target = tmp_path / "file"
    with DotLock(target) as held:
        assert held.path.exists()
        assert held.path.read_text().startswith(f"{os.getpid()}:")
        with pytest.raises(LockTimeout):
            DotLock(target, timeout=0.05).acquire()
    assert not (tmp_path / "file.lock").exists()


def test_release_leaves_a_lock_taken_over_by_another(tmp_path: Path) -> None:
    target = tmp_path / "file"
    lock = DotLock(target)
    lock.acquire()
    os.unlink(lock.path)
    lock.path.write_text("other\n")  # someone judged us stale and took it
    lock.release()
    assert lock.path.read_text() == "other\n"
