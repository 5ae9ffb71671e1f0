"""DKIM and ARC verification of inbound mail against the loopback DNS, and into DMARC."""

from __future__ import annotations

import asyncio

import authres
import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.checks import arcverify, dkimverify
from mta.checks.dkimverify import signature_prefixes
from mta.checks.dnslookup import DNSLookup
from mta.checks.inbound import check_received
from mta.dkim import keys
from mta.dkim.sign import sign
from tests.dnsserver import SERVFAIL, TIMEOUT, DNSServer

MESSAGE = (b"From: Alice <alice@sender.test>\r\n"
           b"To: bob@example.org\r\n"
           b"Subject: hello\r\n"
           b"Date: Wed, 2 Dec 2026 10:00:00 +0000\r\n"
           b"Message-ID: <1@sender.test>\r\n"
           b"\r\n"
           b"Hello Bob\r\n")


@pytest.fixture(scope="module")
def sender_keys(tmp_path_factory):
    return keys.generate(tmp_path_factory.mktemp("keys"), "sender.test", "s1")


@pytest.fixture
def dns(sender_keys):
    server = DNSServer().start()
    server.zone.update({
        "sender.test": {"TXT": ['"v=spf1 ip4:192.0.2.0/24 -all"']},
        "_dmarc.sender.test": {"TXT": ['"v=DMARC1; p=reject"']},
        "lists.test": {"TXT": ['"v=spf1 ip4:198.51.100.7 -all"']},
        "slow.test": TIMEOUT,
    })
    for k in sender_keys:
        server.zone[k.txt_name()] = {
            "TXT": [keys.txt_strings(k.txt_record())]}
    try:
        yield server
    finally:
        server.stop()


def _lookup(dns) -> DNSLookup:
    return DNSLookup.configured([dns.address], 1.0)


def _signed(sender_keys, message=MESSAGE, domain="sender.test", selector="s1") -> bytes:
    ks = [keys.DKIMKey(domain, selector, k.algorithm, k.private)
          for k in sender_keys]
    return sign(message, domain, ks) + message


def results(dns, message):
    return asyncio.run(dkimverify.verify(_lookup(dns), message))


def test_both_signatures_pass_with_their_properties(dns, sender_keys):
    signed = _signed(sender_keys)
    got = results(dns, signed)
    assert [(r.result, r.domain, r.selector, r.algorithm) for r in got] == [
        ("pass", "sender.test", "s1-ed25519", "ed25519-sha256"),
        ("pass", "sender.test", "s1", "rsa-sha256")]
    bvalues = [dkim.util.parse_tag_value(v)[b"b"].decode() for v in
               (signed.split(b"DKIM-Signature:")[1], signed.split(b"DKIM-Signature:")[2])]
    for r, b in zip(got, bvalues, strict=True):
        assert len(r.b) == 8 and "".join(b.split()).startswith(r.b)


def test_a_changed_body_fails(dns, sender_keys):
    got = results(dns, _signed(sender_keys).replace(b"Hello Bob", b"Hello Eve"))
    assert [(r.result, r.reason) for r in got] == [("fail", "body hash did not verify")] * 2


def test_a_changed_signed_field_fails(dns, sender_keys):
    got = results(dns, _signed(sender_keys).replace(b"Subject: hello", b"Subject: pay now"))
    assert [(r.result, r.reason) for r in got] == [("fail", "signature did not verify")] * 2


def test_no_signature_is_none(dns):
    assert results(dns, MESSAGE) == []
    lookup = _lookup(dns)
    v = asyncio.run(check_received(lookup, "mail.example.org", "192.0.2.9", "c.test",
                                   "alice@sender.test", MESSAGE))
    assert b"\tdkim=none;\r\n" in v.field and b"arc=none" in v.field


def test_dns_timeout_is_temperror_and_servfail_too(dns, sender_keys):
    dns.zone["s1._domainkey.sender.test"] = TIMEOUT
    dns.zone["s1-ed25519._domainkey.sender.test"] = SERVFAIL
    got = results(dns, _signed(sender_keys))
    assert [r.result for r in got] == ["temperror", "temperror"]


def test_a_missing_or_broken_key_is_permerror(dns, sender_keys):
    del dns.zone["s1._domainkey.sender.test"]
    dns.zone["s1-ed25519._domainkey.sender.test"] = {"TXT": ['"v=DKIM1; k=ed25519; p=!!"']}
    got = results(dns, _signed(sender_keys))
    assert [r.result for r in got] == ["permerror", "permerror"]
    assert "s1-ed25519._domainkey.sender.test" in got[0].reason


def test_an_unparsable_signature_is_neutral_and_rsa_sha1_permerror(dns, sender_keys):
    broken = b"DKIM-Signature: this is no tag list\r\n" + MESSAGE
    assert [r.result for r in results(dns, broken)] == ["neutral"]
    sha1 = _signed(sender_keys).replace(b"a=rsa-sha256", b"a=rsa-sha1")
    assert [r.result for r in results(dns, sha1)] == ["pass", "permerror"]


