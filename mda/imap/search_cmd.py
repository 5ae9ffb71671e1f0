"""SEARCH and UID SEARCH (RFC 3501 6.4.4; RFC 4731 ESEARCH; RFC 7162 MODSEQ).

`mda.imap.search.Searcher` decides; this module shows it each message as a
`SearchTarget`, loading only what the program needs: flags, sizes, dates
and modseqs come from the view and the index in one call each; a message
file is opened only for keys on headers or text, and then only its header
when that is enough. The address, subject and date fields (SEARCH_FIELDS)
are kept in the index, ready to compare (`searchcache`), by the first FETCH
or SEARCH that reads a header, so the next `SEARCH FROM ...` opens no file.

Files are read after a first pass over the mailbox, which answers every
message it can without one; the rest are then read together, a block of
paths per index query.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mda.imap import commands as C
from mda.imap import response as R
from mda.imap import searchcache
from mda.imap.fetch_cmd import read_at
from mda.imap.msgset import RECENT, guarded, local_time
from mda.imap.search import Searcher, parse_sent_date
from mda.imap.searchkeys import (
    And,
    Body,
    DateKey,
    Flag,
    Header,
    Larger,
    ModSeq,
    Not,
    Or,
    SearchKey,
    Smaller,
    Text,
)
from mda.store import errors as E
from mda.store import message
from mda.store.folder import Folder
from mda.store.headerfields import decode_bytes
from mda.store.headerscan import FieldReader, HeaderFields

if TYPE_CHECKING:
    from mda.imap.session import Session

# Header fields cached for SEARCH, lower case.
SEARCH_FIELDS = searchcache.FIELDS
CACHE_KEY = searchcache.KEY
# Messages read per paths_of query in the second pass.
READ_BLOCK = 1000
_SEARCH_FIELDS = FieldReader(SEARCH_FIELDS)
_NOTHING = searchcache.encode(searchcache.EMPTY)
_EPOCH = datetime.fromtimestamp(0, UTC)
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


@dataclass
class Needs:
    """What of each message a SEARCH program looks at."""

    flags: bool = False
    sizes: bool = False
    dates: bool = False
    fields: set[str] = field(default_factory=set)  # header names, lower case
    all_headers: bool = False
    body: bool = False

    @classmethod
    def of(cls, key: SearchKey) -> Needs:
        needs = cls()
        needs._walk(key)
        return needs

    def _walk(self, key: SearchKey) -> None:
        match key:
            case And(keys):
                for k in keys:
                    self._walk(k)
            case Or(left, right):
                self._walk(left)
                self._walk(right)
            case Not(inner):
                self._walk(inner)
            case Flag():
                self.flags = True
            case Larger() | Smaller():
                self.sizes = True
            case DateKey(sent=True):
                self.fields.add("date")
            case DateKey():
                self.dates = True
            case Header(name):
                self.fields.add(name.lower())
            case Body():
                self.body = True
            case Text():
                self.body = self.all_headers = True
            case ModSeq():
                pass  # modseqs are in the view

    @property
    def cacheable(self) -> bool:
        """The program reads only header fields the index may keep for it."""
        return bool(self.fields) and not self.all_headers and not self.body and \
            self.fields <= set(SEARCH_FIELDS)


def _text(raw: bytes) -> str:
    return decode_bytes(raw, None)


def _transfer_decoded(part: message.Part) -> bytes:
    raw = part.body
    encoding = part.encoding
    if encoding == "base64":
        cleaned = _NOT_BASE64.sub(b"", raw)
        if len(cleaned) % 4 == 1:  # a stray character encodes nothing
            cleaned = cleaned[:-1]
        try:
            return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            return raw
    if encoding == "quoted-printable":
        try:
            return binascii.a2b_qp(raw)
        except (binascii.Error, ValueError):
            return raw
    return raw


def body_text(msg: message.Part) -> str:
    """The text of a message's body as SEARCH BODY reads it: text parts with
    their transfer encoding and charset undone, and the headers of attached
    messages; other parts (images, archives) are skipped."""
    out: list[str] = []
    for part in msg.walk():
        if part is not msg and part.parent is not None and part.parent.message is part:
            out.append(_text(part.header))  # the header of an attached message
        if part.is_multipart or part.message is not None:
            continue
        if part.type == "text":
            out.append(decode_bytes(_transfer_decoded(part), part.charset))
    return "\n".join(out)


class _Unread(Exception):
    """The first pass met a message it cannot judge without reading its file."""


class Context:
    """Shared by the messages of one SEARCH: the batched data and the cache."""

    def __init__(self, folder: Folder, needs: Needs, uids: list[int]) -> None:
        self.folder = folder
        self.needs = needs
        self.cacheable = needs.cacheable
        self.uids = uids
        self.flags = folder.flags_of(uids) if needs.flags else {}
        self.sizes = folder.sizes(uids) if needs.sizes else {}
        self.dates = folder.internal_dates(uids) if needs.dates else {}
        # The whole folder's search text in one query: most searches look at
        # every message, and a query per block costs more than the rows.
        self.records = folder.get_parsed_many(CACHE_KEY) if self.cacheable else {}
        self.fields: dict[int, searchcache.Fields] = {}
        self.fresh: dict[int, str] = {}
        self.deferring = True  # the first pass: files are read later, together
        self.paths: dict[int, str] = {}

    def fields_of(self, msg: Message) -> searchcache.Fields:
        uid = msg.uid
        found = self.fields.get(uid)
        if found is None:
            found = searchcache.load(self.records.get(uid))
            if found is None:
                part = msg.parsed(False)  # which usually stores the fields
                found = self.fields.get(uid) or searchcache.fields_of(part)
            self.fields[uid] = found
        return found

    def read(self, uid: int, whole: bool) -> message.Part | HeaderFields:
        if self.deferring:
            raise _Unread
        try:
            data = read_at(self.folder, self.paths, uid, header_only=not whole)
        except (E.MessageGone, FileNotFoundError):
            msg = message.parse_header(b"")  # expunged meanwhile: nothing in it matches
            if self.cacheable:
                self.fields[uid] = searchcache.EMPTY
            return msg
        msg: message.Part | HeaderFields
        if whole:
            msg = message.parse(data)
        elif self.cacheable:
            msg = _SEARCH_FIELDS.read(data)  # nothing else will be asked
        else:
            msg = message.parse_header(data)
        if self.cacheable:
            stored = self.fresh[uid] = searchcache.record(msg)
            self.fields[uid] = searchcache.load(stored) or searchcache.fields_of(msg)
        return msg

    def read_records(self, uids: list[int]) -> None:
        """Read the search text of many messages, a block of paths per query."""
        for b in range(0, len(uids), READ_BLOCK):
            block = uids[b : b + READ_BLOCK]
            paths = self.folder.paths_of(block)
            for uid in block:
                try:
                    data = read_at(self.folder, paths, uid, header_only=True)
                except (E.MessageGone, FileNotFoundError):
                    self.records[uid] = _NOTHING  # expunged meanwhile: nothing in it matches
                    continue
                self.records[uid] = self.fresh[uid] = searchcache.record(_SEARCH_FIELDS.read(data))

    def save(self) -> None:
        if self.fresh:
            self.folder.put_parsed_many(CACHE_KEY, self.fresh)  # type: ignore[arg-type]


class Message:
    """One message as a `SearchTarget`, reading its file only when asked to."""

    __slots__ = ("seq", "uid", "_ctx", "_msg", "_whole")

    def __init__(self, ctx: Context, index: int, uid: int) -> None:
        self.seq = index + 1
        self.uid = uid
        self._ctx = ctx
        self._msg: message.Part | HeaderFields | None = None
        self._whole = False

    @property
    def flags(self) -> Collection[str]:
        found = self._ctx.flags.get(self.uid, frozenset())
        return found | {RECENT} if self._ctx.folder.is_recent(self.uid) else found

    @property
    def size(self) -> int:
        return self._ctx.sizes.get(self.uid, 0)

    @property
    def internal_date(self) -> datetime:
        epoch = self._ctx.dates.get(self.uid)
        return _EPOCH if epoch is None else local_time(epoch)

    @property
    def modseq(self) -> int:
        return self._ctx.folder.modseq(self.uid)

    def parsed(self, whole: bool) -> message.Part | HeaderFields:
        if self._msg is None or (whole and not self._whole):
            self._msg, self._whole = self._ctx.read(self.uid, whole), whole
        return self._msg

    def header_folded(self, name: str) -> list[str] | None:
        key = name.lower()
        if not self._ctx.cacheable or key not in searchcache.FOLDED:
            return None
        return self._ctx.fields_of(self)[key]

    def header(self, name: str) -> list[str]:
        ctx = self._ctx
        key = name.lower()
        if ctx.cacheable and key == "date":
            return ctx.fields_of(self)[key]
        msg = self.parsed(ctx.needs.body)
        return [_text(v) for v in msg.get_all(key)]

    def header_text(self) -> str:
        return _text(self.parsed(self._ctx.needs.body).header)

    def body_text(self) -> str:
        return body_text(self.parsed(True))

    def sent_date(self) -> datetime | None:
        values = self.header("date")
        return parse_sent_date(values[0]) if values else None


def _needle(key: SearchKey) -> str | None:
    """Text (folded) that the search text of every message the program
    matches contains: that of a FROM/SUBJECT/... key it requires."""
    keys = key.keys if isinstance(key, And) else (key,)
    found = [k.value.casefold() for k in keys
             if isinstance(k, Header) and k.field.lower() in searchcache.FOLDED]
    return max(found, key=len) if found else None


@dataclass
class Found:
    numbers: list[int]
    modseq: int | None  # when the program used MODSEQ: the highest of those returned


def run_search(folder: Folder, cmd: C.Search) -> Found:
    uids = folder.uids
    searcher = Searcher(cmd.program, max_seq=len(uids), max_uid=uids[-1] if uids else 0)
    ctx = Context(folder, Needs.of(cmd.program), uids)
    needle = _needle(cmd.program) if ctx.cacheable else None
    records = ctx.records
    matched: list[int] = []  # indexes into uids

    def judge(indexes: Iterable[int]) -> list[int]:
        unread = []
        for i in indexes:
            uid = uids[i]
            if needle is not None and not searchcache.may_contain(records.get(uid), needle):
                continue
            try:
                if searcher.matches(Message(ctx, i, uid)):
                    matched.append(i)
            except _Unread:
                unread.append(i)
        return unread

    unread = judge(range(len(uids)))
    if ctx.cacheable and unread:
        # Only search text is missing: read it all, then judge as above.
        ctx.read_records([uids[i] for i in unread])
        unread = judge(unread)
    ctx.deferring = False
    for b in range(0, len(unread), READ_BLOCK):
        block = unread[b : b + READ_BLOCK]
        ctx.paths = folder.paths_of([uids[i] for i in block])
        matched.extend(i for i in block if searcher.matches(Message(ctx, i, uids[i])))
    matched.sort()
    ctx.save()
    numbers = [uids[i] if cmd.uid else i + 1 for i in matched]
    modseq = None
    if searcher.uses_modseq and matched:
        returned = matched
        options = cmd.return_options
        if options is not None and not options & {"ALL", "COUNT"}:
            # RFC 4731 3.2: with only MIN and/or MAX, the messages returned are those.
            returned = [matched[0]] * ("MIN" in options) + [matched[-1]] * ("MAX" in options)
        modseq = max((folder.modseq(uids[i]) for i in returned), default=None)
    return Found(numbers, modseq)


@guarded
async def search(session: Session, cmd: C.Search) -> AsyncIterator[bytes]:
    # No EXPUNGE may be sent during SEARCH by sequence number (RFC 3501 7.4.1).
    for out in await session.updates(allow_expunge=cmd.uid):
        yield out
    folder = session.folder
    if folder is None:
        yield R.no(cmd.tag, "The mailbox is gone")
        return
    found = await session.run(run_search, folder, cmd)
    if found.modseq is not None:
        session.condstore = True  # SEARCH MODSEQ enables CONDSTORE (RFC 7162 3.1)
    if cmd.return_options is None:
        yield R.search(found.numbers, found.modseq)
    else:
        yield R.esearch(cmd.tag, found.numbers, cmd.return_options, uid=cmd.uid,
                        modseq=found.modseq)
    yield R.ok(cmd.tag, f"{cmd.name} completed")
