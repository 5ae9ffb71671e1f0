"""Message structure: a raw RFC 5322 message as a MIME tree of byte offsets.

`parse(data)` scans the stored bytes once and returns the root `Part`; every
part records where its header and body lie in `data`, so a protocol can cut
any section out without re-encoding, and the stored bytes are never altered.
IMAP (BODYSTRUCTURE, BODY[n]) and POP3 (TOP) are views of this tree; neither
lives here.

Lines end in LF (as Maildir stores them) or CRLF (as protocols carry them);
a CR before LF belongs to the line end, and a lone CR is just a byte to the
scanner. Protocols count and send the CRLF form, so sizes and line counts
here are those of `crlf(...)` of a span, which is what a client sees (there a
lone CR does become CRLF). No span starts or ends between a CR and its LF,
so crlf of a span is the matching piece of crlf of the whole message.

The scanner never raises on garbage: header lines without a colon, 8-bit
bytes, NULs, a missing blank line, boundaries that never close or that
appear where they should not. It follows what clients expect from Dovecot:
a boundary line is one that starts with "--" and an open boundary (the
innermost, longest match wins), and it ends every part opened inside its
multipart. Nesting stops at MAX_DEPTH and parts at MAX_PARTS; past them the
remaining bytes stay in the current part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from mda.store.addresses import Address, parse_addresses
from mda.store.headerfields import (
    Param,
    decode_header_text,
    parse_content_type,
    parse_disposition,
    parse_language,
    parse_token,
)
from mda.store.headerscan import unfold

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "Address",
    "Param",
    "Part",
    "crlf",
    "crlf_lines",
    "crlf_size",
    "decode_header_text",
    "parse",
    "parse_addresses",
    "parse_header",
]

# Deeper nesting or more parts than any real mail carries only serves to make
# the server spend time and stack on a hostile message.
MAX_DEPTH = 50
MAX_PARTS = 10_000

_LINE_END = re.compile(rb"\r\n|\r|\n")
# The line end before an empty line, and the empty line (LF or CRLF).
_EMPTY_LINE = re.compile(rb"\n\r?\n")
# One header field (a printable name, a colon) with its continuation lines,
# the value without the blanks that start it. A line it skips (no colon, odd
# bytes in the name) makes the header go the long way.
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:[ \t]*(.*(?:\n[ \t].*)*)", re.M)


def crlf(data: bytes) -> bytes:
    """`data` with every line end as CRLF, exactly as protocols send it: a bare
    LF or a bare CR becomes CRLF, an existing CRLF is kept."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")
    n_crlf = data.count(b"\r\n")
    if n_crlf == data.count(b"\n") == data.count(b"\r"):
        return data
    return _LINE_END.sub(b"\r\n", data)


def crlf_size(data: bytes, start: int = 0, end: int | None = None) -> int:
    """len(crlf(data[start:end])), counted without copying."""
    start, end, _ = slice(start, end).indices(len(data))
    if end <= start:
        return 0
    n_lf = data.count(b"\n", start, end)
    n_cr = data.count(b"\r", start, end)
    if not n_cr:
        return end - start + n_lf
    return end - start + n_lf + n_cr - 2 * data.count(b"\r\n", start, end)


def crlf_lines(data: bytes, start: int = 0, end: int | None = None) -> int:
    """Line ends in crlf(data[start:end]): a last line without one is not
    counted (as Dovecot counts BODYSTRUCTURE lines)."""
    start, end, _ = slice(start, end).indices(len(data))
    if end <= start:
        return 0
    n_lf = data.count(b"\n", start, end)
    n_cr = data.count(b"\r", start, end)
    if not n_cr:
        return n_lf
    return n_lf + n_cr - data.count(b"\r\n", start, end)