def test_a_header_dkimpy_cannot_read_is_neutral_or_none(dns):
    bad = b"DKIM-Signature: v=1; d=sender.test\r\nno colon here\r\n" + MESSAGE
    got = results(dns, bad)
    assert [r.result for r in got] == ["neutral"] and "not verifiable" in got[0].reason
    assert results(dns, b"no colon here\r\n" + MESSAGE) == []
    assert arc_result(dns, b"no colon here\r\n" + MESSAGE).result == "none"
    arc_bad = b"ARC-Seal: i=1; cv=none\r\nno colon here\r\n" + MESSAGE
    assert arc_result(dns, arc_bad).result == "fail"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"DKIM-Signature:", b"ARC-Seal:", b"ARC-Message-Signature:", b""]),
       st.binary(max_size=300))
def test_no_header_makes_the_verifiers_raise(name, junk):
    message = name + junk + b"\r\n" + MESSAGE

    def no_dns(qname, timeout=5):
        return None

    for r in dkimverify.verify_sync(message, no_dns):
        assert r.result in ("fail", "permerror", "neutral")
    assert arcverify.verify_sync(message, no_dns).result in ("none", "fail")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_damaged_signature_is_a_result_never_an_exception(sender_keys, data):
    signed = _signed(sender_keys)
    end = signed.index(b"\r\nDKIM-Signature:")  # within the first (Ed25519) signature
    at = data.draw(st.integers(15, end))
    cut = data.draw(st.integers(0, 40))
    damaged = signed[:at] + data.draw(st.binary(max_size=20)) + signed[at + cut:]
    records = {f"{k.txt_name()}.".encode(): k.txt_record().encode() for k in sender_keys}

    def fetch(qname, timeout=5):
        return records.get(qname)

    got = dkimverify.verify_sync(damaged, fetch)
    assert all(r.result in ("pass", "fail", "permerror", "neutral") for r in got)


def test_signatures_beyond_the_limit_are_not_verified(dns, sender_keys):
    one = _signed(sender_keys)
    ed25519 = b"DKIM-Signature:" + one.split(b"DKIM-Signature:")[1]
    got = results(dns, ed25519 * 30 + one)
    assert len(got) == dkimverify.MAX_SIGNATURES
    assert dns.asked("s1-ed25519._domainkey.sender.test") == 1  # one question per key name


def _both_at(dns, sender_keys, name: str, order: tuple[str, ...]) -> None:
    by = {k.algorithm: keys.txt_strings(k.txt_record()) for k in sender_keys}
    dns.zone[name] = {"TXT": [by[a] for a in order]}


def test_a_key_of_the_other_algorithm_is_permerror_never_an_exception(dns, sender_keys):
    # RFC 6376 6.1.2 step 8: "inappropriate key algorithm". Each signature finds the
    # other algorithm's key at its name.
    _both_at(dns, sender_keys, "s1-ed25519._domainkey.sender.test", ("rsa",))
    _both_at(dns, sender_keys, "s1._domainkey.sender.test", ("ed25519",))
    got = results(dns, _signed(sender_keys))
    assert [(r.algorithm, r.result) for r in got] == [("ed25519-sha256", "permerror"),
                                                       ("rsa-sha256", "permerror")]
    assert "is k=rsa, the signature is a=ed25519-sha256" in got[0].reason
    assert "is k=ed25519, the signature is a=rsa-sha256" in got[1].reason


def test_both_keys_at_one_name_pass_or_permerror(dns, sender_keys):
    # As a domain publishes that puts both keys at one name: we take one record of the
    # set (RFC 6376 3.6.2.2; DNS gives no order), and a signature that meets the other
    # algorithm's key gets permerror, never an exception.
    for name in ("s1-ed25519._domainkey.sender.test", "s1._domainkey.sender.test"):
        _both_at(dns, sender_keys, name, ("rsa", "ed25519"))
    for _ in range(4):
        for r in results(dns, _signed(sender_keys)):
            assert r.result == "pass" or (
                r.result == "permerror" and f"the signature is a={r.algorithm}" in r.reason), r


def test_a_changed_message_with_a_foreign_key_is_still_a_result(dns, sender_keys):
    _both_at(dns, sender_keys, "s1-ed25519._domainkey.sender.test", ("rsa",))
    _both_at(dns, sender_keys, "s1._domainkey.sender.test", ("ed25519",))
    got = results(dns, _signed(sender_keys).replace(b"Subject: hello", b"Subject: pay now"))
    assert [r.result for r in got] == ["permerror", "permerror"]


def test_b_prefixes_grow_until_unique():
    assert signature_prefixes(["abcdefghXY", "abcdefghZZ", "12345678901"]) == [
        "abcdefghX", "abcdefghZ", "12345678"]
    assert signature_prefixes(["same", "same"]) == ["same", "same"]


