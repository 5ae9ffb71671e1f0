"""SPF check_host() against the tests' DNS server on loopback (RFC 7208)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mta.checks.dnslookup import DNSLookup
from mta.checks.spf import check_host, check_sender
from tests.dnsserver import SERVFAIL, TIMEOUT, DNSServer


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer().start()
    server.zone.update({
        "pass.test": {"TXT": ['"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"']},
        "fail.test": {"TXT": ['"v=spf1 -all"']},
        "soft.test": {"TXT": ['"v=spf1 ~all"']},
        "neutral.test": {"TXT": ['"v=spf1 ip4:10.0.0.1"']},
        "other.test": {"TXT": ['"some-site-verification=abc"']},
        "a.test": {"TXT": ['"v=spf1 a/24 -all"'], "A": ["198.51.100.7"]},
        "mx.test": {"TXT": ['"v=spf1 mx -all"'], "MX": ["10 mx1.mx.test.", "0 ."]},
        "mx1.mx.test": {"A": ["203.0.113.9"], "AAAA": ["2001:db8:1::9"]},
        "inc.test": {"TXT": ['"v=spf1 include:pass.test ?all"']},
        "incnone.test": {"TXT": ['"v=spf1 include:nothing.test -all"']},
        "redir.test": {"TXT": ['"v=spf1 redirect=pass.test"']},
        "exists.test": {"TXT": ['"v=spf1 exists:%{ir}.%{l}._spf.%{d} -all"']},
        "9.113.0.203.alice._spf.exists.test": {"A": ["127.0.0.2"]},
        "split.test": {"TXT": ['"v=spf1 ip4:192.0.2.1" " -all"']},
        "twice.test": {"TXT": ['"v=spf1 -all"', '"v=spf1 +all"']},
        "syntax.test": {"TXT": ['"v=spf1 ip4:300.1.1.1 -all"']},
        "unknownmech.test": {"TXT": ['"v=spf1 foo:bar -all"']},
        "broken.test": {"TXT": SERVFAIL},
        "slow.test": TIMEOUT,
        "slowinc.test": {"TXT": ['"v=spf1 include:slow.test -all"']},
        "ptr.test": {"TXT": ['"v=spf1 ptr -all"']},
        "9.113.0.203.in-addr.arpa": {"PTR": ["host.ptr.test."]},
        "host.ptr.test": {"A": ["203.0.113.9"]},
        "pmacro.test": {"TXT": ['"v=spf1 exists:%{p}.allow.pmacro.test -all"']},
        "host.ptr.test.allow.pmacro.test": {"A": ["127.0.0.2"]},
        # Eleven includes, each one lookup: the eleventh passes the limit.
        "many.test": {"TXT": ['"v=spf1 ' + " ".join(f"include:n{i}.test" for i in range(11))
                              + ' -all"']},
        **{f"n{i}.test": {"TXT": ['"v=spf1 ?all"']} for i in range(11)},
        "ten.test": {"TXT": ['"v=spf1 ' + " ".join(f"include:n{i}.test" for i in range(9))
                             + ' a:pass.test -all"']},
        # Three a: mechanisms on names that do not exist: the third void passes the limit.
        "voids.test": {"TXT": ['"v=spf1 a:v1.test a:v2.test a:v3.test ip4:203.0.113.9 -all"']},
        "twovoids.test": {"TXT": ['"v=spf1 a:v1.test a:v2.test ip4:203.0.113.9 -all"']},
        "loop.test": {"TXT": ['"v=spf1 include:loop.test -all"']},
        "helo.test": {"TXT": ['"v=spf1 ip4:203.0.113.9 -all"']},
    })
    try:
        yield server
    finally:
        server.stop()


def spf(dns: DNSServer, ip: str, domain: str, sender: str = "", timeout: float = 2.0) -> str:
    lookup = DNSLookup.configured([dns.address], timeout)
    result, _ = asyncio.run(check_host(lookup, ip, domain, sender or f"alice@{domain}",
                                       "mail.client.test"))
    return result


@pytest.mark.parametrize(("ip", "domain", "expected"), [
    ("192.0.2.5", "pass.test", "pass"),
    ("2001:db8::25", "pass.test", "pass"),
    ("::ffff:192.0.2.5", "pass.test", "pass"),  # IPv4-mapped: the IPv4 client
    ("203.0.113.9", "pass.test", "fail"),
    ("203.0.113.9", "fail.test", "fail"),
    ("203.0.113.9", "soft.test", "softfail"),
    ("203.0.113.9", "neutral.test", "neutral"),
    ("203.0.113.9", "nothing.test", "none"),  # NXDOMAIN
    ("203.0.113.9", "other.test", "none"),  # TXT, but no SPF record
    ("203.0.113.9", "single", "none"),  # not a multi-label domain
    ("203.0.113.9", "[203.0.113.9]", "none"),  # an address literal
    ("203.0.113.9", "1.2.3", "none"),  # numeric top label
    ("198.51.100.200", "a.test", "pass"),
    ("198.51.101.1", "a.test", "fail"),
    ("203.0.113.9", "mx.test", "pass"),
    ("2001:db8:1::9", "mx.test", "pass"),
    ("203.0.113.10", "mx.test", "fail"),
    ("192.0.2.5", "inc.test", "pass"),
    ("203.0.113.9", "inc.test", "neutral"),  # include's fail is no match, then ?all
    ("192.0.2.5", "redir.test", "pass"),
    ("203.0.113.9", "redir.test", "fail"),
    ("203.0.113.9", "exists.test", "pass"),
    ("203.0.113.8", "exists.test", "fail"),
    ("203.0.113.9", "ptr.test", "pass"),
    ("203.0.113.8", "ptr.test", "fail"),
    ("203.0.113.9", "pmacro.test", "pass"),
    ("203.0.113.9", "twovoids.test", "pass"),
    ("203.0.113.9", "ten.test", "fail"),  # ten lookups are allowed
])
def test_results(dns, ip, domain, expected):
    assert spf(dns, ip, domain) == expected


def test_strings_of_one_record_are_joined_without_a_space(dns):
    # "ip4:192.0.2.1" " -all" is "ip4:192.0.2.1 -all": the space is the publisher's.
    assert spf(dns, "192.0.2.1", "split.test") == "pass"


@pytest.mark.parametrize("domain", ["twice.test", "syntax.test", "unknownmech.test",
                                    "incnone.test", "many.test", "voids.test", "loop.test"])
def test_permerror(dns, domain):
    assert spf(dns, "203.0.113.9", domain) == "permerror"


def test_more_than_ten_lookups_stops_at_the_eleventh(dns):
    assert spf(dns, "203.0.113.9", "many.test") == "permerror"
    assert dns.asked("n10.test", "TXT") == 0  # never asked: the limit came first


def test_servfail_is_temperror(dns):
    assert spf(dns, "203.0.113.9", "broken.test") == "temperror"


def test_timeout_is_temperror(dns):
    assert spf(dns, "203.0.113.9", "slow.test", timeout=1.0) == "temperror"
    assert spf(dns, "203.0.113.9", "slowinc.test", timeout=1.0) == "temperror"


def test_overall_time_limit_is_temperror(dns):
    # The resolver would wait 5 s for slow.test; the whole check gives up first.
    dns.zone["chain.test"] = {"TXT": ['"v=spf1 include:slow.test -all"']}
    lookup = DNSLookup.configured([dns.address], 5.0)
    result, reason = asyncio.run(check_host(lookup, "203.0.113.9", "chain.test", "a@chain.test",
                                            "h.test", time_limit=0.5))
    assert result == "temperror" and "0.5 s" in reason


def test_sender_identity_and_null_sender_uses_helo(dns):
    lookup = DNSLookup.configured([dns.address], 2.0)
    got = asyncio.run(check_sender(lookup, "192.0.2.5", "bob@Pass.Test", "mx.client.test"))
    assert (got.result, got.domain, got.identity, got.sender) == (
        "pass", "pass.test", "mailfrom", "bob@Pass.Test")
    got = asyncio.run(check_sender(lookup, "203.0.113.9", "", "helo.test"))
    assert (got.result, got.domain, got.identity, got.sender) == (
        "pass", "helo.test", "helo", "helo.test")
