"""SEARCH over a real store: which keys open which files, the header cache,
decoded body text, ESEARCH and MODSEQ answers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from mda.imap import search_cmd
from mda.store.folder import Folder
from mda.store.message import parse
from tests.unit.imap.messages_kit import Box

PLAIN = b"From: Boss <boss@corp.example>\nSubject: Quarterly report\nX-Mood: sunny\n\nnumbers\n"
QP = (b"From: Zoe <zoe@example.net>\nSubject: =?ISO-8859-1?Q?caf=E9?=\nMIME-Version: 1.0\n"
      b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n"
      b"\nna=EFve cr=E8me br=FBl=E9e\n")
ATTACHED = b"""\
From: Max <max@example.net>
Subject: files
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

""" + base64.encodebytes("Grüße aus Köln".encode()) + b"""
--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

""" + base64.encodebytes(b"hidden-in-binary") + b"""
--b
Content-Type: message/rfc822

From: inner@example.org
Subject: forwarded thing

inner text
--b--
"""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path / "Maildir")
    for data in (PLAIN, QP, ATTACHED):
        b.deliver(data)
    b.refresh()
    yield b
    b.close()


def search(box: Box, program: bytes) -> bytes:
    out = box.command(b"a " + program)
    assert out[-1].startswith(b"a OK"), out
    assert len(out) == 2, out
    return out[0]


def no_files(monkeypatch) -> None:
    def refuse(self, uid):
        raise AssertionError("this SEARCH must not open a message")

    monkeypatch.setattr(Folder, "open_message", refuse)
    monkeypatch.setattr(search_cmd, "read_at", refuse)


def test_keys_on_flags_sizes_dates_and_numbers_open_no_file(box: Box, monkeypatch) -> None:
    box.command(b"a STORE 2 +FLAGS (\\Flagged $Todo)")
    # Sizes and dates of files delivered without ,W= are learnt once, then indexed.
    search(box, b"SEARCH LARGER 1 SINCE 1-Jan-2000")
    no_files(monkeypatch)
    assert search(box, b"SEARCH FLAGGED") == b"* SEARCH 2\r\n"
    assert search(box, b"SEARCH KEYWORD $todo") == b"* SEARCH 2\r\n"  # any case
    assert search(box, b"SEARCH RECENT UNFLAGGED") == b"* SEARCH 1 3\r\n"
    assert search(box, b"UID SEARCH UID 2:* NOT 3") == b"* SEARCH 2\r\n"
    assert search(box, b"SEARCH LARGER 200") == b"* SEARCH 2 3\r\n"
    assert search(box, b"SEARCH SINCE 1-Jan-2000 SMALLER 200") == b"* SEARCH 1\r\n"
    assert search(box, b"SEARCH BEFORE 1-Jan-2000") == b"* SEARCH\r\n"
    assert search(box, b"SEARCH OR 1 3") == b"* SEARCH 1 3\r\n"


def test_header_keys_read_only_headers_and_then_use_the_cache(box: Box, monkeypatch) -> None:
    def no_whole_reads(self, uid):
        raise AssertionError("a header SEARCH must not read whole messages")

    monkeypatch.setattr(Folder, "read", no_whole_reads)
    read_at = search_cmd.read_at

    def headers_only(folder, paths, uid, header_only):
        assert header_only, "a header SEARCH must not read whole messages"
        return read_at(folder, paths, uid, header_only)

    monkeypatch.setattr(search_cmd, "read_at", headers_only)
    assert search(box, b"SEARCH FROM BOSS@corp") == b"* SEARCH 1\r\n"
    assert search(box, b"SEARCH HEADER X-Mood SUN") == b"* SEARCH 1\r\n"
    assert search(box, b"SEARCH SUBJECT \"CAF\xc3\x89\"") == b"* SEARCH 2\r\n"  # decoded, any case
    assert search(box, b"SEARCH SENTBEFORE 1-Jan-2000") == b"* SEARCH\r\n"  # no Date: no match
    no_files(monkeypatch)
    assert search(box, b"SEARCH FROM max SUBJECT files") == b"* SEARCH 3\r\n"
    assert search(box, b"SEARCH OR TO nobody FROM zoe") == b"* SEARCH 2\r\n"


def test_the_header_cache_is_only_a_cache(box: Box) -> None:
    assert search(box, b"SEARCH SUBJECT report") == b"* SEARCH 1\r\n"
    folder = box.session.folder
    assert folder is not None
    cached = folder.get_parsed_many(search_cmd.CACHE_KEY)
    assert sorted(cached) == [1, 2, 3]
    folder.put_parsed_many(search_cmd.CACHE_KEY, {1: "not json", 2: "[]"})
    assert search(box, b"SEARCH SUBJECT report") == b"* SEARCH 1\r\n"
    assert search(box, b"SEARCH SUBJECT \"caf\xc3\xa9\"") == b"* SEARCH 2\r\n"


def test_body_and_text_keys_decode_the_text_parts(box: Box) -> None:
    assert search(box, b"SEARCH CHARSET UTF-8 BODY \"cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e\"") == \
        b"* SEARCH 2\r\n"
    assert search(box, b"SEARCH CHARSET UTF-8 BODY \"gr\xc3\x9c\xc3\x9fe AUS\"") == \
        b"* SEARCH 3\r\n"
    assert search(box, b"SEARCH BODY hidden-in-binary") == b"* SEARCH\r\n"
    assert search(box, b"SEARCH BODY \"forwarded thing\"") == b"* SEARCH 3\r\n"
    assert search(box, b"SEARCH BODY \"inner text\"") == b"* SEARCH 3\r\n"
    assert search(box, b"SEARCH BODY Quarterly") == b"* SEARCH\r\n"  # a header, not the body
    assert search(box, b"SEARCH TEXT Quarterly") == b"* SEARCH 1\r\n"
    assert search(box, b"SEARCH TEXT numbers") == b"* SEARCH 1\r\n"


def test_body_text_of_broken_encodings_does_not_raise() -> None:
    msg = parse(b"Content-Transfer-Encoding: base64\n\n!!!not base64 at all=\n")
    assert isinstance(search_cmd.body_text(msg), str)
    msg = parse(b"Content-Transfer-Encoding: quoted-printable\n\nbad =Z1 escape=\n")
    assert "bad" in search_cmd.body_text(msg)


def test_esearch_and_modseq(box: Box) -> None:
    assert search(box, b"UID SEARCH RETURN (MIN MAX COUNT) ALL") == \
        b'* ESEARCH (TAG "a") UID MIN 1 MAX 3 COUNT 3\r\n'
    assert search(box, b"SEARCH RETURN () NOT 2") == b'* ESEARCH (TAG "a") ALL 1,3\r\n'
    folder = box.session.folder
    assert folder is not None
    before = folder.highestmodseq
    box.command(b"a STORE 3 +FLAGS.SILENT (\\Seen)")
    after = folder.modseq(3)
    assert search(box, b"SEARCH MODSEQ %d" % (before + 1)) == b"* SEARCH 3 (MODSEQ %d)\r\n" % after
    assert box.session.condstore  # SEARCH MODSEQ enables CONDSTORE
    assert search(box, b"SEARCH RETURN (MIN) MODSEQ 1") == \
        b'* ESEARCH (TAG "a") MIN 1 MODSEQ %d\r\n' % folder.modseq(1)
    assert search(box, b"SEARCH MODSEQ %d" % (after + 1)) == b"* SEARCH\r\n"


def test_a_message_expunged_meanwhile_matches_no_text(box: Box) -> None:
    other = box.open_session()
    assert other.folder is not None
    other.folder.expunge([1], require_deleted=False)
    out = box.command(b"a SEARCH OR FROM boss FROM zoe")
    assert out == [b"* SEARCH 2\r\n", b"a OK SEARCH completed\r\n"]
    # It still has its sequence number and flags until the client may hear of it.
    assert search(box, b"SEARCH RECENT") == b"* SEARCH 1 2 3\r\n"
    assert box.command(b"a UID SEARCH ALL") == [b"* 1 EXPUNGE\r\n", b"* SEARCH 2 3\r\n",
                                                 b"a OK UID SEARCH completed\r\n"]
