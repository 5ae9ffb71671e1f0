"""FETCH and UID FETCH (RFC 3501 6.4.5, 6.4.8; RFC 7162 CHANGEDSINCE and MODSEQ).

The work is done in the session's worker thread a chunk at a time: one
`session.run` call computes up to CHUNK responses (fewer once CHUNK_BYTES of
message data were read), the handler sends them, then asks for the next.

ENVELOPE, BODY and BODYSTRUCTURE go into the index (`Folder.put_parsed_many`)
the first time they are computed, so the next `FETCH 1:* (ENVELOPE)` opens
no file. So do the header-field lists clients fetch for their message lists
(`BODY.PEEK[HEADER.FIELDS (From To Subject ...)]`, Thunderbird's and mutt's),
one index entry per message for each set of field names, as Dovecot keeps
such fields in its cache file. When only a message's header is needed
(ENVELOPE, RFC822.HEADER, BODY[HEADER...]), only the header is read from the
file, unless its size is not known yet (RFC822.SIZE counts the whole file).

The \\Seen flag is set (on a writable mailbox) once per chunk, after the data was
read, and the new FLAGS go out with the data (RFC 3501 6.4.5).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mda.imap import commands as C
from mda.imap import fetch as F
from mda.imap import response as R
from mda.imap import searchcache
from mda.imap.fetchitems import BodySection, FetchAtt, FetchItem
from mda.imap.msgset import InvalidSequence, Target, flag_list, guarded, local_time, resolve
from mda.store import content, message
from mda.store import errors as E
from mda.store.flags import SEEN
from mda.store.folder import Folder
from mda.store.headerscan import FieldReader, HeaderFields

if TYPE_CHECKING:
    from mda.imap.session import Session

CHUNK = 500
CHUNK_BYTES = 8 << 20
HEADER_READ = 8192

# How much of a message an item needs.
NOTHING, HEADER, WHOLE = 0, 1, 2

# The cached items: how to compute each from a parsed message, and what
# must have been read for it.
CACHED: dict[str, tuple[Callable[[message.Part], bytes], int]] = {
    "ENVELOPE": (F.envelope, HEADER),
    "BODY": (F.body, WHOLE),
    "BODYSTRUCTURE": (F.bodystructure, WHOLE),
}
CACHE_KEY = {"ENVELOPE": "envelope", "BODY": "body", "BODYSTRUCTURE": "bodystructure"}
_HEADER_FIELDS = FieldReader(F.ENVELOPE_FIELDS + searchcache.FIELDS)


def _level(att: FetchAtt) -> int:
    if isinstance(att, FetchItem):
        if att.name == "RFC822.HEADER":
            return HEADER
        if att.name in ("RFC822", "RFC822.TEXT"):
            return WHOLE
        return NOTHING
    sec = att.section
    if not sec.part and sec.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return HEADER
    return WHOLE


def _is_raw(att: FetchAtt) -> bool:
    if isinstance(att, FetchItem):
        return att.name == "RFC822"
    return not att.section.part and att.section.text is None


# A client asking for a long list of its own is not caching's business.
MAX_FIELDS_KEY = 1000


def fields_key(att: FetchAtt) -> str | None:
    """The index key of a header-field list of the whole message, or None: one
    entry whatever the order and case of the names, which give the same answer."""
    if not isinstance(att, BodySection):
        return None
    sec = att.section
    if sec.part or sec.text not in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return None
    kind = "fields" if sec.text == "HEADER.FIELDS" else "fields-not"
    key = f"{kind} " + " ".join(sorted({f.upper() for f in sec.fields}))
    return key if len(key) <= MAX_FIELDS_KEY else None


@dataclass(frozen=True)
class Plan:
    """What one FETCH command needs, worked out once."""

    items: tuple[FetchAtt, ...]
    uid_first: bool  # UID FETCH always answers UID
    modseq_last: bool  # CHANGEDSINCE always answers MODSEQ
    sets_seen: bool  # some item sets \Seen and the mailbox is writable
    content: int  # what must be read for the non-cached items
    structure: bool  # some non-cached item needs the MIME tree (a part number)
    raw: bool  # every non-cached item is the whole message as stored (BODY[], RFC822)
    cached: tuple[str, ...]  # ENVELOPE, BODY, BODYSTRUCTURE asked for
    names: frozenset[str]
    fields: dict[BodySection, str]  # cached header-field sections -> their index key

    @classmethod
    def of(cls, cmd: C.Fetch, writable: bool) -> Plan:
        names = frozenset(a.name for a in cmd.items if isinstance(a, FetchItem))
        fields = {a: k for a in cmd.items if (k := fields_key(a)) is not None}
        rest = [a for a in cmd.items if a not in fields]
        return cls(
            items=cmd.items,
            uid_first=cmd.uid and "UID" not in names,
            modseq_last=cmd.changedsince is not None and "MODSEQ" not in names,
            sets_seen=writable and any(a.sets_seen for a in cmd.items),
            content=max((_level(a) for a in rest), default=NOTHING),
            structure=any(isinstance(a, BodySection) and a.section.part for a in cmd.items),
            raw=all(_is_raw(a) for a in rest if _level(a) != NOTHING),
            cached=tuple(n for n in CACHED if n in names),
            names=names,
            fields=fields,
        )


def _header_from(read: Callable[[int], bytes]) -> bytes:
    data = b""
    while chunk := read(HEADER_READ):
        look = max(0, len(data) - 2)
        data += chunk
        if data[:1] == b"\n":
            return data[:1]
        if data[:2] == b"\r\n":
            return data[:2]
        ends = []
        lf = data.find(b"\n\n", look)
        if lf >= 0:
            ends.append(lf + 2)
        crlf = data.find(b"\n\r\n", look)
        if crlf >= 0:
            ends.append(crlf + 3)
        if ends:
            return data[: min(ends)]
    return data


def read_header(folder: Folder, uid: int) -> bytes:
    """The message's header block with its blank line (the whole file if it has none)."""
    with folder.open_message(uid) as f:
        return _header_from(f.read)


