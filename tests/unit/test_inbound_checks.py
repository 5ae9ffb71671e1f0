"""One inbound message's SPF, DMARC and Authentication-Results, against the loopback DNS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mta.checks.dmarc import DKIMResult
from mta.checks.dnslookup import DNSLookup
from mta.checks.inbound import check_message, stamp
from tests.dnsserver import TIMEOUT, DNSServer


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer().start()
    server.zone.update({
        "sender.test": {"TXT": ['"v=spf1 ip4:192.0.2.0/24 -all"']},
        "_dmarc.sender.test": {"TXT": ['"v=DMARC1; p=reject"']},
        "forwarder.test": {"TXT": ['"v=spf1 ip4:198.51.100.1 -all"']},
        "slow.test": TIMEOUT,
        "_dmarc.slow.test": TIMEOUT,
    })
    try:
        yield server
    finally:
        server.stop()


def verdict(dns, ip, mailfrom, from_value, dkim=(), helo="client.test"):
    lookup = DNSLookup.configured([dns.address], 1.0)
    return asyncio.run(check_message(lookup, "mail.example.org", ip, helo, mailfrom,
                                     [from_value], dkim, "none"))


def test_direct_mail_passes(dns):
    v = verdict(dns, "192.0.2.9", "bounce@sender.test", "Alice <alice@sender.test>")
    assert v.field == (
        b"Authentication-Results: mail.example.org;\r\n"
        b"\tspf=pass (sender.test: ip4 matched) smtp.mailfrom=bounce@sender.test;\r\n"
        b"\tdkim=none;\r\n"
        b"\tdmarc=pass (p=reject sp=reject) header.from=sender.test;\r\n"
        b"\tarc=none\r\n")


def test_forwarded_mail_fails_spf_but_dkim_gives_dmarc_pass(dns):
    v = verdict(dns, "198.51.100.1", "alice@sender.test", "alice@sender.test",
                [DKIMResult("pass", "sender.test", "sel")])
    assert (v.spf.result, v.dmarc.result) == ("fail", "pass")


def test_spoofed_from_fails_dmarc_and_is_still_only_reported(dns):
    v = verdict(dns, "198.51.100.1", "x@forwarder.test", "alice@sender.test")
    assert (v.spf.result, v.dmarc.result, v.dmarc.policy) == ("pass", "fail", "reject")
    assert b"dmarc=fail (p=reject sp=reject) header.from=sender.test" in v.field


def test_dns_timeouts_are_temperror(dns):
    v = verdict(dns, "192.0.2.9", "a@slow.test", "a@slow.test")
    assert (v.spf.result, v.dmarc.result) == ("temperror", "temperror")


def test_stamp_replaces_a_forged_field(dns):
    v = verdict(dns, "192.0.2.9", "bounce@sender.test", "alice@sender.test")
    header = (b"Authentication-Results: mail.example.org; dmarc=pass header.from=bank.test\r\n"
              b"From: alice@sender.test\r\n")
    out = stamp(header, v.field, "mail.example.org")
    assert out == v.field + b"From: alice@sender.test\r\n"
