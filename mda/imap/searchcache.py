"""The text SEARCH matches in a message's address, subject and date fields,
as the index keeps it (key KEY), so that header searches open no file.

FETCH writes it whenever it has parsed a header anyway (the first ENVELOPE),
SEARCH whenever it had to read one. What is stored is what the matcher
compares, not the raw fields: From, To, Cc, Bcc and Subject each as the
list of their values unfolded, RFC 2047-decoded and case-folded
(`folded`), Date as its values' text (SENTBEFORE parses it, HEADER DATE
folds it then). A search then costs a substring test per message, and a
needle that does not occur anywhere in a record rules the message out
before anything is decoded (`may_contain`).

The usual form is one string: MARK, then the six fields in FIELDS order
separated by FIELD_SEP, each value preceded by VALUE_SEP (so no values and
one empty value differ). A message whose text holds one of those
characters is stored as JSON instead. Anything else under the key
(damage) reads as absent, and the message is read again. (The raw fields
an earlier version kept under "search-headers" are not read.)
"""

from __future__ import annotations

import json
from typing import Protocol

from mda.imap.search import decode_words
from mda.store.headerfields import decode_bytes

KEY = "search-text"
FIELDS = ("from", "to", "cc", "bcc", "subject", "date")  # lower case
FOLDED = frozenset(FIELDS[:5])
MARK = "\x02"
FIELD_SEP = "\x01"
VALUE_SEP = "\x00"

Fields = dict[str, list[str]]


class HasFields(Protocol):
    def get_all(self, name: str) -> list[bytes]: ...


def text(raw: bytes) -> str:
    """A raw field value as the matcher reads it: UTF-8, else Windows-1252."""
    if raw.isascii():
        return raw.decode("ascii")  # what decode_bytes gives, sooner
    return decode_bytes(raw, None)


def folded(value: str) -> str:
    """What SEARCH FROM/SUBJECT/... compares a needle with (RFC 3501 6.4.4)."""
    return decode_words(value).casefold()


def fields_of(msg: HasFields) -> Fields:
    """The search text of a parsed message or header, decoded."""
    out: Fields = {}
    for name in FIELDS:
        values = [text(v) for v in msg.get_all(name)]
        out[name] = values if name == "date" else [folded(v) for v in values]
    return out


EMPTY: Fields = {name: [] for name in FIELDS}


def record(msg: HasFields) -> str:
    """The stored form of a parsed message's (or header's) search fields:
    encode(fields_of(msg)), without the dictionary for the usual case."""
    get_all = msg.get_all
    parts = []
    count = 0
    for name in FIELDS:
        values = get_all(name)
        if not values:
            parts.append("")
            continue
        count += len(values)
        if name == "date":
            parts.append("".join([VALUE_SEP + text(v) for v in values]))
        else:
            parts.append("".join([VALUE_SEP + folded(text(v)) for v in values]))
    out = MARK + FIELD_SEP.join(parts)
    if out.count(FIELD_SEP) == len(FIELDS) - 1 and out.count(VALUE_SEP) == count:
        return out
    return encode(fields_of(msg))


def encode(fields: Fields) -> str:
    out = MARK + FIELD_SEP.join(
        "".join([VALUE_SEP + v for v in fields[name]]) for name in FIELDS)
    if out.count(FIELD_SEP) == len(FIELDS) - 1 and \
            out.count(VALUE_SEP) == sum(len(v) for v in fields.values()):
        return out
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def load(value: object) -> Fields | None:
    """The fields of a stored record; None when it is not one."""
    if not isinstance(value, str):
        return None
    if value.startswith(MARK):
        parts = value[1:].split(FIELD_SEP)
        if len(parts) != len(FIELDS):
            return None
        return {name: p.split(VALUE_SEP)[1:] for name, p in zip(FIELDS, parts, strict=True)}
    try:
        found = json.loads(value)
    except ValueError:
        return None
    if not isinstance(found, dict) or set(found) != set(FIELDS):
        return None
    for values in found.values():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return None
    return found


def may_contain(value: object, needle: str) -> bool:
    """False only when no field of the stored record can contain `needle`
    (folded): true of every field's text, since each is a piece of the
    record. JSON escapes its text, so a JSON record always may."""
    return not (isinstance(value, str) and value.startswith(MARK)) or needle in value
