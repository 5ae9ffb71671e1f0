"""DMARC records and the organisational domain: no DNS (RFC 7489 3.1, 3.2, 6.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.checks.dmarc_record import DMARCSyntaxError, Policy, is_dmarc, parse
from mta.checks.orgdomain import aligned, organisational_domain


def test_tags():
    assert parse("v=DMARC1; p=reject; sp=quarantine; adkim=s; pct=50; rua=mailto:d@x.test;") \
        == Policy("reject", "quarantine", "s", "r", 50)
    assert parse("v = DMARC1 ;P=None; foo=bar") == Policy("none")


@pytest.mark.parametrize("text", [
    "v=DMARC1", "v=DMARC1; p=bogus", "v=DMARC1; p=none; sp=x", "v=DMARC1; p=none; adkim=x",
    "v=DMARC1; p=none; pct=101", "v=DMARC1; p=none; garbage", "p=none; v=DMARC1",
    "v=dmarc1; p=none", "v=DMARC1; p=none; pct=\u00b2", "v=DMARC1; p=none; pct=" + "1" * 5000,
])
def test_broken_records(text):
    with pytest.raises(DMARCSyntaxError):
        parse(text)


def test_a_bad_policy_with_a_valid_rua_is_none():
    assert parse("v=DMARC1; p=bogus; rua=mailto:reports@example.test").p == "none"


def test_what_is_a_dmarc_record():
    assert is_dmarc("v=DMARC1; p=none") and is_dmarc("v=DMARC1")
    assert not is_dmarc("v=spf1 -all") and not is_dmarc("p=none; v=DMARC1")


@pytest.mark.parametrize(("name", "org"), [
    ("mail.example.co.uk", "example.co.uk"), ("example.co.uk", "example.co.uk"),
    ("a.b.example.com", "example.com"), ("x.y.example.test", "example.test"),
    ("co.uk", "co.uk"), ("Mail.Example.COM.", "example.com"),
    ("foo.github.io", "foo.github.io"),  # the list's private section counts too
])
def test_organisational_domain(name, org):
    assert organisational_domain(name) == org


def test_alignment():
    assert aligned("bounce.example.com", "example.com", strict=False)
    assert not aligned("bounce.example.com", "example.com", strict=True)
    assert aligned("Example.COM", "example.com", strict=True)
    assert not aligned("example.co.uk", "other.co.uk", strict=False)
    assert not aligned("a.github.io", "b.github.io", strict=False)


@given(st.text(alphabet=st.sampled_from(list("v=DMARC1; p=nonerjctquaspfdkim,:@!0123")) |
               st.characters(), max_size=80))
def test_any_text_parses_or_raises_only_our_error(text):
    for candidate in (text, "v=DMARC1; " + text):
        try:
            parse(candidate)
        except DMARCSyntaxError:
            pass