class Part:
    """One MIME entity: the whole message, a body part, or a message
    encapsulated in a message/rfc822 part.

    Spans, all offsets into `data` (the bytes given to `parse`):
      start        first byte of the header block
      fields_end   end of the header lines, where the blank line starts
      body_start   first byte of the body: after the blank line, or
                   fields_end when there was none
      end          end of the body. In a multipart the line end before a
                   boundary line belongs to the boundary, not to the part.

    Header:
      fields       [(name as written, value)]: the value unfolded (line ends
                   before continuation whitespace removed), leading
                   whitespace dropped, raw bytes otherwise. Lines without a
                   colon are not fields (they stay in the header block).
      type, subtype  lower case; text/plain when Content-Type is absent or
                   invalid (message/rfc822 inside multipart/digest)
      params       Content-Type parameters [Param], RFC 2231 merged
      encoding     Content-Transfer-Encoding token, lower case, or None
      content_id, description, location, md5: raw values or None
      disposition  Content-Disposition type, lower case, or None
      disposition_params  [Param]
      language     Content-Language tags [str] or None

    Structure:
      is_multipart  True for a multipart within the limits; its `children`
                    are the parts between its boundaries (possibly none)
      children     [Part]
      message      the encapsulated message of a message/rfc822 or
                   message/global part within the limits, else None
      parent, depth  the enclosing Part (None for the root) and its depth
    """

    __slots__ = (
        "data",
        "start",
        "fields_end",
        "body_start",
        "end",
        "parent",
        "depth",
        "fields",
        "_index",
        "type",
        "subtype",
        "params",
        "encoding",
        "content_id",
        "description",
        "location",
        "md5",
        "disposition",
        "disposition_params",
        "language",
        "is_multipart",
        "children",
        "message",
    )

    def __init__(self, data: bytes, start: int, parent: Part | None, depth: int) -> None:
        self.data = data
        self.start = start
        self.fields_end = start
        self.body_start = start
        self.end = len(data)
        self.parent = parent
        self.depth = depth
        self.fields: list[tuple[str, bytes]] = []
        self._index: dict[str, list[bytes]] = {}
        self.type = "text"
        self.subtype = "plain"
        self.params: list[Param] = []
        self.encoding: str | None = None
        self.content_id: bytes | None = None
        self.description: bytes | None = None
        self.location: bytes | None = None
        self.md5: bytes | None = None
        self.disposition: str | None = None
        self.disposition_params: list[Param] = []
        self.language: list[str] | None = None
        self.is_multipart = False
        self.children: list[Part] = []
        self.message: Part | None = None

    def __repr__(self) -> str:
        return (
            f"<Part {self.type}/{self.subtype} header {self.start}:{self.body_start}"
            f" body {self.body_start}:{self.end} children={len(self.children)}"
            f" message={self.message is not None}>"
        )

    # --- header fields ---

    def get(self, name: str) -> bytes | None:
        """Value of the first field called `name` (any case), or None."""
        values = self._index.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[bytes]:
        """Values of every field called `name` (any case), in order."""
        return list(self._index.get(name.lower(), ()))

    def param(self, name: str) -> str | None:
        """Decoded Content-Type parameter `name`, or None."""
        return _find_param(self.params, name)

    @property
    def mime_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def charset(self) -> str | None:
        """The charset parameter; us-ascii for text without one (RFC 2045)."""
        value = self.param("charset")
        if value is None and self.type == "text":
            return "us-ascii"
        return value

    @property
    def filename(self) -> str | None:
        """Disposition filename, else Content-Type name, decoded; or None."""
        return _find_param(self.disposition_params, "filename") or self.param("name")

    def header_text(
        self, names: Iterable[str | bytes] | None = None, exclude: bool = False
    ) -> bytes:
        """The header block as stored (original line ends).

        names None: the whole block with its blank line (IMAP HEADER, MIME).
        Otherwise only the fields whose name matches one of `names` (ASCII
        case-insensitive), or with `exclude` those that match none (lines
        without a colon count as matching no name). Each field keeps its
        lines exactly, continuations included; the blank line follows, if
        the part had one (IMAP HEADER.FIELDS and HEADER.FIELDS.NOT).
        """
        data = self.data
        if names is None:
            return data[self.start : self.body_start]
        wanted = {
            (n.decode("latin-1") if isinstance(n, bytes) else n)
            .lower()
            .encode("latin-1", "replace")
            for n in names
        }
        out: list[bytes] = []
        keep = exclude  # continuation lines before any field follow a nameless one
        pos, stop = self.start, self.fields_end
        while pos < stop:
            nl = data.find(b"\n", pos, stop)
            nxt = stop if nl < 0 else nl + 1
            first = data[pos]
            if first != 0x20 and first != 0x09:
                colon = data.find(b":", pos, nxt)
                if colon < 0:
                    keep = exclude
                else:
                    name = data[pos:colon].rstrip(b" \t").lower()
                    keep = (name in wanted) != exclude
            if keep:
                out.append(data[pos:nxt])
            pos = nxt
        out.append(data[self.fields_end : self.body_start])
        return b"".join(out)

    # --- spans and sizes ---

    @property
    def header(self) -> bytes:
        """The header block as stored, with its blank line."""
        return self.data[self.start : self.body_start]

    @property
    def body(self) -> bytes:
        """The body as stored."""
        return self.data[self.body_start : self.end]

    @property
    def size(self) -> int:
        """Octets of the body in CRLF form (IMAP body size)."""
        return crlf_size(self.data, self.body_start, self.end)

    @property
    def lines(self) -> int:
        """Lines of the body in CRLF form (IMAP body lines)."""
        return crlf_lines(self.data, self.body_start, self.end)

    @property
    def header_size(self) -> int:
        """Octets of the header block in CRLF form."""
        return crlf_size(self.data, self.start, self.body_start)

    def walk(self) -> Iterator[Part]:
        """This part and every part inside it, depth first, in order."""
        stack = [self]
        while stack:
            part = stack.pop()
            yield part
            inner = part.children if part.message is None else [part.message]
            stack.extend(reversed(inner))


