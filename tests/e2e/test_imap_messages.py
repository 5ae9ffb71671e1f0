"""IMAP commands on messages against the real mdad: FETCH, STORE, SEARCH, COPY,
MOVE, EXPUNGE, CONDSTORE and ESEARCH, with raw lines where the exact bytes
matter and with imaplib and IMAPClient where a real client's view does."""

from __future__ import annotations

import imaplib
import re
import socket
from datetime import UTC, datetime

import pytest
from imapclient import IMAPClient

from tests.conftest import PASSWORD, Stack, wait_for
from tests.e2e.imapwire import read_response

ALICE = "alice@example.test"

# A known message (LF lines, as a client might send them; the server answers CRLF).
MIXED = b"""\
From: Alice Example <alice@example.test>
To: Bob <bob@example.test>, carol@example.test
Subject: Hello there
Date: Mon, 3 Feb 2020 10:00:00 +0000
Message-ID: <m1@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="XX"

--XX
Content-Type: text/plain; charset=utf-8

Hi Bob,
see the file.
--XX
Content-Type: application/octet-stream; name="a.bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="a.bin"

AAECAw==
--XX--
"""
MIXED_CRLF = MIXED.replace(b"\n", b"\r\n")
MIXED_ENVELOPE = (
    b'("Mon, 3 Feb 2020 10:00:00 +0000" "Hello there"'
    b' (("Alice Example" NIL "alice" "example.test"))'
    b' (("Alice Example" NIL "alice" "example.test"))'
    b' (("Alice Example" NIL "alice" "example.test"))'
    b' (("Bob" NIL "bob" "example.test")(NIL NIL "carol" "example.test"))'
    b' NIL NIL NIL "<m1@example.test>")'
)
MIXED_BODYSTRUCTURE = (
    b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 22 1 NIL NIL NIL NIL)'
    b'("APPLICATION" "OCTET-STREAM" ("NAME" "a.bin") NIL NIL "BASE64" 8 NIL'
    b' ("ATTACHMENT" ("FILENAME" "a.bin")) NIL NIL)'
    b' "MIXED" ("BOUNDARY" "XX") NIL NIL NIL)'
)
MIXED_BODY = (
    b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 22 1)'
    b'("APPLICATION" "OCTET-STREAM" ("NAME" "a.bin") NIL NIL "BASE64" 8) "MIXED")'
)