def read_at(folder: Folder, paths: dict[int, str], uid: int, header_only: bool) -> bytes:
    """read_header or Folder.read, from the path `Folder.paths_of` gave when
    there is one: a bulk read then costs no index query per message. A path
    gone stale (the file was renamed since) is looked up again the slow way,
    which also raises MessageGone for an expunged message.
    """
    path = paths.get(uid)
    if path is not None:
        try:
            if not header_only:
                with open(path, "rb") as f:
                    return f.read()
            # A bare descriptor: a file object costs more than reading the header.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        else:
            try:
                return _header_from(lambda n: os.read(fd, n))
            finally:
                os.close(fd)
    return read_header(folder, uid) if header_only else folder.read(uid)


def select_targets(folder: Folder, cmd: C.Fetch) -> list[Target]:
    targets = resolve(folder, cmd.sequence, uid=cmd.uid)
    if cmd.changedsince is not None:
        since = cmd.changedsince
        targets = [(s, u) for s, u in targets if folder.modseq(u) > since]
    return targets


@dataclass
class Chunk:
    responses: list[bytes]
    next: int  # index in targets of the first message not done
    gone: int  # messages that could not be read (expunged meanwhile)


def fetch_chunk(folder: Folder, plan: Plan, targets: list[Target], start: int,
                condstore: bool) -> Chunk:
    """The responses for targets[start:], as many as fit in one chunk."""
    batch = targets[start : start + CHUNK]
    uids = [u for _, u in batch]
    cache = {n: folder.get_parsed_many(CACHE_KEY[n], uids) for n in plan.cached}
    fresh: dict[str, dict[int, bytes]] = {n: {} for n in plan.cached}
    # By index key: the same list may come twice (BODY[...] and BODY.PEEK[...]).
    keys = sorted(set(plan.fields.values()))
    fields = {k: folder.get_parsed_many(k, uids) for k in keys}
    fields_fresh: dict[str, dict[int, bytes]] = {k: {} for k in keys}
    levels: dict[int, int] = {}
    for uid in uids:
        level = plan.content
        for n in plan.cached:
            if uid not in cache[n]:
                level = max(level, CACHED[n][1])
        if any(uid not in fields[k] for k in keys):
            level = max(level, HEADER)
        if level != NOTHING:
            levels[uid] = level
    # Sizes not known yet are counted from the file this chunk reads anyway
    # (Thunderbird's first sync asks for RFC822.SIZE beside the header).
    want_sizes = "RFC822.SIZE" in plan.names
    sizes = folder.sizes(uids, read_missing=False) if want_sizes else {}
    unsized = {u for u in uids if u not in sizes} if want_sizes else set()
    counted: dict[int, int] = {}
    to_read = [u for u in uids if u in levels or u in unsized]
    paths = folder.paths_of(to_read) if to_read else {}
    parsed: dict[int, message.Part | bytes] = {}  # bytes: the message, for plan.raw
    headers: dict[int, message.Part | HeaderFields] = {}  # for the search cache
    raws: dict[int, bytes] = {}  # read, not parsed: for the search cache if need be
    gone: set[int] = set()
    read = done = 0
    for _, uid in batch:
        done += 1
        level = levels.get(uid, NOTHING)
        if level == NOTHING and uid not in unsized:
            continue
        try:
            data = read_at(folder, paths, uid,
                           header_only=level == HEADER and uid not in unsized)
        except (E.MessageGone, FileNotFoundError):
            gone.add(uid)
            continue
        read += len(data)
        if uid in unsized:
            sizes[uid] = counted[uid] = content.crlf_size(data)
        if level == NOTHING:
            continue  # read for its size alone
        # The MIME scan only for what needs the tree; the rest looks at the
        # root's header and spans, which parse_header gives alike and cheaper,
        # and ENVELOPE alone at a few fields. BODY[] needs no parsing at all.
        msg: message.Part | HeaderFields | None = None
        fields_missing = [k for k in keys if uid not in fields[k]]
        if plan.structure or any(uid not in cache[n] for n in plan.cached if n != "ENVELOPE"):
            msg = message.parse(data)
        elif (plan.content and not plan.raw) or fields_missing:
            msg = message.parse_header(data)
        elif any(uid not in cache[n] for n in plan.cached):
            msg = _HEADER_FIELDS.read(data)
        if msg is None:
            raws[uid] = data
        else:
            headers[uid] = msg
        for n in plan.cached:
            if uid not in cache[n]:
                assert msg is not None
                value = CACHED[n][0](msg)
                cache[n][uid] = fresh[n][uid] = value
        if fields_missing:
            assert isinstance(msg, message.Part)
            for att, k in plan.fields.items():
                if uid not in fields[k]:  # a key two sections share is computed once
                    sec = att.section
                    fields[k][uid] = fields_fresh[k][uid] = F.section(
                        msg, (), sec.text, sec.fields)
        if plan.content:
            parsed[uid] = data if plan.raw else msg  # type: ignore[assignment]
        if read >= CHUNK_BYTES:
            break
    batch = batch[:done]
    for n, values in fresh.items():
        if values:
            folder.put_parsed_many(CACHE_KEY[n], values)  # type: ignore[arg-type]
    for k, values in fields_fresh.items():
        if values:
            folder.put_parsed_many(k, values)  # type: ignore[arg-type]
    if headers or raws:
        _keep_search_text(folder, headers, raws, fresh)
    ok = [u for _, u in batch if u not in gone]
    seen_now: set[int] = set()
    if plan.sets_seen and ok:
        before = folder.flags_of(ok)
        unseen = [u for u in ok if u in before and SEEN not in before[u]]
        if unseen:
            seen_now = set(folder.store(unseen, [SEEN], "add").changed)
    flags = folder.flags_of(ok) if ("FLAGS" in plan.names or seen_now) else {}
    if counted:
        folder.remember_sizes(counted)
    dates = folder.internal_dates(ok) if "INTERNALDATE" in plan.names else {}
    out: list[bytes] = []
    lost = len(gone)
    for seq, uid in batch:
        if uid in gone:
            continue
        items = _items(folder, plan, uid, parsed.get(uid), cache, fields, flags, sizes, dates,
                       uid in seen_now, condstore)
        if items is None:
            lost += 1
            continue
        out.append(R.fetch(seq, items))
    return Chunk(out, start + done, lost)