def _find_param(params: list[Param], name: str) -> str | None:
    name = name.lower()
    for p in params:
        if p.name == name:
            return p.value
    return None


def _parse_fields(part: Part) -> None:
    block = part.data[part.start : part.fields_end]
    fields = _fields_at_once(block)
    if fields is None:
        fields = _fields_by_line(block)
    part.fields = fields
    index = part._index
    for name, value in fields:
        key = name.lower()
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)


def _fields_at_once(block: bytes) -> list[tuple[str, bytes]] | None:
    """_fields_by_line(block), found in C, when every line starts a field or
    continues one (the usual header); else None."""
    found = _FIELD.findall(block)
    lines = block.count(b"\n") + (block[-1:] not in (b"", b"\n"))
    folded = block.count(b"\n ") + block.count(b"\n\t")
    if len(found) != lines - folded or block[:1] in (b" ", b"\t"):
        return None
    if folded or b"\r" in block:
        return [(name.decode("latin-1"), unfold(value)) for name, value in found]
    return [(name.decode("latin-1"), value) for name, value in found]


def _fields_by_line(block: bytes) -> list[tuple[str, bytes]]:
    fields: list[list] = []
    current: list | None = None
    for line in block.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        if line[0] == 0x20 or line[0] == 0x09:
            if current is not None:
                current[1] += line  # unfolding keeps the whitespace
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip(b" \t") if colon > 0 else b""
        if not name:
            current = None  # continuation lines of a broken line go with it
            continue
        current = [name.decode("latin-1"), line[colon + 1 :]]
        fields.append(current)
    return [(name, value.lstrip(b" \t")) for name, value in fields]


def _apply_content_headers(part: Part, in_digest: bool) -> None:
    get = part.get
    ctype = parse_content_type(get("content-type"))
    if ctype is not None:
        part.type, part.subtype, part.params = ctype
    elif in_digest:
        part.type, part.subtype = "message", "rfc822"  # RFC 2046 5.1.5
    part.encoding = parse_token(get("content-transfer-encoding"))
    part.content_id = get("content-id")
    part.description = get("content-description")
    part.location = get("content-location")
    part.md5 = get("content-md5")
    part.language = parse_language(get("content-language"))
    disposition = parse_disposition(get("content-disposition"))
    if disposition is not None:
        part.disposition, part.disposition_params = disposition