def simple(subject: str, sender: str = "someone@example.net", body: str = "hello",
           extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Date: Tue, 4 Feb 2020 09:00:00 +0000\r\n{extra}\r\n{body}\r\n").encode()


def when(day: str) -> datetime:
    """Noon UTC: the same calendar day in every server time zone within 11 hours."""
    return datetime.strptime(day + " 12:00", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


class Raw:
    """A line-level IMAP client: sends commands, returns every byte of the answer."""

    def __init__(self, stack: Stack, login: str | None = ALICE) -> None:
        self.sock = socket.create_connection(stack.address("imap"), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")
        self.n = 0
        if login:
            self.ok(f"LOGIN {login} {_quote(PASSWORD)}")

    def _response(self) -> bytes:
        return read_response(self.file)

    def cmd(self, text: str | bytes) -> tuple[list[bytes], bytes]:
        """(untagged responses, tagged response) of one command."""
        self.n += 1
        tag = b"t%d" % self.n
        line = text.encode() if isinstance(text, str) else text
        self.sock.sendall(tag + b" " + line + b"\r\n")
        untagged = []
        while True:
            resp = self._response()
            if resp.startswith(tag + b" "):
                return untagged, resp[len(tag) + 1 :]
            untagged.append(resp)

    def ok(self, text: str | bytes) -> list[bytes]:
        untagged, done = self.cmd(text)
        assert done.startswith(b"OK"), (text, untagged, done)
        return untagged

    def close(self) -> None:
        self.sock.close()


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def mdad(bare_stack: Stack) -> Stack:
    """Only mdad: messages go in by IMAP APPEND."""
    bare_stack.start("mdad")
    return bare_stack


def append(stack: Stack, *messages: bytes, flags: str = "", date: datetime | None = None,
           mailbox: str = "INBOX", recent: bool = False) -> None:
    """APPEND; then, unless recent, look at the mailbox once, so that the messages
    are no longer \\Recent for the sessions of the test (test_recent_... is about that)."""
    c = stack.imap(ALICE)
    for m in messages:
        typ, _ = c.append(mailbox, flags, imaplib.Time2Internaldate(date) if date else None, m)
        assert typ == "OK"
    if not recent:
        assert c.select(mailbox)[0] == "OK"
    c.logout()


def client(stack: Stack) -> IMAPClient:
    c = IMAPClient(*stack.address("imap"), ssl=False, timeout=30)
    c.login(ALICE, PASSWORD)
    return c


# -- FETCH ---------------------------------------------------------------------


def test_fetch_every_item_of_a_known_message(mdad):
    append(mdad, MIXED, flags="(\\Flagged $Work)", date=when("2020-02-03"))
    r = Raw(mdad)
    r.ok("SELECT INBOX")
    untagged = r.ok("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE UID)")
    assert len(untagged) == 1
    line = untagged[0]
    assert line.startswith(b"* 1 FETCH (FLAGS (")
    flags = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).split()
    assert sorted(flags) == [b"$Work", b"\\Flagged"]
    date = re.search(rb'INTERNALDATE "([^"]+)"', line).group(1).decode()
    parsed = datetime.strptime(date, "%d-%b-%Y %H:%M:%S %z")
    assert parsed == when("2020-02-03")
    assert b" RFC822.SIZE %d " % len(MIXED_CRLF) in line
    assert b" ENVELOPE " + MIXED_ENVELOPE + b" BODY " in line
    assert b" BODY " + MIXED_BODY + b" BODYSTRUCTURE " in line
    assert b" BODYSTRUCTURE " + MIXED_BODYSTRUCTURE + b" UID 1)\r\n" in line
    # The second time comes from the index cache and must be the same.
    again = r.ok("FETCH 1 (ENVELOPE BODYSTRUCTURE)")
    assert again == [b"* 1 FETCH (ENVELOPE " + MIXED_ENVELOPE + b" BODYSTRUCTURE "
                     + MIXED_BODYSTRUCTURE + b")\r\n"]
    # RFC822.SIZE is the size of what BODY[] sends.
    whole = r.ok("FETCH 1 (BODY.PEEK[] RFC822.SIZE)")
    assert whole == [b"* 1 FETCH (BODY[] {%d}\r\n" % len(MIXED_CRLF) + MIXED_CRLF
                     + b" RFC822.SIZE %d)\r\n" % len(MIXED_CRLF)]


def test_fetch_body_sections_and_partials(mdad):
    append(mdad, MIXED)
    r = Raw(mdad)
    r.ok("SELECT INBOX")

    def one(item: str) -> bytes:
        untagged = r.ok(f"FETCH 1 ({item})")
        assert len(untagged) == 1
        return untagged[0]

    assert one("BODY.PEEK[1]") == b"* 1 FETCH (BODY[1] {22}\r\nHi Bob,\r\nsee the file.)\r\n"
    assert one("BODY.PEEK[2]") == b"* 1 FETCH (BODY[2] {8}\r\nAAECAw==)\r\n"
    assert one("BODY.PEEK[HEADER.FIELDS (SUBJECT)]") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Hello there\r\n\r\n)\r\n")
    assert one("BODY.PEEK[HEADER.FIELDS.NOT (FROM TO DATE MESSAGE-ID MIME-VERSION"
               " CONTENT-TYPE)]") == (
        b"* 1 FETCH (BODY[HEADER.FIELDS.NOT (FROM TO DATE MESSAGE-ID MIME-VERSION"
        b" CONTENT-TYPE)] {24}\r\nSubject: Hello there\r\n\r\n)\r\n")
    assert one("BODY.PEEK[]<0.10>") == b"* 1 FETCH (BODY[]<0> {10}\r\nFrom: Alic)\r\n"
    assert one("BODY.PEEK[1]<4.100>") == b"* 1 FETCH (BODY[1]<4> {18}\r\nob,\r\nsee the file.)\r\n"
    assert one("BODY.PEEK[1]<500.10>") == b"* 1 FETCH (BODY[1]<500> {0}\r\n)\r\n"
    mime = (b'Content-Type: application/octet-stream; name="a.bin"\r\n'
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="a.bin"\r\n\r\n')
    assert one("BODY.PEEK[2.MIME]") == b"* 1 FETCH (BODY[2.MIME] {%d}\r\n" % len(mime) \
        + mime + b")\r\n"
    header = MIXED_CRLF[: MIXED_CRLF.index(b"\r\n\r\n") + 4]
    text = MIXED_CRLF[len(header) :]
    assert one("BODY.PEEK[HEADER]") == b"* 1 FETCH (BODY[HEADER] {%d}\r\n" % len(header) \
        + header + b")\r\n"
    assert one("RFC822.HEADER") == b"* 1 FETCH (RFC822.HEADER {%d}\r\n" % len(header) \
        + header + b")\r\n"
    assert one("BODY.PEEK[TEXT]") == b"* 1 FETCH (BODY[TEXT] {%d}\r\n" % len(text) \
        + text + b")\r\n"
    assert one("BODY.PEEK[3]") == b"* 1 FETCH (BODY[3] {0}\r\n)\r\n"  # no such part
    # Nothing so far set \Seen.
    assert one("FLAGS") == b"* 1 FETCH (FLAGS ())\r\n"
    # RFC822.TEXT does, and says so.
    assert one("RFC822.TEXT") == (b"* 1 FETCH (RFC822.TEXT {%d}\r\n" % len(text) + text
                                  + b" FLAGS (\\Seen))\r\n")


def test_seen_is_set_by_body_but_not_by_peek_nor_on_a_read_only_mailbox(mdad):
    append(mdad, simple("one"), simple("two"), simple("three"))
    r = Raw(mdad)
    r.ok("EXAMINE INBOX")
    r.ok("FETCH 1 BODY[]")
    assert r.ok("FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS ())\r\n"]
    r.ok("SELECT INBOX")
    peek = r.ok("FETCH 1 BODY.PEEK[]")
    assert b"FLAGS" not in peek[0]
    assert b"\\Seen" not in r.ok("FETCH 1 FLAGS")[0]
    body = r.ok("FETCH 1:2 (BODY[TEXT])")
    assert body == [b"* 1 FETCH (BODY[TEXT] {7}\r\nhello\r\n FLAGS (\\Seen))\r\n",
                    b"* 2 FETCH (BODY[TEXT] {7}\r\nhello\r\n FLAGS (\\Seen))\r\n"]
    # Already seen: no FLAGS added the second time.
    assert r.ok("FETCH 1 (BODY[TEXT])") == [b"* 1 FETCH (BODY[TEXT] {7}\r\nhello\r\n)\r\n"]
    assert r.ok("FETCH 3 RFC822")[0].endswith(b" FLAGS (\\Seen))\r\n")
    # Another client sees the change.
    c = client(mdad)
    c.select_folder("INBOX", readonly=True)
    assert all(b"\\Seen" in f[b"FLAGS"] for f in c.fetch([1, 2, 3], ["FLAGS"]).values())
    c.logout()


def test_sequence_sets_and_uid_fetch(mdad):
    append(mdad, *(simple(f"m{i}") for i in range(1, 6)))
    r = Raw(mdad)
    r.ok("SELECT INBOX")
    r.ok("STORE 2 +FLAGS (\\Deleted)")
    r.ok("EXPUNGE")  # UIDs now 1 3 4 5
    _, done = r.cmd("FETCH 5 FLAGS")
    assert done.startswith(b"BAD")
    _, done = r.cmd("FETCH 1:9 FLAGS")
    assert done.startswith(b"BAD")
    assert [x.split()[1] for x in r.ok("FETCH 3:* UID")] == [b"3", b"4"]
    assert r.ok("FETCH * UID") == [b"* 4 FETCH (UID 5)\r\n"]
    # UID FETCH: missing UIDs are ignored, UID is always in the answer.
    assert r.ok("UID FETCH 2:3 FLAGS") == [b"* 2 FETCH (UID 3 FLAGS ())\r\n"]
    assert r.ok("UID FETCH 2 FLAGS") == []
    # "*" is the highest UID in use, so 10:* still names the last message.
    assert r.ok("UID FETCH 10:* UID") == [b"* 4 FETCH (UID 5)\r\n"]
    assert [x.split()[1] for x in r.ok("UID FETCH 1:* RFC822.SIZE")] == [b"1", b"2", b"3", b"4"]


def test_fetch_with_imaplib_and_imapclient(stack):
    """A message delivered by SMTP, read by two real client libraries."""
    with stack.smtp() as s:
        s.sendmail("bob@example.net", [ALICE], simple("By SMTP", body="smtp body"))
    stack.wait_messages(ALICE, 1)
    c = stack.imap(ALICE)
    c.select("INBOX")
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)")
    assert typ == "OK"
    assert data[0][1] == b"Subject: By SMTP\r\n\r\n"
    size = int(re.search(rb"RFC822.SIZE (\d+)", data[0][0] + data[1]).group(1))
    typ, data = c.fetch("1", "(RFC822)")
    assert len(data[0][1]) == size and data[0][1].endswith(b"\r\n\r\nsmtp body\r\n")
    c.logout()
    ic = client(stack)
    ic.select_folder("INBOX")
    got = ic.fetch([1], ["ENVELOPE", "FLAGS", "INTERNALDATE"])[1]
    assert got[b"ENVELOPE"].subject == b"By SMTP"
    assert got[b"ENVELOPE"].from_[0].mailbox == b"someone"
    assert b"\\Seen" in got[b"FLAGS"]  # RFC822 above set it
    ic.logout()


# -- STORE -----------------------------------------------------------------------


def test_store_forms(mdad):
    append(mdad, simple("a"), simple("b"), simple("c"))
    r = Raw(mdad)
    r.ok("SELECT INBOX")
    assert r.ok("STORE 1:2 +FLAGS (\\Flagged $Work)") == [
        b"* 1 FETCH (FLAGS ($Work \\Flagged))\r\n",
        b"* 2 FETCH (FLAGS ($Work \\Flagged))\r\n"]
    assert r.ok("STORE 2 -FLAGS ($Work)") == [b"* 2 FETCH (FLAGS (\\Flagged))\r\n"]
    assert r.ok("STORE 3 FLAGS (\\Answered \\Draft)") == [
        b"* 3 FETCH (FLAGS (\\Answered \\Draft))\r\n"]
    assert r.ok("UID STORE 3 FLAGS.SILENT (\\Seen)") == []
    assert r.ok("UID STORE 1 +FLAGS.SILENT (\\Seen)") == []
    assert r.ok("UID STORE 1,3 -FLAGS (\\Seen)") == [
        b"* 1 FETCH (FLAGS ($Work \\Flagged) UID 1)\r\n",
        b"* 3 FETCH (FLAGS () UID 3)\r\n"]
    assert r.ok("UID STORE 99 +FLAGS (\\Seen)") == []
    _, done = r.cmd("STORE 4 +FLAGS (\\Seen)")
    assert done.startswith(b"BAD")
    _, done = r.cmd("STORE 1 +FLAGS (\\Recent)")
    assert done.startswith(b"BAD")
    r.ok("EXAMINE INBOX")
    _, done = r.cmd("STORE 1 +FLAGS (\\Seen)")
    assert done.startswith(b"NO")
    # What the files say, as another client reads it.
    c = client(mdad)
    c.select_folder("INBOX")
    flags = {m: set(v[b"FLAGS"]) for m, v in c.fetch([1, 2, 3], ["FLAGS"]).items()}
    assert flags == {1: {b"$Work", b"\\Flagged"}, 2: {b"\\Flagged"}, 3: set()}
    c.logout()


def test_too_many_keywords_is_refused_with_limit(mdad):
    append(mdad, simple("a"))
    r = Raw(mdad)
    r.ok("SELECT INBOX")
    r.ok("STORE 1 +FLAGS (" + " ".join(f"k{i}" for i in range(26)) + ")")
    _, done = r.cmd("STORE 1 +FLAGS (one-too-many)")
    assert done.startswith(b"NO [LIMIT]")
    r.ok("NOOP")  # the session goes on


# -- SEARCH ----------------------------------------------------------------------


def _search_corpus(stack: Stack) -> None:
    append(stack, simple("Quarterly report", sender="Boss <boss@corp.example>"),
           date=when("2021-01-10"))
    append(stack, simple("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", body="x" * 2000),
           date=when("2021-01-11"))
    append(stack, simple("lunch?", sender="Carol <carol@example.test>",
                         extra="Cc: boss@corp.example\r\nX-Mood: sunny\r\n"),
           flags="(\\Flagged)", date=when("2021-01-12"))
    append(stack, simple("REPORT draft", body="the secret word is xyzzy"),
           flags="(\\Seen $Todo)", date=when("2021-01-13"))


def test_search_keys(mdad):
    _search_corpus(mdad)
    c = mdad.imap(ALICE)
    c.select("INBOX")

    def found(*criteria: str, charset: str | None = None) -> list[int]:
        typ, data = c.search(charset, *criteria)
        assert typ == "OK"
        return [int(n) for n in data[0].split()]

    assert found("ALL") == [1, 2, 3, 4]
    assert found("FLAGGED") == [3]
    assert found("UNSEEN") == [1, 2, 3]
    assert found("SEEN", "KEYWORD", "$Todo") == [4]
    assert found("UNKEYWORD", "$Todo") == [1, 2, 3]
    assert found("SUBJECT", "report") == [1, 4]  # substring, any case
    assert found("FROM", "BOSS@corp") == [1]
    assert found("CC", "boss") == [3]
    assert found("HEADER", "X-Mood", "sun") == [3]
    assert found("BODY", "XYZZY") == [4]
    assert found("TEXT", "xyzzy") == [4]
    assert found("TEXT", "lunch") == [3]
    assert found("BEFORE", "11-Jan-2021") == [1]
    assert found("ON", "12-Jan-2021") == [3]
    assert found("SINCE", "12-Jan-2021") == [3, 4]
    assert found("SENTON", "4-Feb-2020") == [1, 2, 3, 4]
    assert found("LARGER", "1000") == [2]
    assert found("SMALLER", "1000") == [1, 3, 4]
    assert found("NOT", "FLAGGED", "NOT", "SEEN") == [1, 2]
    assert found("OR", "FLAGGED", "SEEN") == [3, 4]
    assert found("2:3") == [2, 3]
    assert found("UID", "3:*") == [3, 4]
    assert found("NEW") == []  # append() looked at them: none is \Recent
    typ, data = c.uid("SEARCH", "SUBJECT", "report")
    assert data == [b"1 4"]
    # The encoded-word subject, found by its UTF-8 text.
    c.literal = "Köln".encode()
    assert found("CHARSET", "UTF-8", "SUBJECT") == [2]
    c.literal = b"Koeln"
    assert found("CHARSET", "UTF-8", "SUBJECT") == []
    c.literal = "GRÜßE".encode()
    assert found("CHARSET", "UTF-8", "SUBJECT") == [2]
    c.logout()


def test_search_unsupported_charset_and_imapclient(mdad):
    _search_corpus(mdad)
    r = Raw(mdad)
    r.ok("SELECT INBOX")
    _, done = r.cmd("SEARCH CHARSET KOI8-R ALL")
    assert done.startswith(b"NO [BADCHARSET")
    c = client(mdad)
    c.select_folder("INBOX")
    assert c.search(["SUBJECT", "Köln"], charset="UTF-8") == [2]
    assert c.search(["OR", "FROM", "carol", "BODY", "secret"]) == [3, 4]
    c.logout()


def test_esearch_return_options(mdad):
    _search_corpus(mdad)
    r = Raw(mdad)
    r.ok("SELECT INBOX")
    assert r.ok("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN") == [
        b'* ESEARCH (TAG "t3") MIN 1 MAX 3 ALL 1:3 COUNT 3\r\n']
    assert r.ok("UID SEARCH RETURN (COUNT) SUBJECT report") == [
        b'* ESEARCH (TAG "t4") UID COUNT 2\r\n']
    assert r.ok("UID SEARCH RETURN () 1,3:4") == [b'* ESEARCH (TAG "t5") UID ALL 1,3:4\r\n']
    assert r.ok("SEARCH RETURN (MIN MAX) SUBJECT nothing-like-this") == [
        b'* ESEARCH (TAG "t6")\r\n']


# -- CONDSTORE -------------------------------------------------------------------


def test_condstore_modseq_changedsince_unchangedsince(mdad):
    append(mdad, simple("a"), simple("b"), simple("c"))
    r = Raw(mdad)
    assert r.ok("ENABLE CONDSTORE") == [b"* ENABLED CONDSTORE\r\n"]
    r.ok("SELECT INBOX")
    lines = r.ok("FETCH 1:* (MODSEQ)")
    modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", x).group(1)) for x in lines]
    assert len(modseqs) == 3
    base = max(modseqs)
    # STORE answers MODSEQ; the new one is above all before.
    stored = r.ok("STORE 2 +FLAGS (\\Flagged)")
    m2 = int(re.search(rb"MODSEQ \((\d+)\)", stored[0]).group(1))
    assert stored[0].startswith(b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ (") and m2 > base
    # CHANGEDSINCE: only message 2, with MODSEQ added.
    assert r.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {base})") == [
        b"* 2 FETCH (FLAGS (\\Flagged) MODSEQ (%d))\r\n" % m2]
    assert r.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m2})") == []
    # UNCHANGEDSINCE: 2 changed after `base`, so it is left alone and reported.
    untagged, done = r.cmd(f"STORE 1:3 (UNCHANGEDSINCE {base}) +FLAGS.SILENT (\\Seen)")
    assert done.startswith(b"OK [MODIFIED 2]")
    # .SILENT under CONDSTORE still reports the new MODSEQ of what changed.
    assert [x.split(b" FETCH ")[0] for x in untagged] == [b"* 1", b"* 3"]
    assert all(b"MODSEQ (" in x and b"FLAGS" not in x for x in untagged)
    assert b"\\Seen" not in r.ok("FETCH 2 FLAGS")[0]
    untagged, done = r.cmd(f"UID STORE 2 (UNCHANGEDSINCE {base}) +FLAGS (\\Seen)")
    assert done.startswith(b"OK [MODIFIED 2]") and untagged == []
    # SEARCH MODSEQ answers the highest modseq of what it found.
    untagged = r.ok(f"SEARCH MODSEQ {m2}")
    m = re.fullmatch(rb"\* SEARCH ((?:\d+ ?)+) \(MODSEQ (\d+)\)\r\n", untagged[0])
    assert m and m.group(1).split() == [b"1", b"2", b"3"] and int(m.group(2)) > m2


