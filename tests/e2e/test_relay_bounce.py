"""Bounces and delay warnings (RFC 3464 DSNs) from real outbound deliveries."""

from __future__ import annotations

import email
import email.policy
import re

from tests.conftest import wait_for

ALICE = "alice@example.test"
ROB, NOBODY = "rob@remote.test", "nobody@remote.test"


def send(stack, rcpts: list[str], subject: str, sender: str = ALICE) -> None:
    msg = (f"From: {ALICE}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '-')}@example.test>\r\n\r\nhi\r\n")
    with stack.submission() as s:
        assert s.sendmail(sender, rcpts, msg.encode()) == {}


def queue_empty(stack) -> None:
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")


def parse_dsn(raw: bytes) -> tuple[email.message.Message, list[dict[str, str]], str]:
    """The DSN, its per-message and per-recipient status fields, and the returned header."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, status, headers = msg.get_payload()
    assert human.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    assert headers.get_content_type() == "text/rfc822-headers"
    blocks = [dict(b.items()) for b in status.get_payload()]
    return msg, blocks, headers.get_payload()


def test_a_5xx_gives_one_bounce_with_the_remote_reply(net):
    sender = net.start_sender()
    remote = net.start_remote()
    send(sender, [ROB, NOBODY], "doomed")
    remote.wait_messages(ROB, 1)
    (raw,) = sender.wait_messages(ALICE, 1)
    queue_empty(sender)
    assert len(sender.messages(ALICE)) == 1  # one DSN, not one per recipient or attempt
    assert raw.startswith(b"Return-Path: <>\n")  # from the null sender
    msg, (per_message, rcpt, *more), headers = parse_dsn(raw)
    assert more == []  # rob was delivered: only nobody is reported
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.test>"
    assert msg["To"] == f"<{ALICE}>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<doomed@example.test>"
    assert per_message["Reporting-MTA"] == "dns; mail.example.test"
    assert "Arrival-Date" in per_message
    assert rcpt["Final-Recipient"] == f"rfc822; {NOBODY}"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == "5.1.1"
    assert rcpt["Remote-MTA"] == "dns; mx.remote.test"
    diagnostic = re.sub(r"\s+", " ", rcpt["Diagnostic-Code"])
    assert diagnostic.startswith("smtp; 550 5.1.1") and NOBODY in diagnostic
    assert "Subject: doomed" in headers and "hi\r\n" not in headers


def test_expiry_gives_one_bounce(net):
    sender = net.start_sender(mta_retry_schedule=[0.5], mta_queue_lifetime=3)
    send(sender, [ROB], "too late")  # the remote stack never comes up
    (raw,) = sender.wait_messages(ALICE, 1, timeout=30)
    queue_empty(sender)
    _, (_, rcpt), headers = parse_dsn(raw)
    assert rcpt["Action"] == "failed" and rcpt["Status"] == "4.4.7"
    assert rcpt["Final-Recipient"] == f"rfc822; {ROB}"
    assert "Subject: too late" in headers
    assert len(sender.messages(ALICE)) == 1


def test_a_bounce_is_never_bounced(net):
    # alice may use any MAIL FROM here (mta.send_as), so that the message
    # can claim the sender ghost@remote.test.
    sender = net.start_sender(mta_send_as={ALICE: ["*"]})
    net.start_remote()
    # The DSN for nobody goes to ghost@remote.test, who does not exist either:
    # that DSN fails too, and nothing answers it.
    send(sender, [NOBODY], "ghost", sender="ghost@remote.test")
    wait_for(lambda: "no DSN for a message with the null sender" in sender.log("mtad"), 60,
             "the failed DSN to be logged")
    queue_empty(sender)
    refused = [line for line in sender.log("mtad").splitlines()
               if "state=failed" in line and "ghost@remote.test" in line]
    assert refused, "the DSN to ghost was tried and refused"
    assert len(re.findall(r"DSN queued", sender.log("mtad"))) == 1
    assert sender.messages(ALICE) == []


def test_null_sender_failure_makes_no_new_message(net):
    sender = net.start_sender()
    net.start_remote()
    send(sender, [NOBODY], "null", sender="<>")
    wait_for(lambda: "no DSN for a message with the null sender" in sender.log("mtad"), 60,
             "the suppressed DSN in the log")
    queue_empty(sender)
    assert "DSN queued" not in sender.log("mtad")
    assert sender.messages(ALICE) == []


def test_null_mx_bounces_at_once(net):
    net.dns.zone["nomail.test"] = {"MX": ["0 ."]}
    sender = net.start_sender(mta_retry_schedule=[3600])
    send(sender, ["someone@nomail.test"], "no mail here")
    (raw,) = sender.wait_messages(ALICE, 1)
    queue_empty(sender)
    _, (_, rcpt), _ = parse_dsn(raw)
    assert rcpt["Status"] == "5.1.10"
    assert "Remote-MTA" not in rcpt  # no server was asked
    assert "null MX" in rcpt["Diagnostic-Code"]
    assert net.dns.asked("nomail.test", "A") == 0


def test_delay_warning_is_sent_once(net):
    sender = net.start_sender(delay_warning=1, mta_retry_schedule=[0.3])
    send(sender, [ROB], "slow")
    (raw,) = sender.wait_messages(ALICE, 1)
    msg, (_, rcpt), headers = parse_dsn(raw)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert rcpt["Action"] == "delayed" and rcpt["Status"].startswith("4.")
    assert "Will-Retry-Until" in rcpt and "Subject: slow" in headers
    # More rounds fail, and no second warning comes.
    start = sender.log("mtad").count("deferred")
    wait_for(lambda: sender.log("mtad").count("deferred") >= start + 4, 60, "more attempts")
    assert len(sender.messages(ALICE)) == 1
    net.start_remote()
    net.remote.wait_messages(ROB, 1)
    queue_empty(sender)
    assert len(sender.messages(ALICE)) == 1