class _Scanner:
    """One pass over the message with a stack of open parts and of the
    boundaries that can end them, as a streaming MIME parser works; a
    recursive split would have to guess which nested boundary a line belongs
    to before it knows the inner boundaries.

    Each byte is searched about once, in C: a body by one regular expression
    for the open boundaries, a header for its empty line; so a hostile
    message (deep nesting, a million lines of "--x") costs no more than a
    long one.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.bounds: list[tuple[bytes, Part]] = []  # innermost last
        self.open: list[Part] = []  # outermost first
        self.count = 0
        self.resume = 0  # where the body scan continues after begin()
        self.pattern: re.Pattern[bytes] | None = None  # for bounds as they are now
        # The last empty-line search: (from, (empty line, next line) or None).
        self.empty_memo: tuple[int, tuple[int, int] | None] | None = None

    def run(self) -> Part:
        data = self.data
        root = self.begin(0, None, 0, False)
        pos = self.resume
        while True:
            hit = self.next_boundary(pos)
            if hit is None:
                break
            ls, le, idx, close = hit
            owner = self.bounds[idx][1]
            # The line end before a boundary line belongs to the boundary.
            self.close_inside(owner, ls - 2 if data[ls - 2 : ls] == b"\r\n" else ls - 1)
            keep = idx if close else idx + 1
            if keep < len(self.bounds):
                del self.bounds[keep:]
                self.pattern = None
            if close:
                pos = le  # the epilogue runs to the owner's own end
            else:
                owner.children.append(
                    self.begin(le, owner, owner.depth + 1, owner.subtype == "digest")
                )
                pos = self.resume
        self.close_inside(None, len(data))
        return root

    def close_inside(self, owner: Part | None, end: int) -> None:
        while self.open and self.open[-1] is not owner:
            part = self.open.pop()
            # A part never ends before its body starts, nor before what it
            # contains: a message whose empty header ("\n") was the boundary's
            # line end keeps that line end, and so does its enclosing part.
            part.end = end = max(end, part.body_start)

    def begin(self, start: int, parent: Part | None, depth: int, in_digest: bool) -> Part:
        part = Part(self.data, start, parent, depth)
        self.count += 1
        self.split_header(part)
        _parse_fields(part)
        _apply_content_headers(part, in_digest)
        self.open.append(part)
        self.resume = part.body_start
        within = depth < MAX_DEPTH and self.count < MAX_PARTS
        if part.type == "multipart" and within:
            part.is_multipart = True
            boundary = next((p.raw for p in part.params if p.name == "boundary"), b"")
            if boundary:
                self.bounds.append((boundary, part))
                self.pattern = None
        elif part.type == "message" and part.subtype in ("rfc822", "global") and within:
            part.message = self.begin(part.body_start, part, depth + 1, False)
        return part

    def split_header(self, part: Part) -> None:
        # The header ends at the first empty line, or at the boundary line that
        # ends the part when the empty line is missing (then, as in a body,
        # the line end before the boundary is the boundary's).
        data = self.data
        start = part.start
        if start >= len(data) or (start and data[start - 1] != 0x0A):
            # Nothing left, or only the line end before a boundary: the case of
            # a message/rfc822 part whose own header the boundary cut.
            return
        empty = self.empty_line(start)
        stop = len(data) if empty is None else empty[1]
        hit = self.next_boundary(start, stop)
        if hit is not None:
            ls = hit[0]
            end = ls - 2 if data[ls - 2 : ls] == b"\r\n" else ls - 1
            part.fields_end = part.body_start = max(end, start)
        elif empty is not None:
            part.fields_end, part.body_start = empty
        else:
            part.fields_end = part.body_start = len(data)

    def empty_line(self, start: int) -> tuple[int, int] | None:
        """(start, end) of the first empty line at or after line start `start`.
        Remembered, so parts without one do not each search to the end."""
        memo = self.empty_memo
        if memo is not None and memo[0] <= start and (memo[1] is None or start <= memo[1][0]):
            return memo[1]
        data = self.data
        found: tuple[int, int] | None
        if data.startswith(b"\n", start):
            found = (start, start + 1)
        elif data.startswith(b"\r\n", start):
            found = (start, start + 2)
        else:
            m = _EMPTY_LINE.search(data, start)
            found = None if m is None else (m.start() + 1, m.end())
        self.empty_memo = (start, found)
        return found

    def next_boundary(self, pos: int, stop: int | None = None) -> tuple[int, int, int, bool] | None:
        """The first boundary line starting in [pos, stop): (line start, next
        line start, index in bounds, is the close delimiter)."""
        if not self.bounds or self.count >= MAX_PARTS:
            return None
        data = self.data
        if stop is None:
            stop = len(data)
        if pos < stop and (pos == 0 or data[pos - 1] == 0x0A) and data.startswith(b"--", pos):
            hit = self.match(pos)
            if hit is not None:
                return hit
        if self.pattern is None:
            # Lines that start with "--" but no open boundary are skipped in C.
            alternatives = b"|".join(re.escape(b) for b in {b for b, _ in self.bounds})
            self.pattern = re.compile(b"\n--(?:" + alternatives + b")")
        search = self.pattern.search
        while True:
            # A line starting before `stop` also ends before it (stop is a
            # line start), so the whole match lies before it.
            m = search(data, pos, stop)
            if m is None:
                return None
            hit = self.match(m.start() + 1)
            if hit is not None:
                return hit
            pos = m.start() + 1

    def match(self, ls: int) -> tuple[int, int, int, bool] | None:
        data = self.data
        nl = data.find(b"\n", ls)
        if nl < 0:
            line_end = next_line = len(data)
        else:
            line_end, next_line = nl, nl + 1
        if line_end > ls and data[line_end - 1] == 0x0D:
            line_end -= 1
        text = ls + 2
        room = line_end - text
        best = -1
        best_len = -1
        bounds = self.bounds
        for idx in range(len(bounds) - 1, -1, -1):
            boundary = bounds[idx][0]
            if best_len < len(boundary) <= room and data.startswith(boundary, text):
                best, best_len = idx, len(boundary)
        if best < 0:
            return None
        after = text + best_len
        close = after + 2 <= line_end and data.startswith(b"--", after)
        return ls, next_line, best, close


def parse(data: bytes) -> Part:
    """The MIME tree of a raw message (LF or CRLF line ends). Never raises on
    malformed mail; `data` is kept, not copied or changed."""
    return _Scanner(bytes(data)).run()


def parse_header(data: bytes) -> Part:
    """The root Part of `parse(data)` as far as its header goes: the same spans
    and fields, but Content-* left unread and no parts (it says text/plain).

    Enough for ENVELOPE, header searches and the sections of the whole
    message (BODY[], BODY[HEADER...], BODY[TEXT]), at a fraction of the cost
    of the MIME scan; not for BODYSTRUCTURE or part numbers.
    """
    scanner = _Scanner(bytes(data))
    part = Part(scanner.data, 0, None, 0)
    scanner.split_header(part)
    _parse_fields(part)
    return part
