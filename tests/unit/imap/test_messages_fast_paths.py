"""FETCH and SEARCH shortcuts answer as the plain code would.

ENVELOPE from the few fields `FieldReader` finds equals ENVELOPE of the
whole parse; the search text FETCH and SEARCH store (`searchcache`) makes a
search answer what a message-by-message search of the parsed files answers,
whether nothing is cached yet, SEARCH cached it, or FETCH did; paths that
went stale fall back to the slow lookup.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mda.imap import commands as C
from mda.imap import fetch as F
from mda.imap import fetch_cmd, search_cmd, searchcache
from mda.imap.search import Searcher, decode_words, parse_sent_date
from mda.imap.searchkeys import And, DateKey, Flag, Header, Not, Or, SearchKey, Uid
from mda.imap.seqset import SequenceSet
from mda.store.folder import Folder
from mda.store.headerfields import decode_bytes
from mda.store.headerscan import FieldReader
from mda.store.index import FILE
from mda.store.message import parse, parse_header
from tests.unit.imap.messages_kit import Box
from tests.unit.test_header_fast_paths import address_lists, headers

READER = FieldReader(F.ENVELOPE_FIELDS)


@st.composite
def messages(draw) -> bytes:
    out = draw(headers())
    for name in draw(st.lists(st.sampled_from([b"From", b"To", b"Cc", b"Sender", b"Reply-To"]),
                              max_size=3)):
        out = name + b": " + draw(address_lists()) + b"\n" + out
    return out


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_envelope_from_a_few_fields_is_the_envelope_of_the_parse(data: bytes) -> None:
    expected = F.envelope(parse(data))
    assert F.envelope(READER.read(data)) == expected
    assert F.envelope(parse_header(data)) == expected
    assert F.envelope(READER.read(data)) == expected  # the remembered address lists too


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(messages(), st.binary(max_size=200)))
def test_search_text_is_stored_and_read_back(data: bytes) -> None:
    msg = parse(data)
    fields = searchcache.fields_of(msg)
    for name in searchcache.FIELDS:
        raw = [decode_bytes(v, None) for v in msg.get_all(name)]
        want = raw if name == "date" else [decode_words(v).casefold() for v in raw]
        assert fields[name] == want
    stored = searchcache.record(msg)
    assert searchcache.load(stored) == fields
    assert searchcache.record(FieldReader(searchcache.FIELDS).read(data)) == stored


@given(st.lists(st.text(alphabet="ab\x00\x01\x02{\"é", max_size=5), max_size=3),
       st.text(alphabet="ab\x00\x01é", max_size=3))
def test_a_needle_in_a_field_is_in_its_record(values: list[str], needle: str) -> None:
    fields = {name: list(values) if name == "subject" else [] for name in searchcache.FIELDS}
    stored = searchcache.encode(fields)
    assert searchcache.load(stored) == fields
    if any(needle in v for v in values):
        assert searchcache.may_contain(stored, needle)


def test_other_values_are_no_search_text() -> None:
    for value in (None, 3, b"x", "", "not json", "[]", '{"from": []}', "\x02a\x01b"):
        assert searchcache.load(value) is None


@given(st.binary(max_size=30))
def test_text_of_a_raw_value(raw: bytes) -> None:
    assert searchcache.text(raw) == decode_bytes(raw, None)


def test_decode_words_without_encoded_words_only_unfolds() -> None:
    assert decode_words("a\r\n b\n\tc") == "a b\tc"
    assert decode_words("=?utf-8?q?caf=C3=A9?= =?utf-8?q?!?=") == "café!"


# --- SEARCH over a store ------------------------------------------------------------

_SUBJECTS = ["Zebra crossing", "=?utf-8?q?Z=C3=A9bra?= news", "=?iso-8859-1?B?Y2Fm6Q==?=",
             "caf\xe9 au lait", "ZEBRA\x01ZEBRA", "nul\x00here", "", "  spaced   out  ",
             "=?bogus?q?zebra?=", "folded\n zebra tail", "ß and SS"]
_ADDRESSES = ["Ann <ann@zebra.example>", '"Doe, John" <jd@x.example>', "bob@y.example",
              "=?utf-8?q?J=C3=BCrgen?= <j@z.example>", "undisclosed-recipients:;",
              "root (Cron Daemon)", "Zoë <zoe@x.example>", "a@b, c@d, Zeb <z@e>"]
_DATES = ["Mon, 7 Feb 1994 21:52:25 -0800", "Tue, 1 Jul 2025 10:00:00 +0000", "garbage",
          "1 Jul 2025 23:30:00 -0400"]


def _corpus(n: int) -> list[bytes]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        lines = [f"Received: from host{i}\n\tby mx; {rng.choice(_DATES)}"]
        for name, pool in (("From", _ADDRESSES), ("To", _ADDRESSES), ("Cc", _ADDRESSES),
                           ("Bcc", _ADDRESSES), ("Subject", _SUBJECTS), ("Date", _DATES)):
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                lines.append(f"{rng.choice([name, name.upper(), name.lower()])}: "
                             f"{rng.choice(pool)}")
        rng.shuffle(lines)
        text = "\n".join(lines) + "\n\nbody zebra\n"
        out.append(text.encode("utf-8") if i % 3 else text.encode("latin-1", "replace"))
    return out


def _reference(folder: Folder, program: SearchKey) -> list[int]:
    """UIDs a message-by-message search of the parsed files finds."""

    class Target:
        def __init__(self, seq: int, uid: int) -> None:
            self.seq, self.uid = seq, uid
            self.msg = parse(folder.read(uid))
            self.flags = folder.flags(uid)

        def header(self, name: str) -> list[str]:
            return [decode_bytes(v, None) for v in self.msg.get_all(name)]

        def sent_date(self):  # noqa: ANN202
            values = self.header("date")
            return parse_sent_date(values[0]) if values else None

    uids = folder.uids
    searcher = Searcher(program, max_seq=len(uids), max_uid=uids[-1])
    return [u for i, u in enumerate(uids) if searcher.matches(Target(i + 1, u))]  # type: ignore[arg-type]


PROGRAMS: list[SearchKey] = [
    Header("SUBJECT", "zebra"), Header("SUBJECT", "ZÉBRA"), Header("SUBJECT", "café"),
    Header("SUBJECT", ""), Header("SUBJECT", "ss"), Header("SUBJECT", "\x01"),
    Header("SUBJECT", "spaced   out"), Header("SUBJECT", "zebra tail"),
    Header("FROM", "zebra"), Header("FROM", "doe, john"), Header("FROM", "jürgen"),
    Header("TO", "@"), Header("CC", "cron"), Header("BCC", "zeb <z@"), Header("FROM", ""),
    Header("DATE", "jul"), DateKey("since", date(2025, 7, 1), sent=True),
    DateKey("before", date(2000, 1, 1), sent=True), DateKey("on", date(2025, 7, 2), sent=True),
    And((Header("FROM", "ann"), Header("SUBJECT", "zebra"))),
    Or(Header("TO", "zoë"), Header("SUBJECT", "café")),
    Not(Header("SUBJECT", "zebra")),
    And((Uid(SequenceSet.parse("3:9")), Header("SUBJECT", "e"))),
    And((Flag("\\Seen", False), Header("CC", "a"))),
    Header("X-NOTHING", ""), Header("RECEIVED", "host1"),
]


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path / "Maildir")
    for data in _corpus(40):
        b.deliver(data)
    b.refresh()
    yield b
    b.close()


def _search(box: Box, program: SearchKey) -> list[int]:
    assert box.session.folder is not None
    found = search_cmd.run_search(box.session.folder, C.Search("a", program, uid=True))
    return found.numbers


def _forget(box: Box) -> None:
    with sqlite3.connect(box.root / FILE) as db:
        db.execute("DELETE FROM parsed")


def _no_reads(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("this must open no message")

    monkeypatch.setattr(search_cmd, "read_at", refuse)
    monkeypatch.setattr(Folder, "open_message", refuse)


@pytest.mark.parametrize("program", PROGRAMS, ids=repr)
def test_search_answers_as_the_parsed_files_do(box: Box, program: SearchKey,
                                              monkeypatch) -> None:
    folder = box.session.folder
    assert folder is not None
    expected = _reference(folder, program)
    _forget(box)
    assert _search(box, program) == expected  # nothing cached
    assert _search(box, program) == expected  # cached by that search, where it could
    _forget(box)
    box.command(b"a FETCH 1:* (ENVELOPE)")
    if search_cmd.Needs.of(program).cacheable:
        _no_reads(monkeypatch)
    assert _search(box, program) == expected  # cached by FETCH


def test_fetching_bodies_keeps_the_search_text(box: Box, monkeypatch) -> None:
    folder = box.session.folder
    assert folder is not None
    _forget(box)
    box.command(b"a FETCH 1:* (BODY.PEEK[])")
    assert sorted(folder.get_parsed_many(searchcache.KEY)) == folder.uids
    _forget(box)
    box.command(b"a FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)")
    assert sorted(folder.get_parsed_many(searchcache.KEY)) == folder.uids
    _no_reads(monkeypatch)
    assert _search(box, Header("SUBJECT", "zebra")) == _search(box, Header("SUBJECT", "zebra"))


def test_stale_paths_are_looked_up_again(box: Box, monkeypatch) -> None:
    folder = box.session.folder
    assert folder is not None
    program = Or(Header("SUBJECT", "zebra"), Header("FROM", "ann"))
    expected = _reference(folder, program)
    envelopes = box.command(b"a FETCH 1:* (ENVELOPE BODY.PEEK[])")
    monkeypatch.setattr(Folder, "paths_of",
                        lambda self, uids: {u: f"/nonexistent/{u}" for u in uids})
    _forget(box)
    assert _search(box, program) == expected
    _forget(box)
    assert box.command(b"a FETCH 1:* (ENVELOPE BODY.PEEK[])") == envelopes


def test_raw_sections_need_no_parse(box: Box, monkeypatch) -> None:
    box.command(b"a STORE 1:3 +FLAGS.SILENT (\\Seen)")  # so that RFC822 changes no flag
    whole = box.command(b"a FETCH 1:3 (BODY.PEEK[] RFC822 BODY.PEEK[]<2.5>)")
    assert box.session.folder is not None
    for line, uid in zip(whole[:-1], (1, 2, 3), strict=True):
        data = F.section(parse(box.session.folder.read(uid)))
        assert line.count(data) == 2 and b"BODY[]<2> {5}\r\n" + data[2:7] in line

    def no_parse(data):
        raise AssertionError("BODY[] must not be parsed")

    monkeypatch.setattr(fetch_cmd.message, "parse_header", no_parse)
    monkeypatch.setattr(fetch_cmd.message, "parse", no_parse)
    assert box.command(b"a FETCH 1:3 (BODY.PEEK[] RFC822 BODY.PEEK[]<2.5>)") == whole


def test_a_failed_search_text_write_does_not_fail_a_fetch(box: Box, monkeypatch) -> None:
    put = Folder.put_parsed_many

    def locked(self, key, values):
        if key == searchcache.KEY:
            raise sqlite3.OperationalError("database is locked")
        return put(self, key, values)

    monkeypatch.setattr(Folder, "put_parsed_many", locked)
    _forget(box)
    assert box.command(b"a FETCH 1:2 (BODY.PEEK[])")[-1] == b"a OK FETCH completed\r\n"


FIELD_NAMES = ["From", "to", "SUBJECT", "Date", "x-a", "Received", "Content-Type"]


@pytest.fixture
def one_box(tmp_path: Path) -> Iterator[Box]:
    """One store for all of a hypothesis test's examples, each delivering one more
    message: a store per example would make the test slower than it is useful."""
    b = Box(tmp_path / "Maildir")
    yield b
    b.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.one_of(messages(), st.binary(max_size=300)),
       names=st.lists(st.sampled_from(FIELD_NAMES), min_size=1, max_size=4),
       negate=st.booleans())
def test_cached_header_fields_answer_as_the_parsed_file(one_box: Box, data: bytes,
                                                       names: list[str], negate: bool) -> None:
    box = one_box
    box.deliver(data)
    box.refresh()
    folder = box.session.folder
    assert folder is not None
    uid = folder.uids[-1]
    text = "HEADER.FIELDS.NOT" if negate else "HEADER.FIELDS"
    expected = F.section(parse(folder.read(uid)), (), text, tuple(names))
    line = f"a UID FETCH {uid} (BODY.PEEK[{text} ({' '.join(names)})])".encode()
    for _ in ("computed", "cached"):
        out = box.command(line)
        assert out[-1].startswith(b"a OK"), out
        assert out[0].endswith(b"] {%d}\r\n" % len(expected) + expected + b")\r\n"), out[0]
