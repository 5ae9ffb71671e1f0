"""FETCH data items: what a client may ask of a message, and their grammar.

`FetchItem` is an item named by one word (FLAGS, ENVELOPE, ...);
`BodySection` is `BODY[section]<partial>` and `BODY.PEEK[...]`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .grammar import ATOM_CHARS, Cursor, ParseError

SIMPLE_ITEMS = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)
MACROS = {
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SECTION_TEXTS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")
# RFC 5322 ftext: what a header field name may be made of.
_FIELD_CHARS = frozenset(c for c in range(33, 127) if c != ord(":"))
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")


@dataclass(frozen=True)
class FetchItem:
    """ENVELOPE, FLAGS, INTERNALDATE, RFC822, RFC822.HEADER, RFC822.SIZE,
    RFC822.TEXT, BODY (structure without extensions), BODYSTRUCTURE, UID
    or MODSEQ; the response names the item the same way."""

    name: str

    @property
    def sets_seen(self) -> bool:
        return self.name in ("RFC822", "RFC822.TEXT")


@dataclass(frozen=True)
class Section:
    """The part of `BODY[...]`: `part` is the MIME part path (() for the
    whole message); `text` is None, HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, TEXT or MIME; `fields` the header names as sent."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def spec(self) -> str:
        """The section as it goes back in the response: `1.2.HEADER.FIELDS (FROM)`."""
        out = ".".join(map(str, self.part))
        if self.text:
            out += ("." if out else "") + self.text
        if self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            out += " (" + " ".join(map(_field_wire, self.fields)) + ")"
        return out


@dataclass(frozen=True)
class BodySection:
    """`partial` is (origin, count) from `<origin.count>`, or None."""

    section: Section = Section()
    peek: bool = False
    partial: tuple[int, int] | None = None

    @property
    def sets_seen(self) -> bool:
        return not self.peek

    def response_name(self) -> str:
        """`BODY[1.TEXT]<0>`: never PEEK, and only the origin of a partial."""
        return _response_name(self)


# FETCH 1:* of a header-field list names the same section for each of 100,000
# messages: worked out once per command, not once per message.
@functools.lru_cache(maxsize=256)
def _response_name(att: BodySection) -> str:
    name = f"BODY[{att.section.spec()}]"
    if att.partial is not None:
        name += f"<{att.partial[0]}>"
    return name


FetchAtt = FetchItem | BodySection


def parse_fetch_atts(cur: Cursor) -> tuple[FetchAtt, ...]:
    """A macro, one item, or a parenthesized list of items."""
    items: list[FetchAtt] = []
    if cur.peek() == ord("("):
        items.extend(cur.parenthesized(lambda: _fetch_att(cur)))
    else:
        start = cur.pos
        word = _name(cur)
        if word in MACROS and not cur.peek_is(b"["):
            items.extend(FetchItem(n) for n in MACROS[word])
        else:
            cur.pos = start
            items.append(_fetch_att(cur))
    return tuple(dict.fromkeys(items))


def _name(cur: Cursor) -> str:
    start = cur.pos
    while cur.peek() is not None and cur.peek() in _NAME_CHARS:
        cur.pos += 1
    return cur.data[start : cur.pos].decode("ascii").upper()


def _fetch_att(cur: Cursor) -> FetchAtt:
    start = cur.pos
    word = _name(cur)
    if word in ("BODY", "BODY.PEEK") and cur.peek() == ord("["):
        section = _section(cur)
        partial = _partial(cur) if cur.peek() == ord("<") else None
        return BodySection(section, word == "BODY.PEEK", partial)
    if word in SIMPLE_ITEMS and (cur.at_end() or cur.peek() not in ATOM_CHARS):
        return FetchItem(word)
    cur.pos = start
    raise cur.fail("a FETCH data item")


def _section(cur: Cursor) -> Section:
    cur.expect(b"[")
    part: list[int] = []
    text = None
    if cur.peek() is not None and cur.peek() in b"123456789":
        part.append(cur.nz_number("a part number"))
        while cur.take(b"."):
            if cur.peek() is not None and cur.peek() in b"0123456789":
                part.append(cur.nz_number("a part number"))
            else:
                text = _section_text(cur, allow_mime=True)
                break
    elif cur.peek() != ord("]"):
        text = _section_text(cur, allow_mime=False)
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        cur.sp()
        fields = _header_list(cur)
    cur.expect(b"]", "']' to end the section")
    return Section(tuple(part), text, fields)


def _section_text(cur: Cursor, allow_mime: bool) -> str:
    start = cur.pos
    word = _name(cur)
    if word in SECTION_TEXTS and (word != "MIME" or allow_mime):
        return word
    cur.pos = start
    if word == "MIME":
        raise ParseError("MIME needs a part number, as in BODY[1.MIME]")
    raise cur.fail("HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME")


def _header_list(cur: Cursor) -> tuple[str, ...]:
    return tuple(cur.parenthesized(lambda: _field_name(cur)))


def _field_name(cur: Cursor) -> str:
    raw = cur.astring("a header field name")
    if not raw or any(c not in _FIELD_CHARS for c in raw):
        raise ParseError(f"{raw!r} is not a header field name")
    return raw.decode("ascii")


def _field_wire(name: str) -> str:
    if all(ord(c) in ATOM_CHARS for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _partial(cur: Cursor) -> tuple[int, int]:
    cur.expect(b"<")
    origin = cur.number(what="the partial origin")
    cur.expect(b".", "'.' and the octet count")
    count = cur.nz_number("the octet count")
    cur.expect(b">", "'>'")
    return origin, count
