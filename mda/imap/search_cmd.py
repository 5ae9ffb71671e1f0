"""SEARCH and UID SEARCH (RFC 3501 6.4.4; RFC 4731 ESEARCH; RFC 7162 MODSEQ).

`mda.imap.search.Searcher` decides; this module shows it each message as a
`SearchTarget`, loading only what the program needs: flags, sizes, dates
and modseqs come from the view and the index in one call each; a message
file is opened only for keys on headers or text, and then only its header
when that is enough. The address and subject fields (SEARCH_FIELDS) are
kept in the index after the first search that reads them, so the next
`SEARCH FROM ...` opens no file.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mda.imap import commands as C
from mda.imap import response as R
from mda.imap.fetch_cmd import read_header
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

if TYPE_CHECKING:
    from mda.imap.session import Session

# Header fields cached for SEARCH, lower case.
SEARCH_FIELDS = ("from", "to", "cc", "bcc", "subject", "date")
CACHE_KEY = "search-headers"
CACHE_BLOCK = 500
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


class Context:
    """Shared by the messages of one SEARCH: the batched data and the cache."""

    def __init__(self, folder: Folder, needs: Needs, uids: list[int]) -> None:
        self.folder = folder
        self.needs = needs
        self.uids = uids
        self.flags = folder.flags_of(uids) if needs.flags else {}
        self.sizes = folder.sizes(uids) if needs.sizes else {}
        self.dates = folder.internal_dates(uids) if needs.dates else {}
        self.cache: dict[int, object] = {}
        self.loaded_blocks: set[int] = set()
        self.fresh: dict[int, str] = {}

    def cached_fields(self, index: int, uid: int) -> dict[str, list[str]] | None:
        block = index // CACHE_BLOCK
        if block not in self.loaded_blocks:
            self.loaded_blocks.add(block)
            ids = self.uids[block * CACHE_BLOCK : (block + 1) * CACHE_BLOCK]
            self.cache.update(self.folder.get_parsed_many(CACHE_KEY, ids))
        value = self.cache.get(uid)
        if not isinstance(value, str):
            return None
        try:
            found = json.loads(value)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def remember(self, uid: int, msg: message.Part) -> None:
        values = {n: [v.decode("latin-1") for v in msg.get_all(n)] for n in SEARCH_FIELDS}
        self.fresh[uid] = json.dumps(values, separators=(",", ":"))

    def save(self) -> None:
        if self.fresh:
            self.folder.put_parsed_many(CACHE_KEY, self.fresh)  # type: ignore[arg-type]


class Message:
    """One message as a `SearchTarget`, reading its file only when asked to."""

    __slots__ = ("seq", "uid", "_index", "_ctx", "_msg", "_whole", "_fields")

    def __init__(self, ctx: Context, index: int, uid: int) -> None:
        self.seq = index + 1
        self.uid = uid
        self._index = index
        self._ctx = ctx
        self._msg: message.Part | None = None
        self._whole = False
        self._fields: dict[str, list[str]] | None = None

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

    def _parsed(self, whole: bool) -> message.Part:
        if self._msg is None or (whole and not self._whole):
            folder = self._ctx.folder
            try:
                data = folder.read(self.uid) if whole else read_header(folder, self.uid)
            except (E.MessageGone, FileNotFoundError):
                data = b""  # expunged meanwhile: nothing in it matches
            self._msg, self._whole = message.parse(data), whole
            if data and self._ctx.needs.cacheable:
                self._ctx.remember(self.uid, self._msg)
        return self._msg

    def header(self, name: str) -> list[str]:
        ctx = self._ctx
        key = name.lower()
        if ctx.needs.cacheable and self._msg is None:
            if self._fields is None:
                self._fields = ctx.cached_fields(self._index, self.uid)
            if self._fields is not None and key in self._fields:
                return [_text(v.encode("latin-1")) for v in self._fields[key]]
        msg = self._parsed(ctx.needs.body)
        return [_text(v) for v in msg.get_all(key)]

    def header_text(self) -> str:
        return _text(self._parsed(self._ctx.needs.body).header)

    def body_text(self) -> str:
        return body_text(self._parsed(True))

    def sent_date(self) -> datetime | None:
        values = self.header("date")
        return parse_sent_date(values[0]) if values else None


@dataclass
class Found:
    numbers: list[int]
    modseq: int | None  # when the program used MODSEQ: the highest of those returned


def run_search(folder: Folder, cmd: C.Search) -> Found:
    uids = folder.uids
    searcher = Searcher(cmd.program, max_seq=len(uids), max_uid=uids[-1] if uids else 0)
    ctx = Context(folder, Needs.of(cmd.program), uids)
    matched: list[int] = []  # indexes into uids
    for i, uid in enumerate(uids):
        if searcher.matches(Message(ctx, i, uid)):
            matched.append(i)
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