def test_condstore_with_imapclient(mdad):
    append(mdad, simple("a"), simple("b"))
    c = client(mdad)
    c.enable("CONDSTORE")
    info = c.select_folder("INBOX")
    highest = info[b"HIGHESTMODSEQ"]
    c.add_flags([1], ["\\Answered"])
    changed = c.fetch([1, 2], ["FLAGS"], modifiers=[f"CHANGEDSINCE {highest}"])
    assert list(changed) == [1] and changed[1][b"MODSEQ"][0] > highest
    c.logout()


# -- COPY, MOVE, EXPUNGE -------------------------------------------------------------


def test_copy_with_copyuid_and_trycreate(mdad):
    append(mdad, simple("a"), simple("b"), simple("c"))
    append(mdad, simple("old"), mailbox="Archive")
    r = Raw(mdad)
    status = r.ok("STATUS Archive (UIDVALIDITY)")[0]
    validity = int(re.search(rb"UIDVALIDITY (\d+)", status).group(1))
    r.ok("SELECT INBOX")
    r.ok("STORE 2 +FLAGS (\\Flagged)")
    untagged, done = r.cmd("COPY 2:3 Archive")
    assert done == b"OK [COPYUID %d 2:3 2:3] COPY completed\r\n" % validity
    untagged, done = r.cmd("UID COPY 1 Archive")
    assert done.startswith(b"OK [COPYUID %d 1 4]" % validity)
    untagged, done = r.cmd("COPY 1 Nowhere")
    assert done.startswith(b"NO [TRYCREATE]")
    # The copies are there with their flags; the source is unchanged.
    assert len(r.ok("FETCH 1:* UID")) == 3
    r.ok("SELECT Archive")
    got = r.ok("FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert [re.search(rb"Subject: (\w+)", x).group(1) for x in got] == [b"old", b"b", b"c", b"a"]
    assert b"\\Flagged" in got[1] and b"\\Flagged" not in got[2]


def test_move_sends_copyuid_then_expunges(mdad):
    append(mdad, *(simple(f"m{i}") for i in range(1, 6)))
    r = Raw(mdad)
    validity = int(re.search(rb"UIDVALIDITY (\d+)",
                             r.ok("STATUS Trash (UIDVALIDITY)")[0]).group(1))
    r.ok("SELECT INBOX")
    untagged, done = r.cmd("MOVE 2,4 Trash")
    assert untagged == [b"* OK [COPYUID %d 2,4 1:2] Moved\r\n" % validity,
                        b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert done.startswith(b"OK")
    assert r.ok("FETCH 1:* (UID)") == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 3)\r\n",
                                        b"* 3 FETCH (UID 5)\r\n"]
    untagged, done = r.cmd("UID MOVE 5 Trash")
    assert untagged == [b"* OK [COPYUID %d 5 3] Moved\r\n" % validity, b"* 3 EXPUNGE\r\n"]
    _, done = r.cmd("MOVE 1 Nowhere")
    assert done.startswith(b"NO [TRYCREATE]")
    r.ok("EXAMINE INBOX")
    _, done = r.cmd("MOVE 1 Trash")
    assert done.startswith(b"NO")
    # IMAPClient's move.
    c = client(mdad)
    c.select_folder("INBOX")
    c.move([1], "Trash")  # by UID, as IMAPClient does by default
    assert c.search() == [3]
    c.select_folder("Trash")
    assert len(c.search()) == 4
    c.logout()


