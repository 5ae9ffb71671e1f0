"""Message structure: spans, header fields, MIME parameters, addresses, encoded words."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mda.store import message
from mda.store.addresses import Address
from mda.store.headerfields import (
    decode_bytes,
    parse_content_type,
    parse_disposition,
    parse_language,
)
from mda.store.message import (
    crlf,
    crlf_lines,
    crlf_size,
    decode_header_text,
    parse,
    parse_addresses,
)

# --- crlf ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"", b""),
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\rb", b"a\r\nb"),
        (b"a\r\r\nb\n\r", b"a\r\n\r\nb\r\n\r\n"),
        (b"\n\n", b"\r\n\r\n"),
        (b"no line end", b"no line end"),
        (b"\r", b"\r\n"),
    ],
)
def test_crlf(raw: bytes, expected: bytes) -> None:
    assert crlf(raw) == expected
    assert crlf_size(raw) == len(expected)
    assert crlf_lines(raw) == expected.count(b"\r\n")


def test_crlf_keeps_a_crlf_message_as_is() -> None:
    data = b"Subject: x\r\n\r\nbody\r\n"
    assert crlf(data) is data


@given(st.binary(max_size=200), st.integers(0, 200), st.integers(0, 200))
def test_crlf_size_and_lines_count_without_copying(data: bytes, a: int, b: int) -> None:
    assert crlf_size(data, a, b) == len(crlf(data[a:b]))
    assert crlf_lines(data, a, b) == crlf(data[a:b]).count(b"\r\n")


# --- spans --------------------------------------------------------------------

SIMPLE = b"From: a@example.org\nSubject: hi\n\nbody line\n"


def test_simple_message_spans() -> None:
    m = parse(SIMPLE)
    assert (m.start, m.fields_end, m.body_start, m.end) == (0, 32, 33, len(SIMPLE))
    assert m.header == b"From: a@example.org\nSubject: hi\n\n"
    assert m.body == b"body line\n"
    assert (m.size, m.lines, m.header_size) == (11, 1, 36)
    assert m.mime_type == "text/plain"
    assert m.charset == "us-ascii"
    assert not m.is_multipart and m.children == [] and m.message is None


def test_crlf_message_has_the_same_structure() -> None:
    lf = parse(SIMPLE)
    cr = parse(crlf(SIMPLE))
    assert cr.body == b"body line\r\n"
    assert (cr.size, cr.lines, cr.header_size) == (lf.size, lf.lines, lf.header_size)
    assert cr.fields == lf.fields


def test_missing_blank_line_makes_all_header() -> None:
    m = parse(b"Subject: x\nnot a header line\n")
    assert m.header == b"Subject: x\nnot a header line\n"
    assert m.body == b""
    assert m.fields == [("Subject", b"x")]
    assert m.fields_end == m.body_start == m.end


def test_header_without_final_line_end() -> None:
    m = parse(b"Subject: x")
    assert m.get("subject") == b"x"
    assert (m.header, m.body) == (b"Subject: x", b"")


def test_message_starting_with_blank_line_has_no_fields() -> None:
    m = parse(b"\r\nFrom: not a header\r\n")
    assert m.fields == []
    assert m.header == b"\r\n"
    assert m.body == b"From: not a header\r\n"


def test_blank_line_of_mixed_line_ends() -> None:
    m = parse(b"Subject: x\n\r\nbody")
    assert (m.header, m.body) == (b"Subject: x\n\r\n", b"body")


# --- header fields ------------------------------------------------------------


def test_fields_unfolded_in_order_case_insensitive() -> None:
    m = parse(
        b"Received: from a\n\tby b\nReceived: from c\nSUBJECT:  two\n  lines  \n"
        b"X-Empty:\nbroken line\n continuation of broken\nTo : bob@example.org\n\nbody"
    )
    assert m.fields == [
        ("Received", b"from a\tby b"),
        ("Received", b"from c"),
        ("SUBJECT", b"two  lines  "),
        ("X-Empty", b""),
        ("To", b"bob@example.org"),
    ]
    assert m.get("subject") == b"two  lines  "
    assert m.get_all("received") == [b"from a\tby b", b"from c"]
    assert m.get("x-missing") is None
    assert m.get_all("x-missing") == []
    assert m.get("to") == b"bob@example.org"


def test_eight_bit_and_nul_header_bytes_are_kept() -> None:
    m = parse("Subject: Grüße\0x\n\n".encode())
    assert m.get("Subject") == "Grüße\0x".encode()
    assert decode_header_text(m.get("subject")) == "Grüße\0x"


HEADERS = (
    b"From: a@example.org\r\nSubject: one\r\n two\r\nX-Spam: yes\r\nbroken\r\n"
    b"subject : again\r\n\r\nbody\r\n"
)


@pytest.mark.parametrize(
    "names, exclude, expected",
    [
        (None, False, HEADERS[: HEADERS.index(b"body")]),
        (["SUBJECT"], False, b"Subject: one\r\n two\r\nsubject : again\r\n\r\n"),
        ([b"from", "x-spam"], False, b"From: a@example.org\r\nX-Spam: yes\r\n\r\n"),
        (["Subject", "X-Spam"], True, b"From: a@example.org\r\nbroken\r\n\r\n"),
        (["nothing"], False, b"\r\n"),
        ([], True, HEADERS[: HEADERS.index(b"body")]),
    ],
)
def test_header_text(names, exclude, expected) -> None:
    assert parse(HEADERS).header_text(names, exclude) == expected


def test_header_text_without_blank_line_adds_none() -> None:
    m = parse(b"Subject: a\nTo: b@c")
    assert m.header_text(["to"]) == b"To: b@c"
    assert m.header_text(["subject"]) == b"Subject: a\n"


# --- Content-* ----------------------------------------------------------------


def test_content_type_params_and_comments() -> None:
    ct = parse_content_type(b'Text/HTML (comment) ; Charset="UTF-8"; format=flowed (why)')
    assert ct is not None
    ctype, subtype, params = ct
    assert (ctype, subtype) == ("text", "html")
    assert [(p.name, p.value, p.raw) for p in params] == [
        ("charset", "UTF-8", b"UTF-8"),
        ("format", "flowed", b"flowed"),
    ]


@pytest.mark.parametrize("raw", [b"", b"text", b"text/", b"/plain", b"garbage here", b";a=b"])
def test_invalid_content_type(raw: bytes) -> None:
    assert parse_content_type(raw) is None


def test_lenient_param_values() -> None:
    _, _, params = parse_content_type(
        b"multipart/mixed; boundary=----=_Part_1_2.3; name=my file.pdf; junk; =x; "
        b'q="a\\"b\\\\c"; unterminated="abc'
    )
    assert [(p.name, p.raw) for p in params] == [
        ("boundary", b"----=_Part_1_2.3"),
        ("name", b"my file.pdf"),
        ("q", b'a"b\\c'),
        ("unterminated", b"abc"),
    ]


def test_rfc2231_continuations_charset_and_language() -> None:
    _, _, params = parse_content_type(
        b"application/x-stuff; title*0*=us-ascii'en'This%20is%20even%20more%20; "
        b'title*2="isn\'t it!"; title*1*=%2A%2A%2Afun%2A%2A%2A%20'
    )
    (p,) = params
    assert p.name == "title"
    assert p.value == "This is even more ***fun*** isn't it!"
    assert (p.charset, p.language) == ("us-ascii", "en")
    assert p.raw == p.value.encode()


def test_rfc2231_extended_value_preferred_over_plain() -> None:
    disposition = parse_disposition(
        b"attachment; filename=\"=?utf-8?B?4oKsLnR4dA==?=\"; filename*=UTF-8''%E2%82%AC.txt; size=3"
    )
    assert disposition is not None
    kind, params = disposition
    assert kind == "attachment"
    assert [(p.name, p.value, p.raw, p.charset) for p in params] == [
        ("filename", "€.txt", "€.txt".encode(), "UTF-8"),
        ("size", "3", b"3", None),
    ]


def test_plain_param_with_encoded_word_or_raw_utf8() -> None:
    _, _, params = parse_content_type('image/png; name="=?utf-8?Q?caf=C3=A9?=.png"; x="é"'.encode())
    assert [(p.value, p.raw) for p in params] == [
        ("café.png", b"=?utf-8?Q?caf=C3=A9?=.png"),
        ("é", "é".encode()),
    ]


def test_rfc2231_bad_charset_and_percent_never_raise() -> None:
    _, _, params = parse_content_type(b"a/b; n*=no-such-charset''%FF%zz; m*=base64''abc")
    assert [p.value for p in params] == ["\xff%zz", "abc"]  # unknown charset: cp1252


def test_language() -> None:
    assert parse_language(b"en, fi (Finnish),se") == ["en", "fi", "se"]
    assert parse_language(b" ") is None
    assert parse_language(None) is None


def test_part_content_fields() -> None:
    m = parse(
        b"Content-Type: application/octet-stream; name=a.bin\n"
        b"Content-Transfer-Encoding: Base64 (comment)\n"
        b"Content-ID: <id@x>\nContent-Description: a file\nContent-Location: http://x/a\n"
        b"Content-MD5: Q2hlY2s=\nContent-Language: de\n"
        b"Content-Disposition: ATTACHMENT; filename*=iso-8859-1''M%FCll.bin\n\nAAAA\n"
    )
    assert (m.type, m.subtype, m.encoding) == ("application", "octet-stream", "base64")
    assert (m.content_id, m.description, m.location, m.md5) == (
        b"<id@x>",
        b"a file",
        b"http://x/a",
        b"Q2hlY2s=",
    )
    assert m.language == ["de"]
    assert m.disposition == "attachment"
    assert m.filename == "Müll.bin"
    assert m.param("NAME") == "a.bin"
    assert m.charset is None


def test_first_content_type_wins_and_invalid_defaults_to_text_plain() -> None:
    assert parse(b"Content-Type: image/gif\nContent-Type: text/html\n\n").mime_type == "image/gif"
    m = parse(b"Content-Type: nonsense\n\n")
    assert (m.mime_type, m.params, m.charset) == ("text/plain", [], "us-ascii")


# --- multipart ----------------------------------------------------------------

MIXED = (
    b'Content-Type: multipart/mixed; boundary="b"\n'
    b"\n"
    b"preamble\n"
    b"--b\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"one\n"
    b"\n"
    b"--b \t\n"
    b"\n"
    b"two\n"
    b"--b--\n"
    b"epilogue\n"
    b"--b\n"
    b"not a part\n"
)


def test_multipart_children_preamble_epilogue() -> None:
    m = parse(MIXED)
    assert m.is_multipart
    one, two = m.children
    assert (one.header, one.body) == (b"Content-Type: text/plain\n\n", b"one\n")
    assert (two.header, two.body) == (b"\n", b"two")
    assert two.mime_type == "text/plain"
    assert m.body.startswith(b"preamble\n") and m.body.endswith(b"not a part\n")
    assert m.end == len(MIXED)
    assert [p.depth for p in m.walk()] == [0, 1, 1]


def test_multipart_crlf_spans_exclude_the_line_end_before_boundary() -> None:
    m = parse(crlf(MIXED))
    one, two = m.children
    assert one.body == b"one\r\n"
    assert two.body == b"two"
    assert (one.size, one.lines, two.size, two.lines) == (5, 1, 3, 0)


def test_missing_final_boundary_runs_to_end() -> None:
    m = parse(b"Content-Type: multipart/mixed; boundary=x\n\n--x\n\nfirst\n--x\n\nsecond\n")
    assert [c.body for c in m.children] == [b"first", b"second\n"]


def test_multipart_without_boundary_or_without_parts() -> None:
    for raw in (
        b"Content-Type: multipart/mixed\n\n--x\n\nbody\n",
        b"Content-Type: multipart/mixed; boundary=zz\n\n--x\n\nbody\n",
        b'Content-Type: multipart/mixed; boundary=""\n\n--\n\nbody\n',
    ):
        m = parse(raw)
        assert m.is_multipart and m.children == []
        assert m.body.endswith(b"body\n")


def test_part_header_cut_by_boundary() -> None:
    m = parse(
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n--b\n--b--\n"
    )
    first, second = m.children
    assert (first.header, first.body, first.mime_type) == (
        b"Content-Type: text/html",
        b"",
        "text/html",
    )
    assert (second.header, second.body) == (b"", b"")
    assert first.end == first.body_start


def test_nested_multiparts_and_outer_boundary_closing_inner() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=outer\n\n"
        b"--outer\n"
        b"Content-Type: multipart/alternative; boundary=inner\n\n"
        b"--inner\n\nplain\n"
        b"--inner\nContent-Type: text/html\n\nhtml\n"
        # no --inner-- : the outer boundary ends the inner multipart too
        b"--outer\n\nlast\n"
        b"--outer--\n"
    )
    m = parse(raw)
    alt, last = m.children
    assert alt.is_multipart and [c.body for c in alt.children] == [b"plain", b"html"]
    assert last.body == b"last"
    assert alt.body.endswith(b"html")


def test_longest_open_boundary_wins() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=ab\n\n"
        b"--ab\nContent-Type: multipart/mixed; boundary=abc\n\n"
        b"--abc\n\nx\n--abc\n\ny\n--abc--\n"
        b"--ab--\n"
    )
    (inner,) = parse(raw).children
    assert [c.body for c in inner.children] == [b"x", b"y"]


def test_boundary_matches_as_a_line_prefix() -> None:
    # RFC 2046 5.1.1: a boundary may not start any line of the parts, so a
    # line that starts with it is a boundary line, whatever follows.
    raw = (
        b"Content-Type: multipart/mixed; boundary=ab\n\n"
        b"--ab\nContent-Type: multipart/mixed; boundary=abc\n\n"
        b"--abc\n\nx\n--ab-trailer\n\ny\n--abc--\n"  # --abc is closed: "--abc--" is an --ab line
        b"--ab--\n"
    )
    inner, second, third = parse(raw).children
    assert [c.body for c in inner.children] == [b"x"]
    assert (second.body, third.header, third.body) == (b"y", b"", b"")


def test_same_boundary_nested_belongs_to_innermost() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: message/rfc822\n\n"
        b"Content-Type: multipart/alternative; boundary=b\n\n"
        b"--b\n\ninner one\n--b--\n"
        b"--b\n\nouter two\n--b--\n"
    )
    m = parse(raw)
    rfc822, two = m.children
    assert [c.body for c in rfc822.message.children] == [b"inner one"]
    assert two.body == b"outer two"


def test_digest_children_default_to_message_rfc822() -> None:
    m = parse(
        b"Content-Type: multipart/digest; boundary=d\n\n"
        b"--d\n\nSubject: one\n\nfirst\n"
        b"--d\nContent-Type: text/plain\n\nnot a message\n--d--\n"
    )
    one, two = m.children
    assert one.mime_type == "message/rfc822"
    assert one.message.get("subject") == b"one"
    assert one.message.body == b"first"
    assert two.mime_type == "text/plain" and two.message is None


def test_message_rfc822_and_global() -> None:
    for subtype in (b"rfc822", b"global"):
        m = parse(b"Content-Type: message/" + subtype + b"\n\nSubject: inner\n\ninner body\n")
        inner = m.message
        assert inner is not None and inner.parent is m and inner.depth == 1
        assert inner.get("subject") == b"inner"
        assert (inner.start, inner.end) == (m.body_start, m.end)
        assert inner.body == b"inner body\n"
        assert m.lines == 3


def test_depth_limit() -> None:
    depth = 200
    # fixed width: b5 would be a prefix of b50, and a prefix is a match
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%03d\n\n--b%03d\n" % (i, i) for i in range(depth)
    )
    raw += b"\nleaf\n"
    m = parse(raw)
    parts = list(m.walk())
    assert max(p.depth for p in parts) == message.MAX_DEPTH
    assert parts[-1].mime_type == "multipart/mixed" and not parts[-1].is_multipart


def test_message_rfc822_depth_limit() -> None:
    raw = b"Content-Type: message/rfc822\n\n" * 500 + b"Subject: bottom\n\nx"
    parts = list(parse(raw).walk())
    assert len(parts) == message.MAX_DEPTH + 1
    assert parts[-1].message is None


def test_parts_limit() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n" + b"--b\n\nx\n" * 30_000 + b"--b--\n"
    start = time.perf_counter()
    m = parse(raw)
    assert time.perf_counter() - start < 5
    assert len(m.children) == message.MAX_PARTS - 1
    assert m.children[-1].end == len(raw)  # past the limit the rest stays in the last part


def test_walk_order() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=o\n\n"
        b"--o\nContent-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=i\n\n"
        b"--i\n\na\n--i\n\nb\n--i--\n--o\n\nc\n--o--\n"
    )
    bodies = [p.body for p in parse(raw).walk() if not p.is_multipart and p.message is None]
    assert bodies == [b"a", b"b", b"c"]


def test_typical_message_parses_fast() -> None:
    data = crlf(TYPICAL)
    assert 2500 < len(data) < 4000
    parse(data)
    runs = 200
    start = time.perf_counter()
    for _ in range(runs):
        parse(data)
    per_parse = (time.perf_counter() - start) / runs
    assert per_parse < 0.002, f"{per_parse * 1e6:.0f} us per parse"


TYPICAL = (
    b"Return-Path: <alice@example.org>\n"
    b"Received: from mail.example.org (mail.example.org [192.0.2.1])\n"
    b"\tby mx.example.net (mailpair) with ESMTPS id 4F1A2B3C\n"
    b"\tfor <bob@example.net>; Tue, 1 Jul 2025 10:00:01 +0000\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=mail;\n"
    b"\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n"
    b"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSwganVzdCBmaWxsZXIgdGV4dA==\n"
    b"From: Alice Example <alice@example.org>\n"
    b"To: Bob Example <bob@example.net>, carol@example.net\n"
    b'Cc: "Dave, the third" <dave@example.net>\n'
    b"Subject: =?UTF-8?Q?Quarterly_r=C3=A9port?=\n"
    b"Date: Tue, 1 Jul 2025 10:00:00 +0000\n"
    b"Message-ID: <20250701100000.12345@example.org>\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="=_mixed_0001"\n'
    b"\n"
    b"This is a multi-part message in MIME format.\n"
    b"\n"
    b"--=_mixed_0001\n"
    b'Content-Type: multipart/alternative; boundary="=_alt_0002"\n'
    b"\n"
    b"--=_alt_0002\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: quoted-printable\n"
    b"\n" + b"Hello Bob, here is the quarterly r=C3=A9port we talked about.\n" * 12 + b"\n"
    b"--=_alt_0002\n"
    b"Content-Type: text/html; charset=utf-8\n"
    b"\n" + b"<p>Hello Bob, here is the quarterly report we talked about.</p>\n" * 12 + b"\n"
    b"--=_alt_0002--\n"
    b"\n"
    b"--=_mixed_0001\n"
    b'Content-Type: application/pdf; name="report.pdf"\n'
    b"Content-Transfer-Encoding: base64\n"
    b'Content-Disposition: attachment; filename="report.pdf"\n'
    b"\n"
    + b"JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURl\n"
    * 8
    + b"\n"
    b"--=_mixed_0001--\n"
)


# --- encoded words ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, text",
    [
        (b"plain text", "plain text"),
        (b"=?ISO-8859-1?Q?a?=", "a"),
        (b"=?ISO-8859-1?Q?a?= b", "a b"),
        (b"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"),
        (b"=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=", "ab"),
        (b"=?ISO-8859-1?Q?a_b?=", "a b"),
        (b"=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", "a b"),
        (b"(=?ISO-8859-1?Q?a?=)", "(a)"),
        (b"=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
        (
            b"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?= "
            b"=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
            "If you can read this you understand the example.",
        ),
        # a UTF-8 character split over two words
        (b"=?utf-8?B?4oI=?= =?utf-8?B?rA==?=", "€"),
        (b"=?utf-8*en?q?hello?=", "hello"),
        (b"=?x-unknown?Q?caf=C3=A9?=", "café"),
        (b"=?utf-8?B?not base64!?=", "=?utf-8?B?not base64!?="),
        (b"=?utf-8?B?YWJj?", "=?utf-8?B?YWJj?"),
        (b"=?utf-8?B?YWJjZ?=", "abc"),
        (b"=?base64?Q?x?=", "x"),
        (b"=?undefined?Q?x?=", "x"),
        (b"=?utf-8?Q?a?=\r\n =?utf-8?Q?b?=", "ab"),
        ("Grüße".encode(), "Grüße"),
        ("Grüße".encode("cp1252"), "Grüße"),
        (None, ""),
        ("already text =?utf-8?q?=C3=A9?=", "already text é"),
    ],
)
def test_decode_header_text(raw, text: str) -> None:
    assert decode_header_text(raw) == text


def test_decode_bytes_falls_back() -> None:
    assert decode_bytes("é".encode(), "no-such") == "é"
    assert decode_bytes(b"\xe9", None) == "é"
    assert decode_bytes(b"\xe9", "us-ascii") == "\ufffd"
    assert decode_bytes("€".encode(), "hex") == "€"  # not a text codec


# --- addresses ----------------------------------------------------------------


def A(name, route, mailbox, host) -> Address:
    enc = lambda v: v.encode() if isinstance(v, str) else v  # noqa: E731
    return Address(enc(name), enc(route), enc(mailbox), enc(host))


END = A(None, None, None, None)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"", []),
        (b"alice@example.org", [A(None, None, "alice", "example.org")]),
        (b"Alice <alice@example.org>", [A("Alice", None, "alice", "example.org")]),
        (b'"Smith, John" <js@x.org>', [A("Smith, John", None, "js", "x.org")]),
        (b"John Q. Public <jqp@x.org>", [A("John Q. Public", None, "jqp", "x.org")]),
        (b"a@b (Real Name)", [A("Real Name", None, "a", "b")]),
        (b"Name (comment) <a@b>", [A("Name", None, "a", "b")]),
        (b"<@r1,@r2:a@b>", [A(None, "@r1,@r2", "a", "b")]),
        (b'"quoted local"@x.org', [A(None, None, "quoted local", "x.org")]),
        (b"john . smith @ example . org", [A(None, None, "john.smith", "example.org")]),
        (b"a@[192.0.2.1]", [A(None, None, "a", "[192.0.2.1]")]),
        (
            b"a@x, , b@y,",
            [A(None, None, "a", "x"), A(None, None, "b", "y")],
        ),
        (
            b"undisclosed-recipients:;",
            [A(None, None, "undisclosed-recipients", None), END],
        ),
        (
            b'Team: ann@x, "Bob, Jr." <bob@x>;, carl@x',
            [
                A(None, None, "Team", None),
                A(None, None, "ann", "x"),
                A("Bob, Jr.", None, "bob", "x"),
                END,
                A(None, None, "carl", "x"),
            ],
        ),
        (b"open group: a@x", [A(None, None, "open group", None), A(None, None, "a", "x"), END]),
        (b"John", [A("John", None, "", "")]),
        (b"root (Cron Daemon)", [A("Cron Daemon", None, "root", "")]),
        (b"<>", [A(None, None, "", "")]),
        (b"<alice>", [A(None, None, "alice", "")]),
        (b"(just a comment)", []),
        (b"a@x; b@y", [A(None, None, "a", "x"), A(None, None, "b", "y")]),
        (
            "Jürgen <j@x.de>".encode(),
            [A("Jürgen".encode(), None, "j", "x.de")],
        ),
        (
            b"=?utf-8?Q?J=C3=BCrgen?= M <j@x.de>",
            [A("=?utf-8?Q?J=C3=BCrgen?= M", None, "j", "x.de")],
        ),
        (b'"unterminated <a@b>', [A("unterminated <a@b>", None, "", "")]),
        (b"Broken <a@b", [A("Broken", None, "a", "b")]),
        (b"a@x", [A(None, None, "a", "x")]),
    ],
)
def test_parse_addresses(raw, expected) -> None:
    assert parse_addresses(raw) == expected


def test_parse_addresses_accepts_str() -> None:
    assert parse_addresses("Zoë <z@x>") == [A("Zoë".encode(), None, "z", "x")]


# --- robustness ---------------------------------------------------------------

_LINES = st.sampled_from(
    [
        b"",
        b"--b",
        b"--b--",
        b"--c",
        b"--c--",
        b"--bc",
        b"Content-Type: multipart/mixed; boundary=b",
        b"Content-Type: multipart/alternative; boundary=c",
        b"Content-Type: multipart/digest; boundary=bc",
        b"Content-Type: message/rfc822",
        b"Content-Type: message/global",
        b"Content-Type: text/plain; charset*0*=utf-8''%C3; charset*1*=%A9",
        b"Content-Disposition: attachment; filename*=x''%",
        b"From: a@b, group: c@d;",
        b"Subject: =?utf-8?B?w6k=?=",
        b" folded",
        b"text",
        b"\xff\x00\r",
        b"no colon",
    ]
)
_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r", b""])


@st.composite
def mime_soup(draw) -> bytes:
    lines = draw(st.lists(st.tuples(_LINES, _ENDS), max_size=40))
    return b"".join(line + end for line, end in lines)


def _check_tree(data: bytes) -> None:
    m = parse(data)
    assert crlf_size(data) == len(crlf(data))
    for part in m.walk():
        assert part.data is m.data
        assert part.start <= part.fields_end <= part.body_start <= part.end <= len(data)
        assert part.size == len(crlf(part.body))
        assert part.lines == crlf(part.body).count(b"\r\n")
        for child in part.children:
            assert part.body_start <= child.start and child.end <= part.end
        if part.message is not None:
            assert part.message.start == part.body_start and part.message.end == part.end
        part.header_text(["subject", "content-type"])
        part.header_text(["subject"], exclude=True)
        decode_header_text(part.get("subject"))
        parse_addresses(part.get("from"))
        _ = part.filename, part.charset


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _check_tree(data)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=500)
@given(mime_soup())
def test_mime_soup_never_raises(data: bytes) -> None:
    _check_tree(data)


@given(st.binary(max_size=300))
def test_header_helpers_never_raise(raw: bytes) -> None:
    decode_header_text(raw)
    parse_addresses(raw)
    parse_content_type(raw)
    parse_disposition(raw)
    parse_language(raw)
