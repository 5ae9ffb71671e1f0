"""FETCH data: exact ENVELOPE, BODY, BODYSTRUCTURE and BODY[section] bytes.

Expected values are worked out by hand from RFC 3501 7.4.2 and 6.4.5 (sizes
are octets of the CRLF form; the line end before a boundary belongs to the
boundary; lines count line ends). Every message is checked both as stored
(LF) and as sent (CRLF): the answers must not differ.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mda.imap.fetch import body, bodystructure, envelope, find_part, nstring, partial, section
from mda.store.message import crlf, parse

SIMPLE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example.COM>\n"
    b"Subject: afternoon meeting\n"
    b"To: mooch@owatagu.siam.edu.example\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example.COM>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n"
    b"\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\n"
)

ALTERNATIVE = (
    b'From: "Alice Example" <alice@example.org>\n'
    b"To: bob@example.net\n"
    b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n"
    b"Date: Tue, 1 Jul 2025 10:00:00 +0000\n"
    b"Message-ID: <alt@example.org>\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/alternative; boundary="b1"\n'
    b"\n"
    b"--b1\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: quoted-printable\n"
    b"\n"
    b"Gr=C3=BC=C3=9Fe\n"
    b"--b1\n"
    b"Content-Type: text/html; charset=utf-8\n"
    b"\n"
    b"<p>Hi</p>\n"
    b"--b1--\n"
)

MIXED = (
    b"From: carol@example.com\n"
    b"To: dave@example.com\n"
    b"Subject: report\n"
    b"Date: Wed, 2 Jul 2025 08:30:00 +0200\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed;\n"
    b' boundary="==XYZ=="\n'
    b"\n"
    b"This is a multi-part message in MIME format.\n"
    b"\n"
    b"--==XYZ==\n"
    b'Content-Type: text/plain; charset="us-ascii"\n'
    b"Content-Language: en\n"
    b"\n"
    b"See the attached report.\n"
    b"\n"
    b"--==XYZ==\n"
    b'Content-Type: application/pdf; name="report.pdf"\n'
    b"Content-Transfer-Encoding: base64\n"
    b"Content-Disposition: attachment;\n"
    b" filename*0*=utf-8''%E2%82%AC%20rapport;\n"
    b' filename*1=".pdf"\n'
    b"Content-ID: <att1@example.com>\n"
    b"Content-Description: The report\n"
    b"\n"
    b"JVBERi0xLjQK\n"
    b"JSVFT0YK\n"
    b"--==XYZ==--\n"
)

FORWARD = (
    b"From: erin@example.org\n"
    b"To: frank@example.org\n"
    b"Subject: Fwd: hello\n"
    b"Date: Thu, 3 Jul 2025 12:00:00 -0400\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=outer\n"
    b"\n"
    b"--outer\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"Forwarding.\n"
    b"--outer\n"
    b"Content-Type: message/rfc822\n"
    b"Content-Disposition: inline\n"
    b"\n"
    b"From: Gina <gina@example.net>\n"
    b"Subject: hello\n"
    b"Message-ID: <inner@example.net>\n"
    b"Content-Type: multipart/alternative; boundary=inner\n"
    b"\n"
    b"--inner\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"hi\n"
    b"--inner\n"
    b"Content-Type: text/html\n"
    b"\n"
    b"<b>hi</b>\n"
    b"--inner--\n"
    b"--outer--\n"
)

UNCLOSED = (
    b"Subject: cut\n"
    b'Content-Type: multipart/mixed; boundary="zz"\n'
    b"\n"
    b"--zz\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"first\n"
    b"--zz\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"second, never closed\n"
)

EIGHTBIT = (
    "From: Jürgen Müller <jm@example.de>\n"
    "Subject: Grüße aus Köln\n"
    "Date: Fri, 4 Jul 2025 09:00:00 +0200\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Schöne Grüße\n"
).encode()

ENCODED = (
    b"From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\n"
    b"To: undisclosed-recipients:;\n"
    b'Cc: Team: ann@example.com, "Bob, Jr." <bob@example.com>;, carl@example.com\n'
    b"Subject: =?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\n"
    b" =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=\n"
    b"Date: Sat, 5 Jul 2025 00:00:00 +0000\n"
    b'Reply-To: "Quote \\"this\\"" <q@example.com>\n'
    b"In-Reply-To: <parent@example.com>\n"
    b"\n"
    b"x\n"
)

NODATE = b"To: x@example.com\n\nbody\n"

FORMS = pytest.mark.parametrize("form", [lambda m: m, crlf], ids=["lf", "crlf"])

PLAIN_US_ASCII = b'"TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT"'


def bs(raw: bytes) -> bytes:
    return bodystructure(parse(raw))


# --- ENVELOPE -----------------------------------------------------------------

FRED = b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example.COM"))'
ANDRE = b'(("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
JURGEN = '(({15}\r\nJürgen Müller NIL "jm" "example.de"))'.encode()

ENVELOPES = {
    "simple": (
        SIMPLE,
        b'("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" "afternoon meeting" '
        + FRED
        + b" "
        + FRED
        + b" "
        + FRED
        + b' ((NIL NIL "mooch" "owatagu.siam.edu.example")) NIL NIL NIL'
        b' "<B27397-0100000@Blurdybloop.example.COM>")',
    ),
    "alternative": (
        ALTERNATIVE,
        b'("Tue, 1 Jul 2025 10:00:00 +0000" "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?="'
        b' (("Alice Example" NIL "alice" "example.org"))'
        b' (("Alice Example" NIL "alice" "example.org"))'
        b' (("Alice Example" NIL "alice" "example.org"))'
        b' ((NIL NIL "bob" "example.net")) NIL NIL NIL "<alt@example.org>")',
    ),
    "forward": (
        FORWARD,
        b'("Thu, 3 Jul 2025 12:00:00 -0400" "Fwd: hello"'
        b' ((NIL NIL "erin" "example.org")) ((NIL NIL "erin" "example.org"))'
        b' ((NIL NIL "erin" "example.org")) ((NIL NIL "frank" "example.org")) NIL NIL NIL NIL)',
    ),
    "unclosed": (UNCLOSED, b'(NIL "cut" NIL NIL NIL NIL NIL NIL NIL NIL)'),
    "eightbit": (
        EIGHTBIT,
        '("Fri, 4 Jul 2025 09:00:00 +0200" {17}\r\nGrüße aus Köln '.encode()
        + JURGEN
        + b" "
        + JURGEN
        + b" "
        + JURGEN
        + b" NIL NIL NIL NIL NIL)",
    ),
    "encoded": (
        ENCODED,
        b'("Sat, 5 Jul 2025 00:00:00 +0000"'
        b' "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?='
        b' =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=" '
        + ANDRE
        + b" "
        + ANDRE
        + b' (("Quote \\"this\\"" NIL "q" "example.com"))'
        b' ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
        b' ((NIL NIL "Team" NIL)(NIL NIL "ann" "example.com")("Bob, Jr." NIL "bob" "example.com")'
        b'(NIL NIL NIL NIL)(NIL NIL "carl" "example.com"))'
        b' NIL "<parent@example.com>" NIL)',
    ),
    "nodate": (NODATE, b'(NIL NIL NIL NIL NIL ((NIL NIL "x" "example.com")) NIL NIL NIL NIL)'),
}


@FORMS
@pytest.mark.parametrize("name", ENVELOPES)
def test_envelope(form, name: str) -> None:
    raw, expected = ENVELOPES[name]
    assert envelope(parse(form(raw))) == expected


def test_envelope_sender_and_reply_to_default_to_from_when_empty() -> None:
    m = parse(b"From: a@b\nSender:\nReply-To: (nobody)\nSubject:\n\n")
    assert envelope(m) == (
        b'(NIL "" ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) NIL NIL NIL NIL NIL)'
    )


def test_envelope_broken_addresses_get_placeholders() -> None:
    m = parse(b"From: John\nTo: root (Cron Daemon), <>\nBcc: <@hop:a@b>\n\n")
    assert envelope(m) == (
        b'(NIL NIL (("John" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        b' (("John" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        b' (("John" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        b' (("Cron Daemon" NIL "root" "MISSING_DOMAIN")'
        b'(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'
        b' NIL ((NIL "@hop" "a" "b")) NIL NIL)'
    )


def test_envelope_first_field_of_each_name() -> None:
    m = parse(b"Subject: one\nSubject: two\nMessage-ID: <1@x>\nmessage-id: <2@x>\n\n")
    assert envelope(m) == b'(NIL "one" NIL NIL NIL NIL NIL NIL NIL "<1@x>")'


@pytest.mark.parametrize(
    "value, wire",
    [
        (None, b"NIL"),
        (b"", b'""'),
        (b"plain", b'"plain"'),
        (b'say "hi" \\ bye', b'"say \\"hi\\" \\\\ bye"'),
        (b"tab\there", b"{8}\r\ntab\there"),
        (b"cr\rlf\n", b"{6}\r\ncr\rlf\n"),
        ("é".encode(), "{2}\r\né".encode()),
        (b"nul\0byte", b'"nulbyte"'),
        ("é", "{2}\r\né".encode()),
        ("NIL", b'"NIL"'),
    ],
)
def test_nstring(value, wire: bytes) -> None:
    assert nstring(value) == wire


# --- BODYSTRUCTURE and BODY ---------------------------------------------------

FORWARD_INNER_ENVELOPE = (
    b'(NIL "hello" (("Gina" NIL "gina" "example.net")) (("Gina" NIL "gina" "example.net"))'
    b' (("Gina" NIL "gina" "example.net")) NIL NIL NIL NIL "<inner@example.net>")'
)

STRUCTURES = {
    "simple": (
        SIMPLE,
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 55 1 NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 55 1)',
    ),
    "alternative": (
        ALTERNATIVE,
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 15 0 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 9 0 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "b1") NIL NIL NIL)',
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 15 0)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 9 0) "ALTERNATIVE")',
    ),
    "mixed": (
        MIXED,
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 26 1 NIL NIL ("en") NIL)'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") "<att1@example.com>" "The report"'
        b' "BASE64" 22 NIL ("ATTACHMENT" ("FILENAME" '
        + "{15}\r\n€ rapport.pdf".encode()
        + b")) NIL NIL)"
        b' "MIXED" ("BOUNDARY" "==XYZ==") NIL NIL NIL)',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 26 1)'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") "<att1@example.com>" "The report"'
        b' "BASE64" 22) "MIXED")',
    ),
    "forward": (
        FORWARD,
        b"((" + PLAIN_US_ASCII + b" 11 0 NIL NIL NIL NIL)"
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 232 '
        + FORWARD_INNER_ENVELOPE
        + b" (("
        + PLAIN_US_ASCII
        + b' 2 0 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "US-ASCII")'
        b' NIL NIL "7BIT" 9 0 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)'
        b' 13 NIL ("INLINE" NIL) NIL NIL)'
        b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)',
        b"((" + PLAIN_US_ASCII + b" 11 0)"
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 232 '
        + FORWARD_INNER_ENVELOPE
        + b" (("
        + PLAIN_US_ASCII
        + b' 2 0)("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 9 0)'
        b' "ALTERNATIVE") 13) "MIXED")',
    ),
    "unclosed": (
        UNCLOSED,
        b"((" + PLAIN_US_ASCII + b" 5 0 NIL NIL NIL NIL)"
        b"(" + PLAIN_US_ASCII + b' 22 1 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "zz") NIL NIL NIL)',
        b"((" + PLAIN_US_ASCII + b" 5 0)(" + PLAIN_US_ASCII + b' 22 1) "MIXED")',
    ),
    "eightbit": (
        EIGHTBIT,
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 17 1 NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 17 1)',
    ),
    "nodate": (
        NODATE,
        b"(" + PLAIN_US_ASCII + b" 6 1 NIL NIL NIL NIL)",
        b"(" + PLAIN_US_ASCII + b" 6 1)",
    ),
}


@FORMS
@pytest.mark.parametrize("name", STRUCTURES)
def test_bodystructure_and_body(form, name: str) -> None:
    raw, extensible, basic = STRUCTURES[name]
    m = parse(form(raw))
    assert bodystructure(m) == extensible
    assert bodystructure(m, extensible=False) == basic
    assert body(m) == basic


def test_empty_multipart_gets_one_empty_text_part() -> None:
    assert bs(b"Content-Type: multipart/mixed; boundary=foo\n\n") == (
        b"((" + PLAIN_US_ASCII + b' 0 0 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "foo") NIL NIL NIL)'
    )
    assert body(parse(b"Content-Type: multipart/related\n\nno boundary\n")) == (
        b"((" + PLAIN_US_ASCII + b' 0 0) "RELATED")'
    )


def test_missing_or_invalid_content_type_is_text_plain_us_ascii() -> None:
    for raw in (b"\nx", b"Content-Type: broken\n\nx", b"Content-Type: text/\n\nx"):
        assert bs(raw) == b"(" + PLAIN_US_ASCII + b" 1 0 NIL NIL NIL NIL)"


def test_text_without_charset_gets_the_default_appended() -> None:
    assert bs(b"Content-Type: text/plain; format=flowed\n\nx\n") == (
        b'("TEXT" "PLAIN" ("FORMAT" "flowed" "CHARSET" "US-ASCII") NIL NIL "7BIT" 3 1'
        b" NIL NIL NIL NIL)"
    )
    # not for other types
    assert bs(b"Content-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lG\n") == (
        b'("IMAGE" "GIF" NIL NIL NIL "BASE64" 6 NIL NIL NIL NIL)'
    )


def test_multipart_extension_data() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary=b; x-thing="a b"\n'
        b"Content-Disposition: inline; x=1\nContent-Language: fr, de\n"
        b"Content-Location: http://example.com/\n\n--b\n\nx\n--b--\n"
    )
    assert bs(raw) == (
        b"((" + PLAIN_US_ASCII + b' 1 0 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "b" "X-THING" "a b")'
        b' ("INLINE" ("X" "1")) ("fr" "de") "http://example.com/")'
    )


def test_single_part_extension_data() -> None:
    raw = (
        b"Content-Type: text/plain; charset=us-ascii\nContent-MD5: Q2hlY2s=\n"
        b"Content-Disposition: attachment\nContent-Language: en\n"
        b"Content-Location: a.txt\nContent-ID: <x@y>\nContent-Description: caf\xc3\xa9\n\nx\n"
    )
    assert bs(raw) == (
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") "<x@y>" {5}\r\ncaf\xc3\xa9 "7BIT" 3 1'
        b' "Q2hlY2s=" ("ATTACHMENT" NIL) ("en") "a.txt")'
    )


def test_message_global_is_a_message_only_for_imap4rev2() -> None:
    raw = b"Content-Type: message/global\n\nSubject: inner\n\nx\n"
    m = parse(raw)
    assert bodystructure(m) == b'("MESSAGE" "GLOBAL" NIL NIL NIL "7BIT" 21 NIL NIL NIL NIL)'
    assert bodystructure(m, global_is_message=True) == (
        b'("MESSAGE" "GLOBAL" NIL NIL NIL "7BIT" 21 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b" (" + PLAIN_US_ASCII + b" 3 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)"
    )
    assert section(m, (1, 1)) == b""
    assert section(m, (1,), "HEADER") == b""
    assert section(m, (1,), "HEADER", global_is_message=True) == b"Subject: inner\r\n\r\n"
    assert section(m, (1, 1), global_is_message=True) == b"x\r\n"


def test_digest_parts_are_messages() -> None:
    raw = b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: s\n\nx\n--d--\n"
    assert body(parse(raw)) == (
        b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 15 (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b" (" + PLAIN_US_ASCII + b' 1 0) 2) "DIGEST")'
    )


def test_deep_nesting_stays_within_limits_and_valid() -> None:
    raw = b"Content-Type: message/rfc822\n\n" * 300 + b"Subject: bottom\n\nx"
    out = bodystructure(parse(raw))
    assert out.count(b'"MESSAGE" "RFC822"') == 51
    assert _read(out)  # balanced and well formed
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%03d\n\n--b%03d\n" % (i, i) for i in range(300)
    )
    assert _read(bodystructure(parse(raw + b"\nx\n")))


# --- BODY[section] ------------------------------------------------------------

ALT_HEADER = crlf(ALTERNATIVE[: ALTERNATIVE.index(b"--b1")])
ALT_TEXT = crlf(ALTERNATIVE[ALTERNATIVE.index(b"--b1") :])
FWD_INNER = crlf(FORWARD[FORWARD.index(b"From: Gina") : FORWARD.index(b"\n--outer--")])

SECTIONS = [
    (SIMPLE, (), None, None, crlf(SIMPLE)),
    (SIMPLE, (), "TEXT", None, b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"),
    (SIMPLE, (1,), None, None, b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"),
    (SIMPLE, (1,), "MIME", None, crlf(SIMPLE[: SIMPLE.index(b"Hello")])),
    (SIMPLE, (2,), None, None, b""),
    (SIMPLE, (1, 1), None, None, b""),
    (SIMPLE, (1,), "HEADER", None, b""),
    (SIMPLE, (1,), "TEXT", None, b""),
    (
        SIMPLE,
        (),
        "header.fields",
        ["SUBJECT", "date"],
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\n",
    ),
    (
        SIMPLE,
        (),
        "HEADER.FIELDS.NOT",
        ["Date", "From", "Subject", "To", "Message-ID", "x"],
        b"MIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n",
    ),
    (SIMPLE, (), "HEADER.FIELDS", ["X-None"], b"\r\n"),
    (ALTERNATIVE, (), "HEADER", None, ALT_HEADER),
    (ALTERNATIVE, (), "TEXT", None, ALT_TEXT),
    (ALTERNATIVE, (1,), None, None, b"Gr=C3=BC=C3=9Fe"),
    (ALTERNATIVE, (2,), None, None, b"<p>Hi</p>"),
    (ALTERNATIVE, (3,), None, None, b""),
    (ALTERNATIVE, (0,), None, None, b""),
    (
        ALTERNATIVE,
        (1,),
        "MIME",
        None,
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
    ),
    (ALTERNATIVE, (2,), "MIME", None, b"Content-Type: text/html; charset=utf-8\r\n\r\n"),
    (MIXED, (2,), None, None, b"JVBERi0xLjQK\r\nJSVFT0YK"),
    (MIXED, (1,), None, None, b"See the attached report.\r\n"),
    (FORWARD, (1,), None, None, b"Forwarding."),
    (FORWARD, (2,), None, None, FWD_INNER),
    (
        FORWARD,
        (2,),
        "MIME",
        None,
        b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n",
    ),
    (FORWARD, (2,), "HEADER", None, FWD_INNER[: FWD_INNER.index(b"--inner")]),
    (FORWARD, (2,), "TEXT", None, FWD_INNER[FWD_INNER.index(b"--inner") :]),
    (
        FORWARD,
        (2,),
        "HEADER.FIELDS",
        ["subject", "message-id"],
        b"Subject: hello\r\nMessage-ID: <inner@example.net>\r\n\r\n",
    ),
    (FORWARD, (2, 1), None, None, b"hi"),
    (FORWARD, (2, 2), None, None, b"<b>hi</b>"),
    (FORWARD, (2, 2), "MIME", None, b"Content-Type: text/html\r\n\r\n"),
    (FORWARD, (2, 3), None, None, b""),
    (FORWARD, (2, 1, 1), None, None, b""),
    (FORWARD, (2, 1, 2), None, None, b""),
    (FORWARD, (1,), "HEADER", None, b""),
    (UNCLOSED, (2,), None, None, b"second, never closed\r\n"),
    (b"Subject: no body", (), "HEADER", None, b"Subject: no body"),
    (b"Subject: no body", (), "HEADER.FIELDS", ["subject"], b"Subject: no body"),
    (b"Subject: no body", (), "TEXT", None, b""),
]


@FORMS
@pytest.mark.parametrize("raw, part, text, fields, expected", SECTIONS)
def test_section(form, raw, part, text, fields, expected) -> None:
    assert section(parse(form(raw)), part, text, fields) == expected


@pytest.mark.parametrize(
    "part, text, fields",
    [
        ((), "MIME", None),
        ((1,), "BOGUS", None),
        ((), "HEADER.FIELDS", None),
        ((), "HEADER.FIELDS.NOT", None),
    ],
)
def test_section_rejects_malformed_specs(part, text, fields) -> None:
    with pytest.raises(ValueError):
        section(parse(SIMPLE), part, text, fields)


def test_section_converts_bare_cr_and_lf() -> None:
    m = parse(b"Subject: a\rb\n\nx\ry\n")
    assert section(m) == b"Subject: a\r\nb\r\n\r\nx\r\ny\r\n"
    assert section(m, (), "TEXT") == b"x\r\ny\r\n"


def test_find_part() -> None:
    m = parse(FORWARD)
    assert find_part(m, ()) is m
    assert find_part(m, (2,)) is m.children[1]
    assert find_part(m, (2, 2)) is m.children[1].message.children[1]
    assert find_part(m, (3,)) is None
    single = parse(SIMPLE)
    assert find_part(single, (1,)) is single


@pytest.mark.parametrize(
    "start, count, expected",
    [
        (0, 3, b"abc"),
        (2, 10, b"cdef"),
        (6, 1, b""),
        (100, 5, b""),
        (1, None, b"bcdef"),
        (0, 0, b""),
    ],
)
def test_partial(start, count, expected) -> None:
    assert partial(b"abcdef", start, count) == expected


# --- properties ---------------------------------------------------------------

_TOKEN = re.compile(rb'\s*(?:(\()|(\))|(NIL)|(\d+)|"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n)', re.S)


def _read(data: bytes):
    """Reads one IMAP s-expression (lists, NIL, numbers, quoted strings,
    literals) and checks nothing is left: the output is well formed."""
    stack: list[list] = [[]]
    pos = 0
    while pos < len(data):
        m = _TOKEN.match(data, pos)
        assert m, data[pos : pos + 40]
        pos = m.end()
        if m.group(1):
            stack.append([])
        elif m.group(2):
            done = stack.pop()
            stack[-1].append(done)
        elif m.group(3):
            stack[-1].append(None)
        elif m.group(4):
            stack[-1].append(int(m.group(4)))
        elif m.group(6) is not None:
            n = int(m.group(6))
            stack[-1].append(data[pos : pos + n])
            pos += n
        else:
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", m.group(5), flags=re.S))
    assert len(stack) == 1 and len(stack[0]) == 1
    return stack[0][0]


def _count_children(node) -> int:
    n = 0
    for c in node:
        if not isinstance(c, list):
            break
        n += 1
    return n


def _sizes(node, path=()):
    if isinstance(node[0], list):  # multipart: the leading lists are its parts
        for i, child in enumerate(node[: _count_children(node)], 1):
            yield from _sizes(child, path + (i,))
        return
    here = path or (1,)
    yield here, node[6]
    if node[0].upper() == b"MESSAGE" and node[1].upper() == b"RFC822":
        inner = node[8]
        if isinstance(inner[0], list):
            yield from _sizes(inner, here)
        else:
            yield from _sizes(inner, here + (1,))


_LINES = st.sampled_from(
    [
        b"",
        b"--b",
        b"--b--",
        b"--c",
        b"--c--",
        b"Content-Type: multipart/mixed; boundary=b",
        b"Content-Type: multipart/alternative; boundary=c",
        b"Content-Type: multipart/digest; boundary=c",
        b"Content-Type: message/rfc822",
        b"Content-Type: text/plain; name*0*=utf-8''%C3; name*1*=%A9",
        b'Content-Disposition: inline; filename="a\\"b"',
        b"Content-Language: en, \xff",
        b'From: a@b, g: c@d;, "x" <e@f>',
        b'Subject: \t=?utf-8?B?w6k=?= "\\',
        b"Date: today",
        b" folded",
        b"text \xe9",
        b"\x00",
        b"no colon",
    ]
)


@st.composite
def mime_soup(draw, line_ends=(b"\n", b"\r\n", b"\r", b"")) -> bytes:
    ends = st.sampled_from(line_ends)
    lines = draw(st.lists(st.tuples(_LINES, ends), max_size=40))
    return b"".join(line + end for line, end in lines)


_HEADERS = st.sampled_from(
    [
        b"Subject: =?utf-8?Q?caf=C3=A9?=",
        b"From: a@b, g: c@d;",
        b"Content-Transfer-Encoding: base64",
        b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC",
        b"Content-ID: <x@y>",
        b" folded",
        b"no colon",
    ]
)
_BODY_LINES = st.sampled_from([b"text", b"", b"-- ", b"--b-", b"--bc", b"\xe9\x00", b"x\ry"])


@st.composite
def mime_tree(draw, depth: int = 0) -> list[bytes]:
    """The lines of a MIME entity, nested up to three deep, with the usual
    damage: a missing blank line, a missing close delimiter, a stray line."""
    kind = draw(st.sampled_from(["text", "multipart", "message"] if depth < 3 else ["text"]))
    lines = draw(st.lists(_HEADERS, max_size=2))
    body: list[bytes] = []
    if kind == "multipart":
        boundary = draw(st.sampled_from([b"b", b"c", b"bc"]))
        subtype = draw(st.sampled_from([b"mixed", b"digest", b"alternative"]))
        lines.append(b"Content-Type: multipart/" + subtype + b"; boundary=" + boundary)
        body += draw(st.lists(_BODY_LINES, max_size=2))
        for child in draw(st.lists(mime_tree(depth + 1), max_size=3)):
            body += [b"--" + boundary, *child]
        if draw(st.booleans()):
            body.append(b"--" + boundary + b"--")
        body += draw(st.lists(_BODY_LINES, max_size=2))
    elif kind == "message":
        lines.append(b"Content-Type: message/" + draw(st.sampled_from([b"rfc822", b"global"])))
        body = draw(mime_tree(depth + 1))
    else:
        body = draw(st.lists(_BODY_LINES, max_size=4))
    if draw(st.integers(0, 9)):
        lines.append(b"")  # usually, the blank line
    return lines + body


@st.composite
def mime_messages(draw, line_ends=(b"\n", b"\r\n")) -> bytes:
    lines = draw(mime_tree())
    ends = st.sampled_from(line_ends)
    return b"".join(line + draw(ends) for line in lines)


_SPECS = [
    None,
    "HEADER",
    "TEXT",
    "MIME",
    ("HEADER.FIELDS", ["subject", "from"]),
    ("HEADER.FIELDS.NOT", ["subject"]),
]


def _exercise(data: bytes) -> None:
    m = parse(data)
    assert section(m) == crlf(data)
    for extensible in (True, False):
        for gm in (False, True):
            tree = _read(bodystructure(m, extensible, global_is_message=gm))
            assert isinstance(tree, list)
            for path, size in _sizes(tree):
                assert len(section(m, path, global_is_message=gm)) == size, path
    _read(envelope(m))
    paths = [(), (1,), (2,), (1, 1), (1, 2), (2, 1), (1, 1, 1), (3, 2, 1)]
    for path in paths:
        for spec in _SPECS:
            text, fields = spec if isinstance(spec, tuple) else (spec, None)
            if text == "MIME" and not path:
                continue
            out = section(m, path, text, fields)
            assert out == crlf(out)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.binary(max_size=1500))
def test_arbitrary_bytes_never_raise_and_output_is_well_formed(data: bytes) -> None:
    _exercise(data)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(mime_soup())
def test_mime_soup_never_raises_and_sizes_match_sections(data: bytes) -> None:
    _exercise(data)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(mime_messages())
def test_mime_trees_never_raise_and_sizes_match_sections(data: bytes) -> None:
    _exercise(data)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    st.one_of(mime_soup(line_ends=(b"\n", b"")), mime_messages(line_ends=(b"\n",))).map(
        lambda data: data.replace(b"\r", b"")  # as Maildir stores it: LF only
    )
)
def test_lf_and_crlf_forms_give_the_same_answers(data: bytes) -> None:
    lf, cr = parse(data), parse(crlf(data))
    assert bodystructure(lf) == bodystructure(cr)
    assert body(lf) == body(cr)
    assert envelope(lf) == envelope(cr)
    for path in [(), (1,), (2,), (1, 1), (2, 1), (2, 2)]:
        for spec in _SPECS:
            text, fields = spec if isinstance(spec, tuple) else (spec, None)
            if text == "MIME" and not path:
                continue
            assert section(lf, path, text, fields) == section(cr, path, text, fields)


@given(st.binary(max_size=500))
def test_single_part_size_is_crlf_body_length(payload: bytes) -> None:
    for header in (b"Content-Type: text/plain\n\n", b"Subject: x\r\n\r\n"):
        m = parse(header + payload)
        expected = crlf(payload)
        assert bodystructure(m) == (
            b"("
            + PLAIN_US_ASCII
            + b" %d %d NIL NIL NIL NIL)" % (len(expected), expected.count(b"\r\n"))
        )
        assert section(m, (1,)) == expected
