"""Every command without FETCH or SEARCH, parsed to its dataclass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mda.imap import commands as c
from mda.imap.events import BadCommand
from mda.imap.seqset import SequenceSet

from .wire import one, run


@pytest.mark.parametrize(
    ("line", "cls"),
    [
        (b"a CAPABILITY", c.Capability),
        (b"a noop", c.Noop),
        (b"a LOGOUT", c.Logout),
        (b"a StartTLS", c.StartTLS),
        (b"a CHECK", c.Check),
        (b"a CLOSE", c.Close),
        (b"a UNSELECT", c.Unselect),
        (b"a IDLE", c.Idle),
        (b"a NAMESPACE", c.Namespace),
        (b"a EXPUNGE", c.Expunge),
    ],
)
def test_commands_without_arguments(line: bytes, cls: type) -> None:
    cmd = one(line)
    assert type(cmd) is cls
    assert cmd.tag == "a"
    assert cmd.name == line.split()[1].decode().upper()
    bad = one(line + b" extra")
    assert isinstance(bad, BadCommand) and bad.tag == "a"


def test_tags() -> None:
    assert one(b"A0001.x] NOOP").tag == "A0001.x]"
    for bad in (b"+a NOOP", b"a+ NOOP", b"(a NOOP", b"* NOOP", b'"a" NOOP', b" NOOP"):
        event = one(bad)
        assert isinstance(event, BadCommand)
    assert one(b"a+ NOOP").tag == "a"  # the tag stops at '+', then no space follows


def test_unknown_and_truncated() -> None:
    assert one(b"a FROB") == BadCommand("a", "unknown command FROB")
    assert one(b"a") == BadCommand("a", "expected a space, not the end of the command")
    assert one(b"a UID FROB 1") == BadCommand("a", "UID FROB is not a command")
    assert one(b"a UID COPY") == BadCommand(
        "a", "UID COPY: expected a space, not the end of the command"
    )


def test_login_forms() -> None:
    assert one(b"a LOGIN alice secret") == c.Login("a", "alice", "secret")
    assert one(b'a LOGIN "al ice" "p\\"w\\\\d"') == c.Login("a", "al ice", 'p"w\\d')
    events = run([b"a LOGIN {5+}\r\nalice {3}\r\n", b"\xc3\xa9x\r\n"])
    assert events[-1] == c.Login("a", "alice", "éx")
    # Bytes that are not UTF-8 survive as surrogate escapes.
    cmd = one(b'a LOGIN bob "\xff\xfe"')
    assert cmd.password.encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert isinstance(one(b"a LOGIN alice"), BadCommand)
    assert isinstance(one(b"a LOGIN (alice) x"), BadCommand)


def test_authenticate() -> None:
    assert one(b"a AUTHENTICATE plain") == c.Authenticate("a", "PLAIN", None)
    assert one(b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==") == c.Authenticate(
        "a", "PLAIN", "AGFsaWNlAHNlY3JldA=="
    )
    assert one(b"a AUTHENTICATE PLAIN =") == c.Authenticate("a", "PLAIN", "")
    assert isinstance(one(b"a AUTHENTICATE PLAIN =x"), BadCommand)
    assert isinstance(one(b"a AUTHENTICATE PLAIN abc!"), BadCommand)
    assert isinstance(one(b"a AUTHENTICATE"), BadCommand)


def test_select_and_examine() -> None:
    assert one(b"a SELECT inbox") == c.Select("a", "INBOX")
    assert one(b"a select InBoX (condstore)") == c.Select("a", "INBOX", condstore=True)
    examine = one(b'a EXAMINE "Sent Items"')
    assert examine == c.Select("a", "Sent Items", readonly=True)
    assert examine.name == "EXAMINE"
    assert one(b"a SELECT Entw&APw-rfe").mailbox == "Entwürfe"
    assert one(b"a SELECT INBOX/Sub").mailbox == "INBOX/Sub"
    assert one(b"a SELECT inbox.sub").mailbox == "inbox.sub"  # only INBOX itself folds
    assert isinstance(one(b"a SELECT INBOX (QRESYNC (1 2))"), BadCommand)
    assert isinstance(one(b"a SELECT INBOX ()"), BadCommand)
    bad = one(b"a SELECT &AGE-")
    assert isinstance(bad, BadCommand) and "modified UTF-7" in bad.message
    assert isinstance(one(b'a SELECT "caf\xc3\xa9"'), BadCommand)


def test_mailbox_commands() -> None:
    assert one(b"a CREATE Archive/2024") == c.Create("a", "Archive/2024")
    assert one(b"a CREATE Spam (USE (\\junk))") == c.Create("a", "Spam", ("\\Junk",))
    assert one(b"a CREATE S (USE (\\Sent \\Archive))").special_use == ("\\Sent", "\\Archive")
    assert isinstance(one(b"a CREATE S (USE (\\Bogus))"), BadCommand)
    assert isinstance(one(b"a CREATE S (FOO (\\Sent))"), BadCommand)
    assert one(b"a DELETE {5+}\r\nTrash") == c.Delete("a", "Trash")
    assert one(b'a RENAME old "new name"') == c.Rename("a", "old", "new name")
    assert one(b"a SUBSCRIBE inbox") == c.Subscribe("a", "INBOX")
    assert one(b"a UNSUBSCRIBE News") == c.Unsubscribe("a", "News")
    assert isinstance(one(b"a RENAME old"), BadCommand)


def test_list_basic() -> None:
    assert one(b'a LIST "" *') == c.List("a", "", ("*",))
    assert one(b'a LIST "" ""') == c.List("a", "", ("",))
    assert one(b"a LIST ~/Mail/ %") == c.List("a", "~/Mail/", ("%",))
    assert one(b'a LIST "" INBOX/&AOk-*').patterns == ("INBOX/é*",)
    assert one(b'a LIST "" "Sent Items"').patterns == ("Sent Items",)
    assert one(b'a LSUB "" news.*') == c.Lsub("a", "", "news.*")


def test_list_extended() -> None:
    cmd = one(b'a LIST (SUBSCRIBED REMOTE) "" ("INBOX" "Drafts/%") RETURN (CHILDREN)')
    assert cmd == c.List(
        "a",
        "",
        ("INBOX", "Drafts/%"),
        frozenset({"SUBSCRIBED", "REMOTE"}),
        frozenset({"CHILDREN"}),
        None,
        True,
    )
    cmd = one(b'a LIST "" % RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN HIGHESTMODSEQ))')
    assert cmd.return_options == {"SPECIAL-USE"}
    assert cmd.status_items == ("MESSAGES", "UNSEEN", "HIGHESTMODSEQ")
    assert cmd.extended
    assert one(b'a LIST () "" %').extended
    assert one(b'a LIST "" % RETURN ()').return_options == frozenset()
    assert one(b'a LIST (special-use) "" *').select_options == {"SPECIAL-USE"}
    assert one(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" %').select_options == {
        "SUBSCRIBED",
        "RECURSIVEMATCH",
    }
    for bad in (
        b'a LIST (RECURSIVEMATCH) "" %',
        b'a LIST (BOGUS) "" %',
        b'a LIST "" % RETURN (BOGUS)',
        b'a LIST "" % RETURN (STATUS ())',
        b'a LIST "" % RETURN (STATUS (SIZE))',
        b'a LIST "" % TRAILING (x)',
        b'a LIST "" ()',
    ):
        assert isinstance(one(bad), BadCommand), bad


def test_status() -> None:
    cmd = one(b"a STATUS inbox (messages UIDNEXT uidvalidity UNSEEN recent HIGHESTMODSEQ)")
    assert cmd == c.Status(
        "a", "INBOX", ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "HIGHESTMODSEQ")
    )
    assert isinstance(one(b"a STATUS inbox ()"), BadCommand)
    assert isinstance(one(b"a STATUS inbox (SIZE)"), BadCommand)
    assert isinstance(one(b"a STATUS inbox MESSAGES"), BadCommand)


def test_append() -> None:
    tz = timezone(-timedelta(hours=7))
    events = run(
        [
            b'a APPEND saved-messages (\\Seen $Label1) "17-Jul-1996 02:44:25 -0700" {12}\r\n',
            b"Hello\r\nworld\r\n",
        ]
    )
    assert events[-1] == c.Append(
        "a",
        "saved-messages",
        b"Hello\r\nworld",
        ("\\Seen", "$Label1"),
        datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz),
    )
    assert one(b"a APPEND INBOX {3+}\r\nabc") == c.Append("a", "INBOX", b"abc")
    assert one(b"a APPEND INBOX () {0+}\r\n") == c.Append("a", "INBOX", b"")
    assert one(b'a APPEND INBOX " 1-Jan-2024 00:00:00 +0000" {1+}\r\nx').date == datetime(
        2024, 1, 1, tzinfo=UTC
    )
    for bad in (
        b'a APPEND INBOX "abc"',
        b"a APPEND INBOX",
        b"a APPEND INBOX (\\Recent) {1+}\r\nx",
        b'a APPEND INBOX "31-Feb-2024 00:00:00 +0000" {1+}\r\nx',
        b'a APPEND INBOX "1-Jan-2024 25:00:00 +0000" {1+}\r\nx',
        b'a APPEND INBOX "1-Jan-2024 00:00:00 +2400" {1+}\r\nx',
        b"a APPEND INBOX ~{1+}\r\nx",
        b"a APPEND INBOX {1+}\r\nx {1+}\r\ny",
    ):
        assert isinstance(one(bad), BadCommand), bad


def test_enable_and_id() -> None:
    assert one(b"a ENABLE condstore utf8=accept") == c.Enable("a", ("CONDSTORE", "UTF8=ACCEPT"))
    assert isinstance(one(b"a ENABLE"), BadCommand)
    assert one(b"a ID NIL") == c.Id("a", None)
    assert one(b"a ID ()") == c.Id("a", ())
    assert one(b'a ID ("name" "Thunderbird" "version" NIL)') == c.Id(
        "a", (("name", "Thunderbird"), ("version", None))
    )
    assert isinstance(one(b'a ID ("name")'), BadCommand)
    assert isinstance(one(b"a ID (name x)"), BadCommand)
    too_many = b"a ID (" + b" ".join(b'"k%d" "v"' % i for i in range(31)) + b")"
    assert isinstance(one(too_many), BadCommand)
    assert isinstance(one(b'a ID ("k" "' + b"v" * 1025 + b'")'), BadCommand)


def test_copy_move_expunge() -> None:
    seq = SequenceSet.parse("2:4,9")
    assert one(b"a COPY 2:4,9 Trash") == c.Copy("a", seq, "Trash")
    assert one(b"a UID COPY 2:4,9 Trash") == c.Copy("a", seq, "Trash", uid=True)
    assert one(b"a MOVE 2:4,9 Trash") == c.Move("a", seq, "Trash")
    moved = one(b'a uid move 2:4,9 "Trash"')
    assert moved == c.Move("a", seq, "Trash", uid=True) and moved.name == "UID MOVE"
    uid_expunge = one(b"a UID EXPUNGE 2:4,9")
    assert uid_expunge == c.Expunge("a", seq) and uid_expunge.name == "UID EXPUNGE"
    assert isinstance(one(b"a COPY 0 Trash"), BadCommand)
    assert isinstance(one(b"a COPY x Trash"), BadCommand)
    assert isinstance(one(b"a UID EXPUNGE"), BadCommand)


def test_store() -> None:
    seq = SequenceSet.parse("1:*")
    assert one(b"a STORE 1:* FLAGS (\\Seen)") == c.Store("a", seq, c.StoreMode.REPLACE, ("\\Seen",))
    assert one(b"a STORE 1:* +FLAGS.SILENT (\\deleted \\SEEN)") == c.Store(
        "a", seq, c.StoreMode.ADD, ("\\Deleted", "\\Seen"), silent=True
    )
    assert one(b"a UID STORE 1:* -flags $Junk \\Flagged") == c.Store(
        "a", seq, c.StoreMode.REMOVE, ("$Junk", "\\Flagged"), uid=True
    )
    assert one(b"a STORE 1:* FLAGS ()").flags == ()
    assert one(b"a STORE 1:* (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)") == c.Store(
        "a", seq, c.StoreMode.ADD, ("\\Deleted",), silent=True, unchangedsince=320162338
    )
    assert one(b"a STORE 1 (UNCHANGEDSINCE 0) FLAGS ()").unchangedsince == 0
    for bad in (
        b"a STORE 1 FLAGS",
        b"a STORE 1 *FLAGS (\\Seen)",
        b"a STORE 1 FLAGS.LOUD (\\Seen)",
        b"a STORE 1 FLAGS (\\Recent)",
        b"a STORE 1 FLAGS (\\Bogus)",
        b"a STORE 1 FLAGS (\\*)",
        b"a STORE 1 (FOO 1) FLAGS ()",
        b"a STORE 1 (UNCHANGEDSINCE 9223372036854775808) FLAGS ()",
        b"a STORE 1 FLAGS (\\Seen",
        b"a STORE 1 FLAGS (a  b)",
    ):
        assert isinstance(one(bad), BadCommand), bad


def test_names_include_uid() -> None:
    assert one(b"a UID FETCH 1 FLAGS").name == "UID FETCH"
    assert one(b"a FETCH 1 FLAGS").name == "FETCH"
    assert one(b"a UID SEARCH ALL").name == "UID SEARCH"
    assert one(b"a UID STORE 1 FLAGS ()").name == "UID STORE"
