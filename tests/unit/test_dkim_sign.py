"""Our DKIM signatures verify with dkimpy and with two independent verifiers from Debian.

OpenDKIM's opendkim-testmsg (opendkim-tools, run by tests/opendkim.py)
verifies both algorithms. Mail::DKIM (libmail-dkim-perl) takes a resolver object, pointed at the
test DNS server; Debian 12's version knows rsa-sha256 only and calls the
Ed25519 signature "unsupported", which a receiver without RFC 8463 should.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import dkim
import pytest

from mta.dkim import keys
from mta.dkim.sign import sign
from tests.dnsserver import DNSServer
from tests.opendkim import missing as _missing
from tests.opendkim import opendkim_testmsg

MESSAGE = (b"Received: from client.test by mail.example.org; Wed, 2 Dec 2026 10:00:00 +0000\r\n"
           b"From: Alice <alice@example.org>\r\n"
           b"To: bob@remote.test\r\n"
           b"Cc: carol@remote.test\r\n"
           b"Subject: a long subject line that a relay may well fold\r\n"
           b"Date: Wed, 2 Dec 2026 10:00:00 +0000\r\n"
           b"Message-ID: <1@example.org>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"\r\n"
           b"Hello Bob,  \r\n"
           b"\r\n"
           b"a line with trailing blanks\t \r\n"
           b"\r\n\r\n")

# Mail::DKIM, pointed at the test DNS server; one line per signature: algorithm result detail.
PERL = r"""
use strict; use Mail::DKIM::Verifier; use Net::DNS;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $ARGV[0], recurse => 0, udp_timeout => 10));
my $v = Mail::DKIM::Verifier->new();
binmode STDIN; local $/; my $m = <STDIN>; $v->PRINT($m); $v->CLOSE;
print join(" ", $_->algorithm, $_->result, $_->result_detail // ""), "\n" for $v->signatures;
"""


def _opendkim(message: bytes, tmp_path, signing_keys):
    return opendkim_testmsg(message, tmp_path, _zone(signing_keys))


def _have_mail_dkim() -> bool:
    if shutil.which("perl") is None:
        return False
    probe = subprocess.run(["perl", "-MMail::DKIM::Verifier", "-MCrypt::PK::Ed25519",
                            "-MNet::DNS", "-e", "1"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def signing_keys(tmp_path_factory):
    return keys.generate(tmp_path_factory.mktemp("keys"), "example.org", "s1")


def _zone(signing_keys) -> dict:
    """Each key at the name of its algorithm (keys.txt_name), as `mta-ctl dns records` says."""
    return {k.txt_name(): {"TXT": [keys.txt_strings(k.txt_record())]} for k in signing_keys}


@pytest.fixture
def dns(signing_keys):
    server = DNSServer().start()
    server.zone.update(_zone(signing_keys))
    try:
        yield server
    finally:
        server.stop()


def _keys(signing_keys):
    return list(signing_keys)


def _txt(signing_keys):
    records = {f"{k.txt_name()}.".encode(): k.txt_record().encode() for k in signing_keys}
    return lambda name, timeout=5: records.get(name)


def test_both_signatures_verify_with_dkimpy(signing_keys):
    fields = sign(MESSAGE, "example.org", _keys(signing_keys))
    signed = fields + MESSAGE
    d = dkim.DKIM(signed)
    assert [d.verify(idx=i, dnsfunc=_txt(signing_keys)) for i in range(2)] == [True, True]
    sigs = re.findall(rb"a=([a-z0-9-]+);", fields)
    assert sigs == [b"ed25519-sha256", b"rsa-sha256"]
    assert fields.count(b"c=relaxed/relaxed") == 2


def test_the_signed_fields_are_the_recommended_ones_with_oversigning(signing_keys):
    fields = sign(MESSAGE, "example.org", _keys(signing_keys)[:1])
    h = re.search(rb"h=([^;]+);", fields).group(1)
    names = [n.strip() for n in re.sub(rb"\s+", b"", h).split(b":")]
    assert sorted(names) == sorted([b"from", b"from", b"subject", b"subject", b"date", b"date",
                                    b"to", b"to", b"cc", b"message-id", b"mime-version",
                                    b"content-type"])
    assert b"received" not in names
    # Oversigned: a second From (or a new Subject) added on the way breaks the signature.
    forged = fields + b"From: mallory@evil.test\r\n" + MESSAGE
    assert not dkim.DKIM(forged).verify(dnsfunc=_txt(signing_keys))


def test_relaxed_signatures_survive_refolding_and_trailing_blanks(signing_keys):
    signed = sign(MESSAGE, "example.org", _keys(signing_keys)) + MESSAGE
    moved = signed.replace(b"Subject: a long subject line that a relay",
                           b"Subject: a long subject line\r\n  that a relay")
    moved = moved.replace(b"Hello Bob,  \r\n", b"Hello Bob,\r\n")
    d = dkim.DKIM(moved)
    assert [d.verify(idx=i, dnsfunc=_txt(signing_keys)) for i in range(2)] == [True, True]


def test_a_changed_body_fails_with_dkimpy(signing_keys):
    signed = sign(MESSAGE, "example.org", _keys(signing_keys)) + MESSAGE
    changed = signed.replace(b"Hello Bob", b"Hello Eve")
    with pytest.raises(dkim.ValidationError, match="body hash mismatch"):
        dkim.DKIM(changed).verify(dnsfunc=_txt(signing_keys))


def test_sign_needs_a_key_of_the_domain(signing_keys):
    with pytest.raises(ValueError, match="no DKIM key for other.test"):
        sign(MESSAGE, "other.test", _keys(signing_keys))


def _mail_dkim(dns, message: bytes) -> list[str]:
    if not _have_mail_dkim():
        _missing("Mail::DKIM", "libmail-dkim-perl libcryptx-perl")
    out = subprocess.run(["perl", "-e", PERL, str(dns.port)], input=message,
                         capture_output=True, timeout=60, check=True)
    return out.stdout.decode().splitlines()


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_each_signature_verifies_with_opendkim(signing_keys, tmp_path, algorithm):
    key = [k for k in _keys(signing_keys) if k.algorithm == algorithm]
    signed = sign(MESSAGE, "example.org", key) + MESSAGE
    ok = _opendkim(signed, tmp_path, signing_keys)
    assert (ok.returncode, ok.stderr) == (0, b"")
    for changed in (signed.replace(b"Hello Bob", b"Hello Eve"),
                    signed.replace(b"To: bob@", b"To: eve@")):
        bad = _opendkim(changed, tmp_path, signing_keys)
        assert bad.returncode != 0 and b"Bad signature" in bad.stderr


def test_the_rsa_signature_verifies_with_mail_dkim(dns, signing_keys):
    signed = sign(MESSAGE, "example.org", _keys(signing_keys)) + MESSAGE
    lines = [line.split(None, 2) for line in _mail_dkim(dns, signed)]
    assert [a for a, *_ in lines] == ["ed25519-sha256", "rsa-sha256"]
    assert lines[1][1] == "pass"
    # Mail::DKIM with RFC 8463 must pass it; an older one reports it unsupported.
    assert lines[0][1] == "pass" or "unsupported algorithm" in lines[0][2]


def test_a_changed_body_fails_with_mail_dkim(dns, signing_keys):
    signed = sign(MESSAGE, "example.org", _keys(signing_keys)[1:]) + MESSAGE
    lines = _mail_dkim(dns, signed.replace(b"Hello Bob", b"Hello Eve"))
    assert [line.split()[1] for line in lines] == ["fail"]
