"""The relay's DNS lookups against the tests' DNS server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mta.relay.mx import Target
from mta.relay.resolver import Resolver, Undeliverable
from tests.dnsserver import SERVFAIL, TIMEOUT, DNSServer


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer().start()
    server.zone.update({
        "remote.test": {"MX": ["20 mx2.remote.test.", "10 mx1.remote.test."]},
        "mx1.remote.test": {"A": ["127.0.0.2"], "AAAA": ["::1"]},
        "mx2.remote.test": {"A": ["127.0.0.3", "127.0.0.4"]},
        "implicit.test": {"A": ["127.0.0.5"]},
        "nullmx.test": {"MX": ["0 ."]},
        "noaddr.test": {"MX": ["10 gone.noaddr.test."]},
        "broken.test": {"MX": SERVFAIL},
        "slow.test": TIMEOUT,
        "halfbroken.test": {"MX": ["10 a.halfbroken.test.", "20 b.halfbroken.test."]},
        "a.halfbroken.test": SERVFAIL,
        "b.halfbroken.test": {"A": ["127.0.0.6"]},
        "self.test": {"MX": ["10 mail.example.test.", "20 backup.self.test."]},
        "backup.test": {"MX": ["10 primary.backup.test.", "20 mail.example.test."]},
        "primary.backup.test": {"A": ["127.0.0.7"]},
    })
    try:
        yield server
    finally:
        server.stop()


def hosts(dns: DNSServer, domain: str, timeout: float = 2.0) -> list[Target]:
    resolver = Resolver([dns.address], timeout)
    return asyncio.run(resolver.mail_hosts(domain, ["mail.example.test"]))


def failure(dns: DNSServer, domain: str, timeout: float = 2.0) -> str:
    with pytest.raises(Undeliverable) as info:
        hosts(dns, domain, timeout)
    return info.value.reply


def test_mx_hosts_by_preference_ipv6_then_ipv4(dns):
    found = hosts(dns, "remote.test")
    assert found[:2] == [Target("mx1.remote.test", "::1"), Target("mx1.remote.test", "127.0.0.2")]
    assert {t.address for t in found[2:]} == {"127.0.0.3", "127.0.0.4"}
    assert dns.asked("remote.test", "MX") == 1


def test_no_mx_means_the_domain_itself(dns):
    assert hosts(dns, "implicit.test") == [Target("implicit.test", "127.0.0.5")]


def test_null_mx_is_permanent_without_asking_for_addresses(dns):
    reply = failure(dns, "nullmx.test")
    assert reply.startswith("556 5.1.10")
    assert dns.asked("nullmx.test", "A") == 0


def test_a_domain_that_does_not_exist_is_permanent(dns):
    assert failure(dns, "nowhere.test").startswith("550 5.1.2")


def test_servfail_and_timeout_are_temporary(dns):
    assert failure(dns, "broken.test").startswith("451 4.4.3")
    assert "SERVFAIL" in failure(dns, "broken.test")
    reply = failure(dns, "slow.test", timeout=0.5)
    assert reply.startswith("451 4.4.3") and "timed out" in reply


def test_mx_hosts_without_addresses_are_temporary(dns):
    assert failure(dns, "noaddr.test").startswith("451 4.4.3")


def test_one_broken_mx_host_does_not_stop_the_others(dns):
    assert hosts(dns, "halfbroken.test") == [Target("b.halfbroken.test", "127.0.0.6")]


def test_we_never_deliver_to_ourselves_or_a_less_preferred_host(dns):
    assert failure(dns, "self.test").startswith("554 5.4.6")
    assert hosts(dns, "backup.test") == [Target("primary.backup.test", "127.0.0.7")]


def test_address_literals_need_no_dns(dns):
    assert hosts(dns, "[127.0.0.9]") == [Target("[127.0.0.9]", "127.0.0.9")]
    assert dns.queries == []