def _keep_search_text(folder: Folder, headers: dict[int, message.Part | HeaderFields],
                      raws: dict[int, bytes], fresh: dict[str, dict[int, bytes]]) -> None:
    """Store the search text of the messages whose header was parsed, unless
    the index has it, so a later SEARCH FROM/SUBJECT/... opens no file."""
    # A message whose ENVELOPE (or BODY...) was not cached yet has surely no
    # search text either; asking would cost more than writing it again.
    new = {u for values in fresh.values() for u in values}
    ask = [u for u in (*headers, *raws) if u not in new]
    have = folder.get_parsed_many(searchcache.KEY, ask) if ask else {}
    values = {u: searchcache.record(msg) for u, msg in headers.items()
              if u in new or searchcache.load(have.get(u)) is None}
    for u, data in raws.items():
        if searchcache.load(have.get(u)) is None:
            values[u] = searchcache.record(_HEADER_FIELDS.read(data))
    if values:
        try:
            folder.put_parsed_many(searchcache.KEY, values)  # type: ignore[arg-type]
        except (OSError, sqlite3.Error):
            # Only a head start for SEARCH, which reads the files without it:
            # no reason to fail a FETCH that never had to write.
            pass


def _items(folder: Folder, plan: Plan, uid: int, msg: message.Part | bytes | None,
           cache: dict[str, dict[int, object]], field_cache: dict[str, dict[int, object]],
           flags: dict, sizes: dict, dates: dict,
           seen_now: bool, condstore: bool) -> list[tuple[str, bytes]] | None:
    """One message's FETCH items, or None when some of its data is gone."""
    items: list[tuple[str, bytes]] = []
    if plan.uid_first:
        items.append(("UID", b"%d" % uid))
    for att in plan.items:
        if isinstance(att, BodySection):
            key = plan.fields.get(att)
            if key is not None:
                value = field_cache[key].get(uid)
                if value is None:
                    return None
                data = bytes(value)  # type: ignore[arg-type]
                if att.partial is not None:
                    data = F.partial(data, *att.partial)
                items.append((att.response_name(), R.literal(data)))
                continue
            if msg is None:
                return None
            sec = att.section
            fields = sec.fields if sec.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT") else None
            if isinstance(msg, bytes):
                data = message.crlf(msg)  # what F.section gives for BODY[]
            else:
                data = F.section(msg, sec.part, sec.text, fields)
            if att.partial is not None:
                data = F.partial(data, *att.partial)
            items.append((att.response_name(), R.literal(data)))
            continue
        name = att.name
        if name == "FLAGS":
            if uid not in flags:
                return None
            items.append((name, flag_list(flags[uid], folder.is_recent(uid))))
        elif name == "UID":
            items.append((name, b"%d" % uid))
        elif name == "MODSEQ":
            items.append((name, b"(%d)" % folder.modseq(uid)))
        elif name == "INTERNALDATE":
            if uid not in dates:
                return None
            items.append((name, R.date_time(local_time(dates[uid]))))
        elif name == "RFC822.SIZE":
            if uid not in sizes:
                return None
            items.append((name, b"%d" % sizes[uid]))
        elif name in CACHED:
            value = cache[name].get(uid)
            if value is None:
                return None
            items.append((name, bytes(value)))  # type: ignore[arg-type]
        else:  # RFC822, RFC822.HEADER, RFC822.TEXT
            if msg is None:
                return None
            if isinstance(msg, bytes):
                items.append((name, R.literal(message.crlf(msg))))  # RFC822
                continue
            text = {"RFC822": None, "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}[name]
            items.append((name, R.literal(F.section(msg, (), text))))
    if seen_now and "FLAGS" not in plan.names:
        # RFC 3501 6.4.5: the implicit \Seen is reported with the data.
        items.append(("FLAGS", flag_list(flags[uid], folder.is_recent(uid))))
    if plan.modseq_last or (seen_now and condstore and "MODSEQ" not in plan.names):
        # A flag change under CONDSTORE carries its MODSEQ (RFC 7162 3.2).
        items.append(("MODSEQ", b"(%d)" % folder.modseq(uid)))
    return items


@guarded
async def fetch(session: Session, cmd: C.Fetch) -> AsyncIterator[bytes]:
    # No EXPUNGE may be sent during FETCH by sequence number (RFC 3501 7.4.1).
    for out in await session.updates(allow_expunge=cmd.uid):
        yield out
    folder = session.folder
    if folder is None:
        yield R.no(cmd.tag, "The mailbox is gone")
        return
    if cmd.changedsince is not None or any(a == FetchItem("MODSEQ") for a in cmd.items):
        session.condstore = True  # a CONDSTORE enabling command (RFC 7162 3.1)
    try:
        targets = await session.run(select_targets, folder, cmd)
    except InvalidSequence as e:
        yield R.bad(cmd.tag, str(e))
        return
    plan = Plan.of(cmd, writable=not session.readonly)
    start = lost = 0
    while start < len(targets):
        chunk = await session.run(fetch_chunk, folder, plan, targets, start, session.condstore)
        if chunk.responses:
            yield b"".join(chunk.responses)
        start, lost = chunk.next, lost + chunk.gone
    if lost:
        yield R.no(cmd.tag, f"{lost} of the messages were expunged meanwhile; the rest was sent",
                   R.code("EXPUNGEISSUED"))
        return
    yield R.ok(cmd.tag, f"{cmd.name} completed")
