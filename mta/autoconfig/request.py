"""HTTP/1.1 requests, as much as the autoconfig documents need. Bytes in, no I/O.

A request is a head (request line and header fields, ended by an empty
line, at most MAX_HEAD octets) and, for POST, a body of exactly
Content-Length octets (at most MAX_BODY): no client of these documents sends
chunked bodies, so Transfer-Encoding is refused (501) rather than guessed at,
which also leaves no room for request smuggling. One request per connection
(responses say Connection: close): the documents are small and fetched once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]")


class BadRequest(Exception):
    """The request cannot be answered; `status` says why (400, 411, 413, 431, 501)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""
    body_length: int = 0

    def arg(self, name: str) -> str | None:
        """A query argument; the first if repeated. Names compare case-insensitively
        (Thunderbird sends emailaddress=, other clients EmailAddress=)."""
        for key, values in self.query.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None


def parse_head(head: bytes) -> Request:
    """The request line and header fields (without the final empty line)."""
    if len(head) > MAX_HEAD:
        raise BadRequest(431, "request head too large")
    lines = head.split(b"\r\n")
    m = _REQUEST_LINE.fullmatch(lines[0])
    if not m:
        raise BadRequest(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise BadRequest(400, "bad header field")
        key = name.decode().lower()
        if key in headers and key in ("content-length", "host", "transfer-encoding"):
            raise BadRequest(400, f"repeated {key}")
        headers[key] = value.strip(b" \t").decode("latin-1")
    if "transfer-encoding" in headers:
        raise BadRequest(501, "transfer codings are not supported")
    length = 0
    if "content-length" in headers:
        if not re.fullmatch(r"[0-9]{1,9}", headers["content-length"]):
            raise BadRequest(400, "bad Content-Length")
        length = int(headers["content-length"])
    elif m.group(1) == b"POST":
        raise BadRequest(411, "Content-Length required")
    if length > MAX_BODY:
        raise BadRequest(413, "request body too large")
    target = m.group(2).decode("latin-1")
    parts = urlsplit(target)
    return Request(method=m.group(1).decode(), path=unquote(parts.path),
                   query=parse_qs(parts.query), headers=headers, body_length=length)


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Content Too Large",
           431: "Request Header Fields Too Large", 501: "Not Implemented"}


def response(status: int, content_type: str, body: bytes, head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
             "Cache-Control: no-store", "X-Content-Type-Options: nosniff",
             "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + (b"" if head_only else body)
