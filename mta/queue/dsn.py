"""Delivery status notifications (RFC 3464) as bytes: no I/O, tested directly.

A DSN is a multipart/report (RFC 6522) with report-type=delivery-status of
three parts: words for a person, a message/delivery-status part (one block
about the message, then one per recipient), and the original message's
header as text/rfc822-headers. It goes from MAILER-DAEMON with the null
reverse path, so that it can never cause a DSN itself.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import formatdate

FAILED, DELAYED = "failed", "delayed"

_ENHANCED = re.compile(r"^(?:\d{3}[ -])?([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


@dataclass(frozen=True)
class RecipientReport:
    address: str  # the mailbox delivery was tried for (Final-Recipient)
    original: str  # as the sender wrote it (Original-Recipient when it differs)
    action: str  # failed or delayed
    status: str  # e.g. 5.1.1
    diagnostic: str  # the last reply, as the server or this MTA gave it
    remote_mta: str = ""  # the host that gave the reply, if one did


def status_of(reply: str) -> str:
    """The enhanced status code of a reply, or one made from its basic code."""
    m = _ENHANCED.match(reply.strip())
    if m:
        return ".".join(m.groups())
    first = reply.strip()[:1]
    return f"{first}.0.0" if first in ("2", "4", "5") else "4.0.0"


def _addr_type(address: str) -> str:
    return "rfc822" if address.isascii() else "utf-8"


def fold(name: str, value: str, width: int = 78) -> str:
    """'Name: value' folded at spaces into lines of about width characters."""
    words = value.split()
    lines, line = [], f"{name}:"
    for w in words:
        if len(line) + 1 + len(w) > width and line.strip() != f"{name}:":
            lines.append(line)
            line = "\t" + w
        else:
            line += " " + w
    lines.append(line)
    return "\r\n".join(lines)


def header_section(message: bytes) -> bytes:
    """The original header, CRLF-terminated, without the blank line after it."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    return head if head.endswith(b"\r\n") else head + b"\r\n"


def _message_id(head: bytes) -> str | None:
    value = BytesHeaderParser().parsebytes(head).get("Message-ID")
    return str(value).strip() if value else None


def _human(kind: str, hostname: str, reports: list[RecipientReport],
           retry_until: float | None) -> str:
    lines = [f"This is the mail server at {hostname}.", ""]
    if kind == FAILED:
        lines += ["Your message could not be delivered to the recipients below, and",
                  "will not be tried again. Its header is attached."]
    else:
        until = formatdate(retry_until, localtime=True) if retry_until else "it expires"
        lines += ["Your message has not been delivered yet to the recipients below.",
                  f"It will be tried again until {until};",
                  "you do not need to send it again."]
    lines.append("")
    for r in reports:
        where = f"{r.remote_mta} said" if r.remote_mta else "reason"
        lines += textwrap.wrap(f"<{r.address}>: {where}: {r.diagnostic}", 76,
                               subsequent_indent="    ", break_long_words=False)
    return "\r\n".join(lines) + "\r\n"


def _status_part(hostname: str, queue_id: str, sender: str, arrival: float,
                 reports: list[RecipientReport], now: float,
                 retry_until: float | None) -> str:
    blocks = ["\r\n".join([
        f"Reporting-MTA: dns; {hostname}",
        f"X-Mailpair-Queue-ID: {queue_id}",
        f"X-Mailpair-Sender: {_addr_type(sender)}; {sender}",
        f"Arrival-Date: {formatdate(arrival, localtime=True)}",
    ])]
    for r in reports:
        fields = [f"Final-Recipient: {_addr_type(r.address)}; {r.address}"]
        if r.original and r.original.lower() != r.address.lower():
            fields.append(f"Original-Recipient: {_addr_type(r.original)}; {r.original}")
        fields += [f"Action: {r.action}", f"Status: {r.status}"]
        if r.remote_mta:
            fields.append(f"Remote-MTA: dns; {r.remote_mta}")
            fields.append(fold("Diagnostic-Code", f"smtp; {r.diagnostic}"))
        else:
            fields.append(fold("Diagnostic-Code", f"X-mailpair; {r.diagnostic}"))
        fields.append(f"Last-Attempt-Date: {formatdate(now, localtime=True)}")
        if r.action == DELAYED and retry_until:
            fields.append(f"Will-Retry-Until: {formatdate(retry_until, localtime=True)}")
        blocks.append("\r\n".join(fields))
    return "\r\n\r\n".join(blocks) + "\r\n"


def _part(boundary: str, description: str, content_type: str, body: bytes) -> bytes:
    encoding = "7bit" if body.isascii() else "8bit"
    return (f"--{boundary}\r\nContent-Description: {description}\r\n"
            f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n"
            "\r\n").encode() + body


def build(kind: str, *, hostname: str, queue_id: str, dsn_id: str, sender: str,
          arrival: float, reports: list[RecipientReport], original: bytes, now: float,
          retry_until: float | None = None) -> bytes:
    """The whole DSN message, CRLF line ends, addressed to the original sender."""
    head = header_section(original)
    boundary = f"{dsn_id}/{hostname}"
    subject = ("Undelivered Mail Returned to Sender" if kind == FAILED
               else "Delayed Mail (still being retried)")
    top = [
        f"Date: {formatdate(now, localtime=True)}",
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{sender}>",
        f"Subject: {subject}",
        f"Message-ID: <{dsn_id}@{hostname}>",
        # RFC 3834: an automatic answer; no vacation reply or filter answers it.
        "Auto-Submitted: auto-replied",
    ]
    original_id = _message_id(head)
    if original_id:
        top += [f"In-Reply-To: {original_id}", f"References: {original_id}"]
    top += [
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
    ]
    human = _human(kind, hostname, reports, retry_until)
    status = _status_part(hostname, queue_id, sender, arrival, reports, now, retry_until)
    parts = [
        "\r\n".join(top).encode() + b"\r\n\r\nThis is a MIME-encapsulated message.\r\n",
        _part(boundary, "Notification", "text/plain; charset=utf-8", human.encode()),
        _part(boundary, "Delivery report", "message/delivery-status", status.encode()),
        _part(boundary, "Undelivered message header", "text/rfc822-headers", head),
        f"--{boundary}--\r\n".encode(),
    ]
    return b"\r\n".join(p.rstrip(b"\r\n") for p in parts) + b"\r\n"