def test_expunge_and_uid_expunge(mdad):
    append(mdad, *(simple(f"m{i}") for i in range(1, 7)))
    r = Raw(mdad)
    r.ok("SELECT INBOX")
    r.ok("STORE 2:5 +FLAGS.SILENT (\\Deleted)")
    # UID EXPUNGE removes only the \Deleted messages in its set.
    assert r.ok("UID EXPUNGE 1:3") == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert [int(x.split()[4].rstrip(b")")) for x in r.ok("FETCH 1:* UID")] == [1, 4, 5, 6]
    assert r.ok("EXPUNGE") == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert r.ok("EXPUNGE") == []
    r.ok("EXAMINE INBOX")
    _, done = r.cmd("EXPUNGE")
    assert done.startswith(b"NO")
    c = mdad.imap(ALICE)
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = c.expunge()
    assert (typ, data) == ("OK", [b"1"])
    c.logout()


# -- two sessions ------------------------------------------------------------------


def test_a_second_session_sees_flag_changes_and_expunges(mdad):
    append(mdad, simple("a"), simple("b"), simple("c"))
    one, two = Raw(mdad), Raw(mdad)
    one.ok("SELECT INBOX")
    two.ok("SELECT INBOX")
    one.ok("STORE 2 +FLAGS.SILENT (\\Answered)")
    assert two.ok("NOOP") == [b"* 2 FETCH (FLAGS (\\Answered) UID 2)\r\n"]
    one.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    one.ok("EXPUNGE")
    # During FETCH by sequence number the expunge is held back...
    untagged = two.ok("FETCH 1:3 (FLAGS)")
    assert b"EXPUNGE" not in b"".join(untagged)
    # (its flags as this session last knew them)
    assert untagged[2] == b"* 3 FETCH (FLAGS ())\r\n"
    _, done = two.cmd("FETCH 3 BODY.PEEK[]")
    assert done.startswith(b"NO [EXPUNGEISSUED]")
    # ... and comes with NOOP.
    assert two.ok("NOOP") == [b"* 3 EXPUNGE\r\n"]
    assert len(two.ok("FETCH 1:* UID")) == 2
    # A UID command may report it at once.
    one.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    one.ok("EXPUNGE")
    assert two.ok("UID FETCH 1:* UID") == [b"* 1 EXPUNGE\r\n", b"* 1 FETCH (UID 2)\r\n"]


