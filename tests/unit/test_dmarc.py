"""DMARC policy discovery and alignment against the tests' DNS server (RFC 7489)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mta.checks.dmarc import DKIMResult, check, from_domain
from mta.checks.dnslookup import DNSLookup
from tests.dnsserver import SERVFAIL, TIMEOUT, DNSServer


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer().start()
    server.zone.update({
        "_dmarc.example.test": {"TXT": ['"v=DMARC1; p=reject; sp=quarantine; adkim=s"',
                                        '"not dmarc"']},
        "_dmarc.strict.test": {"TXT": ['"v=DMARC1; p=quarantine; aspf=s"']},
        "_dmarc.own.strict.test": {"TXT": ['"v=DMARC1; p=none"']},
        "_dmarc.example.co.uk": {"TXT": ['"v=DMARC1; p=reject"']},
        "_dmarc.twice.test": {"TXT": ['"v=DMARC1; p=none"', '"v=DMARC1; p=reject"']},
        "_dmarc.broken.test": {"TXT": ['"v=DMARC1; p=bogus"']},
        "_dmarc.slow.test": TIMEOUT,
        "_dmarc.failing.test": SERVFAIL,
    })
    try:
        yield server
    finally:
        server.stop()


def dmarc(dns: DNSServer, header_from: str | None, spf: str = "none", spf_domain: str = "",
          dkim: tuple[DKIMResult, ...] = (), timeout: float = 2.0):
    lookup = DNSLookup.configured([dns.address], timeout)
    return asyncio.run(check(lookup, header_from, spf, spf_domain, dkim))


def test_spf_aligned_relaxed_passes(dns):
    got = dmarc(dns, "example.test", "pass", "bounce.example.test")
    assert (got.result, got.policy, got.record_domain) == ("pass", "reject", "example.test")


def test_forwarded_spf_fails_but_aligned_dkim_passes(dns):
    got = dmarc(dns, "example.test", "fail", "forwarder.test",
                (DKIMResult("fail", "example.test", "a"), DKIMResult("pass", "example.test", "b")))
    assert got.result == "pass"


def test_nothing_aligned_fails_with_the_policy(dns):
    got = dmarc(dns, "example.test", "pass", "other.test",
                (DKIMResult("pass", "other.test", "s"),))
    assert (got.result, got.policy) == ("fail", "reject")


def test_strict_modes(dns):
    # adkim=s at example.test: a subdomain's signature is not aligned.
    got = dmarc(dns, "example.test", dkim=(DKIMResult("pass", "mail.example.test", "s"),))
    assert got.result == "fail"
    assert dmarc(dns, "strict.test", "pass", "bounce.strict.test").result == "fail"
    assert dmarc(dns, "strict.test", "pass", "Strict.Test").result == "pass"


def test_subdomain_falls_back_to_the_organisational_domain_and_its_sp(dns):
    got = dmarc(dns, "mail.example.test", "pass", "example.test")
    assert (got.result, got.policy, got.record_domain) == ("pass", "quarantine", "example.test")
    assert dns.asked("_dmarc.mail.example.test", "TXT") == 1
    # A subdomain with a record of its own uses that one's p.
    got = dmarc(dns, "own.strict.test", "pass", "own.strict.test")
    assert (got.policy, got.record_domain) == ("none", "own.strict.test")


def test_public_suffix_list_organisational_domain(dns):
    got = dmarc(dns, "mail.example.co.uk", "fail", "x.test")
    assert (got.result, got.policy, got.record_domain) == ("fail", "reject", "example.co.uk")
    assert dns.asked("_dmarc.co.uk", "TXT") == 0


def test_none_temperror_permerror(dns):
    assert dmarc(dns, "nodmarc.test", "pass", "nodmarc.test").result == "none"
    assert dmarc(dns, "twice.test").result == "permerror"
    assert dmarc(dns, "broken.test").result == "permerror"
    assert dmarc(dns, "failing.test").result == "temperror"
    assert dmarc(dns, "slow.test", timeout=1.0).result == "temperror"
    assert dmarc(dns, None).result == "permerror"


def test_an_aligned_temporary_error_is_temperror(dns):
    assert dmarc(dns, "example.test", "temperror", "example.test").result == "temperror"
    got = dmarc(dns, "example.test", dkim=(DKIMResult("temperror", "example.test", "s"),))
    assert got.result == "temperror"


def test_from_domain():
    assert from_domain(["Alice <alice@Example.TEST>"]) == "example.test"
    assert from_domain(["a@x.test, b@x.test"]) == "x.test"
    assert from_domain(["a@x.test, b@y.test"]) is None
    assert from_domain(["a@x.test", "b@y.test"]) is None
    assert from_domain(["undisclosed"]) is None
