"""Each command's arguments: one complete command's bytes -> one event.

A handler reads what follows the command name and builds its dataclass;
anything left over, or any ParseError on the way, makes it a BadCommand.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from . import commands as c
from .events import BadCharset, BadCommand, Event
from .fetchitems import parse_fetch_atts
from .grammar import Cursor, ParseError, decode_name, text
from .searchkeys import CharsetError, parse_search

STATUS_ITEMS = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"}
)
SELECT_PARAMS = frozenset({"CONDSTORE"})
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"})
SPECIAL_USES = {
    u.upper(): u
    for u in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
# RFC 2971 bounds, so a client cannot make us keep an arbitrary table.
ID_MAX_PAIRS = 30
ID_MAX_FIELD = 30
ID_MAX_VALUE = 1024

Handler = Callable[[Cursor, str], c.Command]


def parse_command(data: bytes, max_depth: int = 100) -> Event:
    cur = Cursor(data, max_depth)
    try:
        tag = cur.tag()
    except ParseError as e:
        return BadCommand(None, str(e))
    name = ""
    try:
        cur.sp()
        word = cur.keyword("a command name")
        if word == "UID":
            cur.sp()
            sub = cur.keyword("a command after UID")
            handler = UID_COMMANDS.get(sub)
            if handler is None:
                raise ParseError(f"UID {sub} is not a command")
            name = "UID " + sub
        else:
            handler = COMMANDS.get(word)
            if handler is None:
                raise ParseError(f"unknown command {word}")
            name = word
        command = handler(cur, tag)
        cur.end()
        return command
    except CharsetError as e:
        return BadCharset(tag, name, e.charset)
    except ParseError as e:
        return BadCommand(tag, f"{name}: {e}" if name else str(e))


def _bare(cls: type[c.Command]) -> Handler:
    return lambda cur, tag: cls(tag)


def _mailbox_only(cls: Callable[[str, str], c.Command]) -> Handler:
    def handler(cur: Cursor, tag: str) -> c.Command:
        cur.sp()
        return cls(tag, cur.mailbox())

    return handler


def _authenticate(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    mechanism = cur.keyword("a SASL mechanism")
    initial = None
    if cur.take(b" "):
        initial = _initial_response(cur)
    return c.Authenticate(tag, mechanism, initial)


def _initial_response(cur: Cursor) -> str:
    # RFC 4959: base64, or "=" for an empty response.
    if cur.take(b"="):
        if not cur.at_end():
            raise cur.fail("the end of the command after '='")
        return ""
    start = cur.pos
    while not cur.at_end() and cur.peek() in _BASE64:
        cur.pos += 1
    if cur.pos == start:
        raise cur.fail("a base64 initial response")
    return cur.data[start : cur.pos].decode("ascii")


_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _login(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    user = cur.text_astring("a user name")
    cur.sp()
    return c.Login(tag, user, cur.text_astring("a password"))


def _one_of(cur: Cursor, allowed: frozenset[str], what: str) -> str:
    word = cur.keyword(f"a {what}")
    if word not in allowed:
        raise ParseError(f"{what} {word} is not supported")
    return word


def _select(readonly: bool) -> Handler:
    def handler(cur: Cursor, tag: str) -> c.Command:
        cur.sp()
        mailbox = cur.mailbox()
        condstore = False
        if cur.take(b" "):
            cur.parenthesized(lambda: _one_of(cur, SELECT_PARAMS, "SELECT parameter"))
            condstore = True
        return c.Select(tag, mailbox, readonly, condstore)

    return handler


def _create(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    mailbox = cur.mailbox()
    uses: list[str] = []
    if cur.take(b" "):
        cur.open()
        if cur.keyword("USE") != "USE":
            raise ParseError("the only CREATE parameter is USE")
        cur.sp()
        uses = cur.parenthesized(lambda: _special_use(cur))
        cur.close()
    return c.Create(tag, mailbox, tuple(dict.fromkeys(uses)))


def _special_use(cur: Cursor) -> str:
    cur.expect(b"\\", "a special-use attribute")
    attr = "\\" + cur.atom("a special-use attribute")
    if attr.upper() not in SPECIAL_USES:
        raise ParseError(f"{attr} is not a special-use attribute")
    return SPECIAL_USES[attr.upper()]


def _rename(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    old = cur.mailbox()
    cur.sp()
    return c.Rename(tag, old, cur.mailbox())


def _list(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    select: frozenset[str] = frozenset()
    extended = False
    if cur.peek() == ord("("):
        extended = True
        read = partial(_one_of, cur, LIST_SELECT_OPTIONS, "LIST selection option")
        select = frozenset(cur.parenthesized(read, empty_ok=True))
        cur.sp()
        # RFC 5258: RECURSIVEMATCH only refines another selection option.
        if "RECURSIVEMATCH" in select and not select - {"RECURSIVEMATCH", "REMOTE"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")
    reference = decode_name(cur.astring("a reference name"))
    cur.sp()
    if cur.peek() == ord("("):
        extended = True
        patterns = cur.parenthesized(cur.list_mailbox)
    else:
        patterns = [cur.list_mailbox()]
    returns: set[str] = set()
    status: list[tuple[str, ...]] = []
    if cur.take(b" "):
        extended = True
        if not cur.take_word(b"RETURN"):
            raise cur.fail("RETURN")
        cur.sp()

        def return_option() -> None:
            option = cur.keyword("a LIST return option")
            if option == "STATUS":
                cur.sp()
                status.append(_status_items(cur))
            elif option in LIST_RETURN_OPTIONS:
                returns.add(option)
            else:
                raise ParseError(f"LIST return option {option} is not supported")

        cur.parenthesized(return_option, empty_ok=True)
    return c.List(
        tag,
        reference,
        tuple(patterns),
        select,
        frozenset(returns),
        status[-1] if status else None,
        extended,
    )


def _lsub(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    reference = decode_name(cur.astring("a reference name"))
    cur.sp()
    return c.Lsub(tag, reference, cur.list_mailbox())


def _status(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    return c.Status(tag, mailbox, _status_items(cur))


def _status_items(cur: Cursor) -> tuple[str, ...]:
    items = cur.parenthesized(lambda: _one_of(cur, STATUS_ITEMS, "STATUS item"))
    return tuple(dict.fromkeys(items))


def _append(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    flags: tuple[str, ...] = ()
    date = None
    if cur.peek() == ord("("):
        flags = cur.flag_list()
        cur.sp()
    if cur.peek() == ord('"'):
        date = cur.date_time()
        cur.sp()
    if cur.peek() != ord("{"):
        raise cur.fail("the message as a literal")
    return c.Append(tag, mailbox, cur.literal(), flags, date)


def _enable(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    names = [cur.keyword("a capability")]
    while cur.take(b" "):
        names.append(cur.keyword("a capability"))
    return c.Enable(tag, tuple(dict.fromkeys(names)))


def _id(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    if cur.take_word(b"NIL"):
        return c.Id(tag, None)
    pairs = cur.parenthesized(lambda: _id_pair(cur), empty_ok=True)
    if len(pairs) > ID_MAX_PAIRS:
        raise ParseError(f"more than {ID_MAX_PAIRS} ID fields")
    return c.Id(tag, tuple(pairs))


def _id_pair(cur: Cursor) -> tuple[str, str | None]:
    field = text(cur.string("an ID field name"))
    cur.sp()
    raw = cur.nstring("an ID value or NIL")
    value = None if raw is None else text(raw)
    if len(field) > ID_MAX_FIELD or (value is not None and len(value) > ID_MAX_VALUE):
        raise ParseError("ID field or value too long")
    return field, value


def _expunge(cur: Cursor, tag: str) -> c.Command:
    return c.Expunge(tag)


def _uid_expunge(cur: Cursor, tag: str) -> c.Command:
    cur.sp()
    return c.Expunge(tag, cur.sequence_set())


def _search(uid: bool) -> Handler:
    def handler(cur: Cursor, tag: str) -> c.Command:
        program, charset, returns = parse_search(cur)
        return c.Search(tag, program, uid, charset, returns)

    return handler


def _fetch(uid: bool) -> Handler:
    def handler(cur: Cursor, tag: str) -> c.Command:
        cur.sp()
        sequence = cur.sequence_set()
        cur.sp()
        items = parse_fetch_atts(cur)
        changedsince = None
        if cur.take(b" "):
            changedsince = _modifiers(cur, "CHANGEDSINCE", "FETCH modifier")
        return c.Fetch(tag, sequence, items, uid, changedsince)

    return handler


def _modifiers(cur: Cursor, name: str, what: str) -> int:
    """`(NAME modseq)`, the one modifier of FETCH or STORE we take (RFC 7162)."""
    values: list[int] = []

    def modifier() -> None:
        _one_of(cur, frozenset({name}), what)
        cur.sp()
        values.append(cur.number64())

    cur.parenthesized(modifier)
    return values[-1]


_STORE_MODES = {m.value: m for m in c.StoreMode}


def _store(uid: bool) -> Handler:
    def handler(cur: Cursor, tag: str) -> c.Command:
        cur.sp()
        sequence = cur.sequence_set()
        cur.sp()
        unchangedsince = None
        if cur.peek() == ord("("):
            unchangedsince = _modifiers(cur, "UNCHANGEDSINCE", "STORE modifier")
            cur.sp()
        word = _store_word(cur)
        silent = word.endswith(".SILENT")
        mode = _STORE_MODES.get(word.removesuffix(".SILENT"))
        if mode is None:
            raise ParseError(f"{word} is not FLAGS, +FLAGS or -FLAGS")
        cur.sp()
        if cur.peek() == ord("("):
            flags = cur.flag_list()
        else:
            found = [cur.flag()]
            while cur.take(b" "):
                found.append(cur.flag())
            flags = tuple(dict.fromkeys(found))
        return c.Store(tag, sequence, mode, flags, silent, uid, unchangedsince)

    return handler


def _store_word(cur: Cursor) -> str:
    sign = "" if cur.peek() not in (0x2B, 0x2D) else chr(cur.data[cur.pos])
    if sign:
        cur.pos += 1
    return sign + cur.keyword("FLAGS, +FLAGS or -FLAGS")


def _copy_like(cls: type[c.Copy] | type[c.Move], uid: bool) -> Handler:
    def handler(cur: Cursor, tag: str) -> c.Command:
        cur.sp()
        sequence = cur.sequence_set()
        cur.sp()
        return cls(tag, sequence, cur.mailbox(), uid)

    return handler


COMMANDS: dict[str, Handler] = {
    "CAPABILITY": _bare(c.Capability),
    "NOOP": _bare(c.Noop),
    "LOGOUT": _bare(c.Logout),
    "STARTTLS": _bare(c.StartTLS),
    "CHECK": _bare(c.Check),
    "CLOSE": _bare(c.Close),
    "UNSELECT": _bare(c.Unselect),
    "IDLE": _bare(c.Idle),
    "NAMESPACE": _bare(c.Namespace),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "SELECT": _select(readonly=False),
    "EXAMINE": _select(readonly=True),
    "CREATE": _create,
    "DELETE": _mailbox_only(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_only(c.Subscribe),
    "UNSUBSCRIBE": _mailbox_only(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "ENABLE": _enable,
    "ID": _id,
    "EXPUNGE": _expunge,
    "SEARCH": _search(uid=False),
    "FETCH": _fetch(uid=False),
    "STORE": _store(uid=False),
    "COPY": _copy_like(c.Copy, uid=False),
    "MOVE": _copy_like(c.Move, uid=False),
}
UID_COMMANDS: dict[str, Handler] = {
    "EXPUNGE": _uid_expunge,
    "SEARCH": _search(uid=True),
    "FETCH": _fetch(uid=True),
    "STORE": _store(uid=True),
    "COPY": _copy_like(c.Copy, uid=True),
    "MOVE": _copy_like(c.Move, uid=True),
}
# The reader checks these before it asks for a synchronizing literal.
KNOWN_NAMES = frozenset(COMMANDS) | {"UID"}
