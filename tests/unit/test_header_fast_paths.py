"""The shortcuts of the header readers give what the general code gives.

`message._fields_at_once`, `message.parse_header`, `headerscan.FieldReader`
and `addresses._simple_addresses` exist only for speed; each is checked
here against the code it shortcuts, on headers and address lists built to
hit the shapes where they could differ (folding, CRs, odd names, quotes,
comments, groups, 8-bit bytes).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mda.store.addresses import Address, _parse_address_list, _simple_addresses, parse_addresses
from mda.store.headerscan import FieldReader, fields_end, unfold
from mda.store.message import _fields_at_once, _fields_by_line, parse, parse_header

NAMES = ["date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to",
         "message-id"]
READER = FieldReader(NAMES)

_FIELD_NAMES = st.sampled_from([
    b"From", b"from", b"TO", b"Cc", b"bcc", b"Subject", b"Date", b"Sender", b"Reply-To",
    b"In-Reply-To", b"Message-ID", b"Received", b"X-To", b"To-Do", b"Subject ", b"Sub ject",
    b"\tTo", b" Subject", b"", b"\xffFrom", b"Fr\xf6m", b"To\t", b"Content-Type",
])
_COLONS = st.sampled_from([b":", b": ", b":\t", b" : ", b"::", b":  \t "])
_VALUES = st.one_of(
    st.sampled_from([b"", b" ", b"hello", b"=?utf-8?q?caf=C3=A9?=", b"a\rb", b"x\r", b"\r",
                     b"Ann <a@b.example>", b"caf\xc3\xa9", b"\xe9t\xe9", b"\x00\x01", b"a:b"]),
    st.binary(max_size=12),
)
_CONTINUATIONS = st.sampled_from([b" folded", b"\tmore", b" ", b"\t", b"  =?utf-8?q?x?=",
                                  b" \r", b"\t:colon"])
_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r\r\n"])
_STRAYS = st.sampled_from([b"no colon", b"\r", b"", b" stray", b"\xff", b":novalue", b"--b"])


@st.composite
def headers(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 9))
        if kind < 7:
            lines.append(draw(_FIELD_NAMES) + draw(_COLONS) + draw(_VALUES))
            for _ in range(draw(st.integers(0, 2))):
                lines.append(draw(_CONTINUATIONS))
        else:
            lines.append(draw(_STRAYS))
    ends = [draw(_ENDS) for _ in lines]
    data = b"".join(line + end for line, end in zip(lines, ends, strict=True))
    tail = draw(st.sampled_from([b"", b"\n", b"\r\n", b"\nbody\n", b"\r\nbody", b"\n\n"]))
    if draw(st.booleans()) and ends:
        data = data[: -len(ends[-1])]  # a last line without its line end
    return data + tail


SETTINGS = settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(headers())
def test_fields_at_once_is_the_line_by_line_reading(data: bytes) -> None:
    block = data[: parse(data).fields_end]
    fast = _fields_at_once(block)
    assert fast is None or fast == _fields_by_line(block)


@SETTINGS
@given(st.one_of(headers(), st.binary(max_size=200)))
def test_parse_header_is_the_root_of_parse(data: bytes) -> None:
    full, head = parse(data), parse_header(data)
    assert (head.start, head.fields_end, head.body_start, head.end) == \
        (full.start, full.fields_end, full.body_start, full.end)
    assert head.fields == full.fields
    assert head.header == full.header and head.body == full.body
    assert fields_end(data) == full.fields_end
    for name in {n.lower() for n, _ in full.fields} | set(NAMES):
        assert head.get_all(name) == full.get_all(name)


@SETTINGS
@given(st.one_of(headers(), st.binary(max_size=200)))
def test_field_reader_finds_what_parse_finds(data: bytes) -> None:
    full, found = parse(data), READER.read(data)
    for name in NAMES:
        assert found.get_all(name) == full.get_all(name), name
        assert found.get(name.upper()) == full.get(name)


def test_the_usual_header_takes_the_shortcut() -> None:
    block = (b"Received: from a\n\tby b; Mon, 1 Jan 2024\nFrom: Ann <a@b>\r\n"
             b"Subject:\n  folded\nX-Empty:\n")
    assert _fields_at_once(block) == [
        ("Received", b"from a\tby b; Mon, 1 Jan 2024"), ("From", b"Ann <a@b>"),
        ("Subject", b"folded"), ("X-Empty", b"")]
    assert _fields_at_once(b"no colon\nFrom: a@b\n") is None


def test_unfold() -> None:
    assert unfold(b"a\r\n b\n\tc\r") == b"a b\tc"
    assert unfold(b"\r\n  x") == b"x"
    assert unfold(b"a\r\r") == b"a\r"


# --- addresses ------------------------------------------------------------------

_ATOMS = st.sampled_from([b"ann", b"Bob", b"j.r.r", b"x-y_z", b"=?utf-8?q?J=C3=BCrgen?=",
                          b"caf\xc3\xa9", b"\xff", b"a+b", b"o'neil", b"1"])
_JUNK = st.sampled_from([b"(", b")", b"(c)", b":", b";", b"[1.2.3.4]", b"\\", b'"', b"<", b">",
                         b"@", b"\r", b"\x0b", b",", b" ", b"\t", b".", b"<>", b"group:",
                         b'"q\\"x"'])


@st.composite
def phrase(draw) -> bytes:
    words = draw(st.lists(_ATOMS, min_size=1, max_size=3))
    gaps = [draw(st.sampled_from([b" ", b"  ", b"\t", b" \t", b".", b". ", b""])) for _ in words]
    return b"".join(g + w for g, w in zip(gaps, words, strict=True)).strip(b" \t")


@st.composite
def dotted(draw) -> bytes:
    return b".".join(draw(st.lists(_ATOMS, min_size=1, max_size=3)))


@st.composite
def element(draw) -> bytes:
    spec = draw(dotted()) + b"@" + draw(dotted())
    kind = draw(st.integers(0, 5))
    if kind == 0:
        out = spec
    elif kind == 1:
        out = b"<" + spec + b">"
    elif kind == 2:
        out = draw(phrase()) + draw(st.sampled_from([b" ", b"", b"\t "])) + b"<" + spec + b">"
    elif kind == 3:
        inner = draw(st.sampled_from([b"", b"Doe, John", b"a@b", b"x<y>", b"caf\xc3\xa9", b" "]))
        out = b'"' + inner + b'" <' + spec + b">"
    elif kind == 4:
        out = draw(phrase())
    else:
        out = draw(_JUNK) + spec
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(out)))
        out = out[:at] + draw(_JUNK) + out[at:]
    pad = st.sampled_from([b"", b" ", b"\t"])
    return draw(pad) + out + draw(pad)


@st.composite
def address_lists(draw) -> bytes:
    items = draw(st.lists(element(), min_size=1, max_size=4))
    seps = [draw(st.sampled_from([b",", b", ", b" ,", b",,", b";"])) for _ in items[1:]]
    out = items[0]
    for sep, item in zip(seps, items[1:], strict=True):
        out += sep + item
    return out + draw(st.sampled_from([b"", b",", b", ", b" "]))


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(address_lists(), st.binary(max_size=40)))
def test_simple_addresses_are_read_as_the_tokenizer_reads_them(raw: bytes) -> None:
    fast = _simple_addresses(raw)
    assert fast is None or fast == _parse_address_list(raw)


@pytest.mark.parametrize("raw", [
    b"Ann <a@b.example>",
    b"  Ann   Smith\t<a.x@b.example>  ,  <c@d> , e@f.g",
    b'"Doe, John" <j@x>',
    b'"" <j@x>',
    b"J.R.R. Tolkien <t@x>",
    b"=?utf-8?q?J=C3=BCrgen?= M <j@x.de>",
    b"Name<a@b>",
    b"a@b,",
    "Zoë <z@x>".encode(),
])
def test_common_lists_take_the_shortcut(raw: bytes) -> None:
    fast = _simple_addresses(raw)
    assert fast is not None
    assert fast == _parse_address_list(raw) == parse_addresses(raw)


@pytest.mark.parametrize("raw", [
    b"root (Cron Daemon)", b"undisclosed-recipients:;", b'"a\\"b" <a@b>', b"<@hop:a@b>",
    b"a@[1.2.3.4]", b"John", b"<>", b"a@b,,c@d", b'"unterminated <a@b>', b"Broken <a@b",
    b"a@b c", b"x <a@b@c>",
])
def test_unusual_lists_take_the_long_way(raw: bytes) -> None:
    assert _simple_addresses(raw) is None
    assert parse_addresses(raw) == _parse_address_list(raw)


def test_shortcut_results_are_addresses() -> None:
    assert parse_addresses(b"Ann  Smith <a@b>, c.d@e") == [
        Address(b"Ann Smith", None, b"a", b"b"), Address(None, None, b"c.d", b"e")]