def test_forwarded_mail_fails_spf_but_dkim_passes_so_dmarc_passes(dns, sender_keys):
    # A list at 198.51.100.7 forwards Alice's signed mail keeping her MAIL FROM.
    signed = _signed(sender_keys)
    v = asyncio.run(check_received(_lookup(dns), "mail.example.org", "198.51.100.7",
                                   "lists.test", "alice@sender.test", signed))
    assert (v.spf.result, v.dmarc.result) == ("fail", "pass")
    assert [r.result for r in v.dkim] == ["pass", "pass"]
    parsed = authres.AuthenticationResultsHeader.parse(v.field.decode().rstrip("\r\n"))
    dkims = [r for r in parsed.results if r.method == "dkim"]
    assert [(r.result, r.header_d, r.header_a) for r in dkims] == [
        ("pass", "sender.test", "ed25519-sha256"), ("pass", "sender.test", "rsa-sha256")]


def test_forwarded_mail_changed_on_the_way_fails_dmarc(dns, sender_keys):
    signed = _signed(sender_keys).replace(b"Hello Bob", b"Hello Bob\r\n-- \r\nthe list")
    v = asyncio.run(check_received(_lookup(dns), "mail.example.org", "198.51.100.7",
                                   "lists.test", "alice@sender.test", signed))
    assert (v.spf.result, v.dmarc.result, v.dmarc.policy) == ("fail", "fail", "reject")
    assert b"dkim=fail (body hash did not verify) header.d=sender.test" in v.field


# -- ARC ------------------------------------------------------------------------------

def _seal(message: bytes, key: keys.DKIMKey, srv_id: bytes, arc: str) -> bytes:
    """What a forwarder that seals does: its A-R, then the ARC set dkimpy makes over it."""
    with_ar = (b"Authentication-Results: " + srv_id + b"; dkim=pass header.d=sender.test; arc="
               + arc.encode() + b"\r\n" + message)
    arc_set = dkim.arc_sign(with_ar, key.selector.encode(), key.domain.encode(),
                            key.dkimpy_private(), srv_id)
    return b"".join(arc_set) + with_ar


@pytest.fixture(scope="module")
def forwarder_key(tmp_path_factory):
    return keys.generate(tmp_path_factory.mktemp("fwd"), "lists.test", "arc", ("rsa",))[0]


def arc_result(dns, message):
    return asyncio.run(arcverify.verify(_lookup(dns), message))


def test_arc_none_pass_and_fail(dns, sender_keys, forwarder_key):
    dns.zone["arc._domainkey.lists.test"] = {"TXT": [keys.txt_strings(
        forwarder_key.txt_record())]}
    assert arc_result(dns, _signed(sender_keys)) == arcverify.ARCResult(
        "none", "Message is not ARC signed")
    sealed = _seal(_signed(sender_keys), forwarder_key, b"lists.test", "none")
    assert arc_result(dns, sealed).result == "pass"
    assert arc_result(dns, sealed.replace(b"Hello Bob", b"Hello Eve")).result == "fail"
    # A second hop (its own authserv-id) that seals what the first sealed: still a pass.
    again = _seal(sealed, forwarder_key, b"hop2.lists.test", "pass")
    assert b"i=2" in again and arc_result(dns, again).result == "pass"
    # A hop that found the chain broken seals cv=fail: the chain ends, fail from there on.
    failed = _seal(sealed, forwarder_key, b"hop2.lists.test", "fail")
    assert b"cv=fail" in failed and arc_result(dns, failed).result == "fail"


def test_arc_with_dns_timeout_is_fail_and_says_why(dns, sender_keys, forwarder_key):
    dns.zone["arc._domainkey.lists.test"] = TIMEOUT
    sealed = _seal(_signed(sender_keys), forwarder_key, b"lists.test", "none")
    got = arc_result(dns, sealed)
    assert got.result == "fail" and "timed out" in got.reason


def test_arc_result_goes_into_the_field(dns, sender_keys, forwarder_key):
    dns.zone["arc._domainkey.lists.test"] = {"TXT": [keys.txt_strings(
        forwarder_key.txt_record())]}
    sealed = _seal(_signed(sender_keys), forwarder_key, b"lists.test", "none")
    v = asyncio.run(check_received(_lookup(dns), "mail.example.org", "198.51.100.7",
                                   "lists.test", "alice@sender.test", sealed))
    assert v.arc == "pass" and v.field.endswith(b"\tarc=pass\r\n")


def test_verification_waits_for_dns_off_the_event_loop(dns, sender_keys):
    dns.zone["s1._domainkey.sender.test"] = TIMEOUT

    async def run():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        got = await dkimverify.verify(_lookup(dns), _signed(sender_keys))
        ticker.cancel()
        return got, ticks

    got, ticks = asyncio.run(run())
    assert [r.result for r in got] == ["pass", "temperror"]
    assert ticks >= 10  # the loop ran on through the 1 s timeout
