"""IMAP commands on mailboxes: LIST, LSUB, STATUS, CREATE, DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, APPEND (RFC 3501, 5258, 5819, 6154, 4315)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mda.imap import commands as C
from mda.imap import response as R
from mda.store import errors as E
from mda.store.results import FolderInfo

if TYPE_CHECKING:
    from mda.imap.session import Session

SEP = "/"
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """`*` matches anything, `%` anything but the separator; INBOX without case."""
    full = reference + pattern if not pattern.startswith(SEP) else pattern
    if full[:5].upper() == "INBOX" and full[5:6] in ("", SEP, "*", "%"):
        full = "INBOX" + full[5:]  # the store names it INBOX; clients may write inbox
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(SEP)}]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.S)


def _line(kind: bytes, attrs: list[str], name: str) -> bytes:
    return R.data(kind, R.plist(attrs), R.quoted(SEP), R.mailbox(name))


def _status_values(st, items) -> list:
    values = {"MESSAGES": st.messages, "RECENT": st.recent, "UIDNEXT": st.uidnext,
              "UIDVALIDITY": st.uidvalidity, "UNSEEN": st.unseen,
              "HIGHESTMODSEQ": st.highestmodseq}
    out: list = []
    for item in items:
        out += [item, values[item]]
    return out


async def list_(session: Session, cmd: C.List) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    if cmd.patterns == ("",):
        # The hierarchy delimiter and root (RFC 3501 6.3.8).
        yield R.data(b"LIST", R.plist(["\\Noselect"]), R.quoted(SEP), R.quoted(""))
        yield R.ok(cmd.tag, "LIST completed")
        return
    infos: list[FolderInfo] = await session.run(store.list_folders)
    regexes = [pattern_regex(cmd.reference, p) for p in cmd.patterns]
    sel, ret = cmd.select_options, cmd.return_options
    show_subscribed = "SUBSCRIBED" in sel or "SUBSCRIBED" in ret
    entries: list[tuple[str, list[str], bool]] = []
    known = {i.name for i in infos}
    for info in infos:
        if not any(rx.match(info.name) for rx in regexes):
            continue
        if "SUBSCRIBED" in sel and not info.subscribed:
            continue
        if "SPECIAL-USE" in sel and not info.special_use:
            continue
        attrs = list(info.attributes())
        if show_subscribed and info.subscribed:
            attrs.append("\\Subscribed")
        entries.append((info.name, attrs, info.selectable))
    if "SUBSCRIBED" in sel:
        # Subscribed names that no longer exist are still listed (RFC 5258 3.1).
        for name in await session.run(store.subscriptions):
            if name not in known and any(rx.match(name) for rx in regexes):
                entries.append((name, ["\\NonExistent", "\\Subscribed"], False))
    for name, attrs, selectable in entries:
        yield _line(b"LIST", attrs, name)
        if cmd.status_items and selectable:
            try:
                st = await session.run(store.status, name)
            except E.StoreError:
                continue
            yield R.data(b"STATUS", R.mailbox(name), R.plist(_status_values(st, cmd.status_items)))
    yield R.ok(cmd.tag, "LIST completed")


async def lsub(session: Session, cmd: C.Lsub) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    if cmd.pattern == "":
        yield R.data(b"LSUB", R.plist(["\\Noselect"]), R.quoted(SEP), R.quoted(""))
        yield R.ok(cmd.tag, "LSUB completed")
        return
    rx = pattern_regex(cmd.reference, cmd.pattern)
    infos = {i.name: i for i in await session.run(store.list_folders)}
    for name in await session.run(store.subscriptions):
        if rx.match(name):
            info = infos.get(name)
            attrs = [] if info is None or info.selectable else ["\\Noselect"]
            yield _line(b"LSUB", attrs, name)
    yield R.ok(cmd.tag, "LSUB completed")


async def status(session: Session, cmd: C.Status) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    st = await session.run(store.status, cmd.mailbox)
    yield R.data(b"STATUS", R.mailbox(cmd.mailbox), R.plist(_status_values(st, cmd.items)))
    yield R.ok(cmd.tag, "STATUS completed")


async def create(session: Session, cmd: C.Create) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    name = cmd.mailbox.rstrip(SEP)  # a trailing separator only says "will have children"
    try:
        await session.run(store.create_folder, name)
    except E.FolderExists:
        yield R.no(cmd.tag, "Mailbox exists", R.code("ALREADYEXISTS"))
        return
    yield R.ok(cmd.tag, "CREATE completed")


async def delete(session: Session, cmd: C.Delete) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    if session.folder is not None and session.folder.name == cmd.mailbox:
        yield R.no(cmd.tag, "Close the mailbox before deleting it", R.code("INUSE"))
        return
    try:
        await session.run(store.delete_folder, cmd.mailbox)
    except E.CannotDelete as e:
        yield R.no(cmd.tag, str(e) or "Cannot delete", R.code("CANNOT"))
        return
    yield R.ok(cmd.tag, "DELETE completed")


async def rename(session: Session, cmd: C.Rename) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    try:
        await session.run(store.rename_folder, cmd.mailbox, cmd.new_name)
    except E.FolderExists:
        yield R.no(cmd.tag, "Target mailbox exists", R.code("ALREADYEXISTS"))
        return
    except E.CannotRename as e:
        yield R.no(cmd.tag, str(e) or "Cannot rename", R.code("CANNOT"))
        return
    yield R.ok(cmd.tag, "RENAME completed")


async def subscribe(session: Session, cmd: C.Subscribe) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    await session.run(store.subscribe, cmd.mailbox)
    yield R.ok(cmd.tag, "SUBSCRIBE completed")


async def unsubscribe(session: Session, cmd: C.Unsubscribe) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    await session.run(store.unsubscribe, cmd.mailbox)
    yield R.ok(cmd.tag, "UNSUBSCRIBE completed")


async def append(session: Session, cmd: C.Append) -> AsyncIterator[bytes]:
    store = session.store
    assert store is not None
    if not await session.run(store.folder_exists, cmd.mailbox):
        yield R.no(cmd.tag, "No such mailbox", R.code("TRYCREATE"))
        return
    when = cmd.date.timestamp() if cmd.date else None
    try:
        result = await session.run(store.append, cmd.mailbox, cmd.message, cmd.flags, when)
    except E.TooManyKeywords:
        yield R.no(cmd.tag, "Too many keywords in this mailbox", R.code("LIMIT"))
        return
    except OSError as e:
        session.log.error("append failed", error=str(e))
        yield R.no(cmd.tag, "Cannot store the message now", R.code("SERVERBUG"))
        return
    for out in await session.updates():
        yield out
    yield R.ok(cmd.tag, "APPEND completed",
               R.code("APPENDUID", result.uidvalidity, result.uid))


HANDLERS = {
    C.List: list_, C.Lsub: lsub, C.Status: status, C.Create: create, C.Delete: delete,
    C.Rename: rename, C.Subscribe: subscribe, C.Unsubscribe: unsubscribe, C.Append: append,
}
