"""DSN construction (RFC 3464 / RFC 6522), read back with the standard email parser."""

from __future__ import annotations

import email
import email.policy

import pytest

from mta.queue import bounce, dsn
from mta.queue.envelope import FAILED, SMTP, Recipient

ORIGINAL = (b"From: Alice <alice@example.test>\r\nTo: rob@remote.test\r\nSubject: hello\r\n"
            b"Message-ID: <m1@example.test>\r\n\r\nsecret body\r\n")


def report(**kw) -> dsn.RecipientReport:
    base = dict(address="rob@remote.test", original="rob@remote.test", action=dsn.FAILED,
                status="5.1.1", diagnostic="550 5.1.1 <rob@remote.test>: no such user",
                remote_mta="mx.remote.test")
    return dsn.RecipientReport(**{**base, **kw})


def build(reports, kind=dsn.FAILED, original=ORIGINAL, **kw) -> bytes:
    return dsn.build(kind, hostname="mail.example.test", queue_id="Q1", dsn_id="D1",
                     sender="alice@example.test", arrival=1_700_000_000.0, reports=reports,
                     original=original, now=1_700_000_600.0, **kw)


def parts(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    human, status, headers = msg.get_payload()
    return msg, human, [dict(b.items()) for b in status.get_payload()], headers


def test_a_failure_report_has_the_three_parts_and_the_fields():
    raw = build([report(), report(address="ann@remote.test", original="team@remote.test",
                                  status="5.2.2", diagnostic="552 5.2.2 over quota")])
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg, human, (top, rob, ann), headers = parts(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.test>"
    assert msg["To"] == "<alice@example.test>"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["References"] == "<m1@example.test>"
    assert "rob@remote.test" in human.get_payload() and "over quota" in human.get_payload()
    assert top["Reporting-MTA"] == "dns; mail.example.test"
    assert "Arrival-Date" in top and "X-Mailpair-Queue-ID" in top
    assert rob == {**rob, "Final-Recipient": "rfc822; rob@remote.test", "Action": "failed",
                   "Status": "5.1.1", "Remote-MTA": "dns; mx.remote.test"}
    assert "Original-Recipient" not in rob
    assert ann["Original-Recipient"] == "rfc822; team@remote.test"
    assert ann["Diagnostic-Code"] == "smtp; 552 5.2.2 over quota"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: hello" in headers.get_payload()
    assert "secret body" not in raw.decode()  # the header comes back, not the body


def test_a_delay_report():
    raw = build([report(action=dsn.DELAYED, status="4.4.1", diagnostic="451 4.4.1 later")],
                kind=dsn.DELAYED, retry_until=1_700_400_000.0)
    msg, human, (_, rob), _ = parts(raw)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert rob["Action"] == "delayed" and "Will-Retry-Until" in rob
    assert "do not need to send it again" in human.get_payload()


def test_a_local_diagnostic_names_no_remote_mta():
    _, _, (_, rob), _ = parts(build([report(remote_mta="", status="5.1.10",
                                            diagnostic="556 5.1.10 null MX")]))
    assert "Remote-MTA" not in rob
    assert rob["Diagnostic-Code"] == "X-mailpair; 556 5.1.10 null MX"


def test_long_diagnostics_are_folded():
    raw = build([report(diagnostic="550 5.7.1 " + "word " * 60)])
    assert all(len(line) <= 100 for line in raw.split(b"\r\n"))
    _, _, (_, rob), _ = parts(raw)
    assert " ".join(rob["Diagnostic-Code"].split()).endswith("word")


def test_8bit_headers_are_marked():
    raw = build([report()], original="Subject: grüße\r\n\r\nx\r\n".encode())
    head_part = raw.split(b"text/rfc822-headers", 1)[1]
    assert b"Content-Transfer-Encoding: 8bit" in head_part
    assert "grüße".encode() in head_part


def test_a_message_without_a_body_separator():
    raw = build([report()], original=b"Subject: only a header")
    assert b"Subject: only a header\r\n--D1/mail.example.test--" in raw


@pytest.mark.parametrize(("reply", "status"), [
    ("550 5.1.1 no such user", "5.1.1"), ("5.0.0 bounced by the administrator", "5.0.0"),
    ("554 relay denied", "5.0.0"), ("451 try later", "4.0.0"), ("452-4.2.2 full", "4.2.2"),
    ("nonsense", "4.0.0"),
])
def test_status_of(reply, status):
    assert dsn.status_of(reply) == status


def test_an_expired_recipient_reports_447_and_the_last_reply():
    r = Recipient(address="rob@remote.test", original="rob@remote.test", route=SMTP,
                  state=FAILED, last_reply=bounce.EXPIRED + "451 4.4.1 connection refused")
    rep = bounce.report_for(r, dsn.FAILED)
    assert (rep.status, rep.diagnostic) == ("4.4.7", "451 4.4.1 connection refused")