def test_new_mail_while_selected_is_announced_and_fetchable(stack):
    c = client(stack)
    c.select_folder("INBOX")
    with stack.smtp() as s:
        s.sendmail("bob@example.net", [ALICE], simple("fresh"))
    stack.wait_messages(ALICE, 1)

    def arrived():
        return any(r[1] == b"EXISTS" and r[0] == 1 for r in c.noop()[1])
    wait_for(arrived, 60, "EXISTS 1")
    env = c.fetch([1], ["ENVELOPE"])[1][b"ENVELOPE"]
    assert env.subject == b"fresh"
    assert env.from_[0].host == b"example.net"
    c.logout()


# -- \Recent ---------------------------------------------------------------------


def test_recent_is_given_to_appended_and_copied_messages(mdad):
    """RFC 3501 2.3.2 (e), 6.3.11 and 6.4.7: a message appended or copied in is \\Recent
    for the first session that selects its mailbox, and for no other."""
    append(mdad, simple("one"), simple("two"), recent=True)
    a, b = Raw(mdad), Raw(mdad)
    assert a.ok("STATUS INBOX (RECENT)") == [b'* STATUS INBOX (RECENT 2)\r\n']
    assert b"* 2 RECENT\r\n" in a.ok("SELECT INBOX")
    assert a.ok("FETCH 1:* (FLAGS)") == [b"* 1 FETCH (FLAGS (\\Recent))\r\n",
                                         b"* 2 FETCH (FLAGS (\\Recent))\r\n"]
    assert b"* 0 RECENT\r\n" in b.ok("SELECT INBOX")
    assert b.ok("SEARCH RECENT") == [b"* SEARCH\r\n"]

    # APPEND into the mailbox the session has selected: recent there.
    untagged = a.ok(b"APPEND INBOX (\\Seen) {%d+}\r\n" % len(simple("three")) + simple("three"))
    untagged += a.ok("NOOP")
    assert b"* 3 EXISTS\r\n" in untagged and b"* 3 RECENT\r\n" in untagged
    assert a.ok("FETCH 3 (FLAGS)") == [b"* 3 FETCH (FLAGS (\\Seen \\Recent))\r\n"]
    assert b"* 3 EXISTS\r\n" in b.ok("NOOP")
    assert b.ok("FETCH 3 (FLAGS)") == [b"* 3 FETCH (FLAGS (\\Seen))\r\n"]

    # COPY: recent for whoever first selects the target; EXAMINE takes nothing.
    b.ok("COPY 1:2 Archive")
    assert b"* 2 RECENT\r\n" in b.ok("EXAMINE Archive")
    assert b"* 2 RECENT\r\n" in a.ok("SELECT Archive")
    assert a.ok("SEARCH RECENT") == [b"* SEARCH 1 2\r\n"]
    assert b"* 0 RECENT\r\n" in b.ok("SELECT Archive")
    assert a.ok("STATUS INBOX (RECENT)") == [b'* STATUS INBOX (RECENT 0)\r\n']
