"""FETCH: items, macros, sections, partials and CHANGEDSINCE."""

from __future__ import annotations

import pytest

from mda.imap.commands import Fetch
from mda.imap.events import BadCommand
from mda.imap.fetchitems import BodySection, FetchItem, Section
from mda.imap.seqset import SequenceSet

from .wire import one


def items(spec: bytes) -> tuple:
    cmd = one(b"a FETCH 1 " + spec)
    assert isinstance(cmd, Fetch), cmd
    return cmd.items


def test_whole_command() -> None:
    cmd = one(b"a UID FETCH 1:*,7 (FLAGS UID) (CHANGEDSINCE 12345)")
    assert cmd == Fetch(
        "a",
        SequenceSet(((1, None), (7, 7))),
        (FetchItem("FLAGS"), FetchItem("UID")),
        uid=True,
        changedsince=12345,
    )
    assert one(b"a FETCH 2 FLAGS").changedsince is None


@pytest.mark.parametrize(
    "name",
    [
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
    ],
)
def test_simple_items(name: str) -> None:
    assert items(name.encode()) == (FetchItem(name),)
    assert items(name.lower().encode()) == (FetchItem(name),)


def test_macros() -> None:
    fast = (FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE"))
    assert items(b"FAST") == fast
    assert items(b"all") == (*fast, FetchItem("ENVELOPE"))
    assert items(b"FULL") == (*fast, FetchItem("ENVELOPE"), FetchItem("BODY"))
    # A macro is not an item: it cannot go in a list.
    assert isinstance(one(b"a FETCH 1 (ALL)"), BadCommand)


def test_lists_keep_order_and_drop_repeats() -> None:
    assert items(b"(UID FLAGS uid BODY[])") == (
        FetchItem("UID"),
        FetchItem("FLAGS"),
        BodySection(),
    )


@pytest.mark.parametrize(
    ("spec", "item"),
    [
        (b"BODY[]", BodySection(Section())),
        (b"BODY.PEEK[]", BodySection(Section(), peek=True)),
        (b"BODY[HEADER]", BodySection(Section(text="HEADER"))),
        (b"body.peek[text]", BodySection(Section(text="TEXT"), peek=True)),
        (b"BODY[1]", BodySection(Section((1,)))),
        (b"BODY[1.2.3]", BodySection(Section((1, 2, 3)))),
        (b"BODY[2.MIME]", BodySection(Section((2,), "MIME"))),
        (b"BODY[3.1.HEADER]", BodySection(Section((3, 1), "HEADER"))),
        (b"BODY[4.TEXT]", BodySection(Section((4,), "TEXT"))),
        (
            b"BODY[HEADER.FIELDS (From To Subject)]",
            BodySection(Section(text="HEADER.FIELDS", fields=("From", "To", "Subject"))),
        ),
        (
            b'BODY.PEEK[1.HEADER.FIELDS.NOT ("X-Spam" {4+}\r\nDate)]',
            BodySection(Section((1,), "HEADER.FIELDS.NOT", ("X-Spam", "Date")), peek=True),
        ),
        (b"BODY[]<0.2048>", BodySection(Section(), partial=(0, 2048))),
        (b"BODY.PEEK[1.TEXT]<100.5>", BodySection(Section((1,), "TEXT"), True, (100, 5))),
    ],
)
def test_body_sections(spec: bytes, item: BodySection) -> None:
    assert items(spec) == (item,)
    assert items(b"(" + spec + b" FLAGS)") == (item, FetchItem("FLAGS"))


@pytest.mark.parametrize(
    "spec",
    [
        b"BODY[MIME]",  # MIME needs a part
        b"BODY[0]",
        b"BODY[1.]",
        b"BODY[1.2.FOO]",
        b"BODY[HEADER.FIELDS]",
        b"BODY[HEADER.FIELDS ()]",
        b"BODY[HEADER.FIELDS (a:b)]",
        b"BODY[HEADER.FIELDS (From]",
        b"BODY[TEXT",
        b"BODY[]<0>",
        b"BODY[]<0.0>",
        b"BODY[]<x.1>",
        b"BODY.PEEK",
        b"BODYSTRUCTURE[]",
        b"RFC822.BODY",
        b"BINARY[]",
        b"FLAGSX",
        b"()",
        b"(FLAGS",
        b"(FLAGS  UID)",
        b"FLAGS UID",
    ],
)
def test_bad_items(spec: bytes) -> None:
    assert isinstance(one(b"a FETCH 1 " + spec), BadCommand)


@pytest.mark.parametrize(
    "line",
    [
        b"a FETCH 1 FLAGS (CHANGEDSINCE)",
        b"a FETCH 1 FLAGS (VANISHED)",
        b"a FETCH 1 FLAGS ()",
        b"a FETCH 1 FLAGS (CHANGEDSINCE x)",
        b"a FETCH FLAGS",
        b"a FETCH 1",
    ],
)
def test_bad_modifiers_and_shapes(line: bytes) -> None:
    assert isinstance(one(line), BadCommand)


def test_response_names() -> None:
    def name(spec: bytes) -> str:
        (item,) = items(spec)
        return item.response_name()

    assert name(b"BODY.PEEK[]") == "BODY[]"
    assert name(b"BODY[]<0.2048>") == "BODY[]<0>"
    assert name(b"body.peek[1.2.mime]<7.1>") == "BODY[1.2.MIME]<7>"
    assert name(b'BODY[HEADER.FIELDS (from "X(1)" "x\\\\y")]') == (
        'BODY[HEADER.FIELDS (from "X(1)" "x\\\\y")]'
    )
    assert name(b"BODY[3.HEADER.FIELDS.NOT (Date)]") == "BODY[3.HEADER.FIELDS.NOT (Date)]"


def test_sets_seen() -> None:
    assert BodySection().sets_seen
    assert not BodySection(peek=True).sets_seen
    assert FetchItem("RFC822").sets_seen and FetchItem("RFC822.TEXT").sets_seen
    assert not FetchItem("RFC822.HEADER").sets_seen and not FetchItem("FLAGS").sets_seen
