"""The Authentication-Results header we write and the ones we remove (RFC 8601).

What we write is read back with `authres` (an independent RFC 8601 parser,
dkimpy's author's), so quoting mistakes show as a different parse.
"""

from __future__ import annotations

import authres
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.checks.authresults import (
    AuthResSyntaxError,
    authserv_id,
    build,
    claiming,
    pvalue,
    remove_claiming,
)
from mta.checks.dmarc import DKIMResult, DMARCResult
from mta.checks.dmarc_record import Policy
from mta.checks.spf import SPFResult

SPF = SPFResult("pass", "example.com", "mailfrom", "alice@example.com", "example.com: ip4 matched")
DMARC = DMARCResult("pass", "example.com", "reject", Policy("reject", "quarantine"), "example.com")


def test_the_whole_field():
    assert build("mail.example.org", SPF, [DKIMResult("pass", "example.com", "sel1")],
                 DMARC, "none") == (
        b"Authentication-Results: mail.example.org;\r\n"
        b"\tspf=pass (example.com: ip4 matched) smtp.mailfrom=alice@example.com;\r\n"
        b"\tdkim=pass header.d=example.com header.s=sel1;\r\n"
        b"\tdmarc=pass (p=reject sp=quarantine) header.from=example.com;\r\n"
        b"\tarc=none\r\n")


def test_no_signature_null_sender_and_no_dmarc_record():
    spf = SPFResult("none", "client.test", "helo", "client.test")
    dmarc = DMARCResult("none", "x.test", reason="no DMARC record")
    assert build("mx.test", spf, [], dmarc) == (
        b"Authentication-Results: mx.test;\r\n\tspf=none smtp.helo=client.test;\r\n"
        b"\tdkim=none;\r\n\tdmarc=none header.from=x.test\r\n")


def test_unregistered_results_are_refused():
    with pytest.raises(ValueError):
        build("mx.test", SPFResult("maybe", "x.test", "mailfrom", "a@x.test"))


def parsed(field: bytes):
    return authres.AuthenticationResultsHeader.parse(field.decode().replace("\r\n", "\n"))


@pytest.mark.parametrize("sender", [
    'a b;dkim=pass@example.com', '"@example.com', "x\\y@example.com", "no-at-sign;x",
    "evil@example.com;\r\n\tdkim=pass", "(a)@example.com", "a.b+c@example.com",
])
def test_hostile_values_stay_one_property(sender):
    reason = 'x) ; dkim=pass (y\\'
    field = build("mail.example.org", SPFResult("fail", "example.com", "mailfrom", sender, reason),
                  [DKIMResult("fail", "example.com", "s")])
    results = parsed(field).results
    assert [(r.method, r.result) for r in results] == [("spf", "fail"), ("dkim", "fail")]
    assert [(p.type, p.name) for p in results[0].properties] == [("smtp", "mailfrom")]
    assert field.count(b"\r\n") == 3  # nothing a sender wrote breaks a line


def test_pvalue_forms():
    assert pvalue("example.com") == "example.com"
    assert pvalue("alice@example.com") == "alice@example.com"
    assert pvalue("a b@example.com") == '"a b"@example.com'
    assert pvalue("x;y") == '"x;y"'
    assert pvalue('q"\\') == '"q\\"\\\\"'


@pytest.mark.parametrize(("value", "found"), [
    ("mail.example.org; spf=pass", "mail.example.org"),
    ("  (comment (nested \\) still)) mail.example.org ; none", "mail.example.org"),
    ('"mail.example.org"; dkim=pass', "mail.example.org"),
    ('"mail\\.example.org" 1; none', "mail.example.org"),
    ("mail.example.org(c);spf=pass", "mail.example.org"),
    ("\r\n\tmail.example.org 1;\r\n\tnone", "mail.example.org"),
    ("mail.example.org", "mail.example.org"),
])
def test_authserv_id(value, found):
    assert authserv_id(value) == found


@pytest.mark.parametrize("value", ["", "  ", "(unterminated mail.example.org", '"open',
                                   "; spf=pass", "mail.example.org=x; spf=pass", "@x"])
def test_authserv_id_errors(value):
    with pytest.raises(AuthResSyntaxError):
        authserv_id(value)


def test_fields_claiming_us():
    fields = [
        ("Received", "from x by mail.example.org"),
        ("Authentication-Results", " Mail.Example.ORG.; spf=pass"),
        ("authentication-results", ' (forged) "mail.example.org"; dmarc=pass'),
        ("Authentication-Results", " mx.google.com; spf=pass"),
        ("Authentication-Results", " mail.example.org.evil.test; spf=pass"),
        ("Authentication-Results", " (broken"),
        ("X-Authentication-Results", " mail.example.org; spf=pass"),
    ]
    assert claiming(fields, "mail.example.org") == [1, 2]


def test_remove_claiming_from_a_header_section():
    raw = (b"Received: from a\r\n\tby b\r\n"
           b"Authentication-Results: mail.example.org;\r\n\tspf=pass smtp.mailfrom=x@y.test\r\n"
           b"Authentication-Results: other.test; spf=fail\r\n"
           b"Subject: hi\r\n")
    assert remove_claiming(raw, "mail.example.org") == (
        b"Received: from a\r\n\tby b\r\nAuthentication-Results: other.test; spf=fail\r\n"
        b"Subject: hi\r\n")


# Characters RFC 8601 gives a meaning to, often enough for hypothesis to combine them.
AR_TEXT = st.text(alphabet=st.sampled_from(list('()"\\; \t\r\n=@.abc1')) | st.characters(),
                  max_size=60)


@given(AR_TEXT)
def test_any_value_gives_an_id_or_our_error(value):
    try:
        found = authserv_id(value)
    except AuthResSyntaxError:
        return
    assert found


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1,
               max_size=40))
def test_any_id_we_write_reads_back(ours):
    field = build(ours, None).decode()
    assert authserv_id(field.partition(":")[2]) == ours


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=40))
def test_any_sender_stays_one_property(sender):
    field = build("mx.test", SPFResult("fail", "x.test", "mailfrom", sender))
    results = parsed(field).results
    assert [(r.method, r.result) for r in results] == [("spf", "fail"), ("dkim", "none")]
