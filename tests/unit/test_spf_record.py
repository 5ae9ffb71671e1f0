"""The SPF record parser and macro expansion: no DNS (RFC 7208 sections 7 and 12)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.checks.spf_macro import Facts, expand, truncate_domain
from mta.checks.spf_record import Macro, SPFSyntaxError, is_spf, parse, parse_macro


def test_terms_qualifiers_and_prefix_lengths():
    r = parse("v=spf1 +a/24//64 -mx:%{d}.x.example/20 ?ip4:192.0.2.0/24 ~ip6:2001:db8::/32 "
              "include:_spf.example.com exists:%{i}.e.example ptr -ALL redirect=%{o} x-y=z ")
    got = [(d.qualifier, d.mechanism, d.cidr4, d.cidr6) for d in r.directives]
    assert got == [("pass", "a", 24, 64), ("fail", "mx", 20, 128), ("neutral", "ip4", 32, 128),
                   ("softfail", "ip6", 32, 128), ("pass", "include", 32, 128),
                   ("pass", "exists", 32, 128), ("pass", "ptr", 32, 128),
                   ("fail", "all", 32, 128)]
    assert r.directives[2].network == ipaddress.ip_network("192.0.2.0/24")
    assert r.directives[1].domain == (Macro("d"), ".x.example")
    assert r.redirect == (Macro("o"),)
    assert r.unknown == ("x-y",)
    assert r.lookups == 6  # a, mx, include, exists, ptr and redirect


@pytest.mark.parametrize("text", [
    "v=spf1 foo", "v=spf1 all:x", "v=spf1 include", "v=spf1 include:",
    "v=spf1 ip4:300.1.1.1", "v=spf1 ip4:192.0.2.0/33", "v=spf1 ip6:2001:db8::/129",
    "v=spf1 ip4:192.0.2.1/024", "v=spf1 a/", "v=spf1 a//", "v=spf1 mx:example.com/x",
    "v=spf1 a:example.c-", "v=spf1 a:example.123", "v=spf1 exists:%{x}.example.com",
    "v=spf1 exists:%{d0}.example.com", "v=spf1 exists:%q.example.com", "v=spf1 a:%{d",
    "v=spf1 redirect=a.example redirect=b.example", "v=spf1 exp=a.example exp=b.example",
    "v=spf1 a:ex\u00e4mple.com", "v=spf1 a:exa\tmple.com", "v=spf1 exists:%{c}.example",
    "spf1 -all", "v=spf2 -all",
])
def test_syntax_errors(text):
    with pytest.raises(SPFSyntaxError):
        parse(text)


def test_what_is_an_spf_record():
    assert is_spf("v=spf1") and is_spf("V=SPF1 -all")
    assert not is_spf("v=spf10 -all") and not is_spf("v=spf1-all") and not is_spf("spf2.0/pra")


def test_unknown_modifiers_may_use_explanation_letters():
    assert parse("v=spf1 -all foo=%{c}%{r}%{t}").unknown == ("foo",)


FACTS = Facts("strong-bad@email.example.com", "email.example.com",
              ipaddress.ip_address("192.0.2.3"), "mx.example.org")


@pytest.mark.parametrize(("macro", "value"), [  # RFC 7208 7.4's examples
    ("%{s}", "strong-bad@email.example.com"), ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"), ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"), ("%{d2}", "example.com"), ("%{d1}", "com"),
    ("%{dr}", "com.example.email"), ("%{d2r}", "example.email"), ("%{l}", "strong-bad"),
    ("%{l-}", "strong.bad"), ("%{lr}", "strong-bad"), ("%{lr-}", "bad.strong"),
    ("%{l1r-}", "strong"), ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{h}.%{p}", "mx.example.org.unknown"), ("a%%b%_c%-d", "a%b c%20d"),
])
def test_rfc_examples(macro, value):
    assert expand(parse_macro(macro, domain_spec=False), FACTS) == value


def test_ipv6_nibbles_and_url_escaping():
    facts = Facts("a b/c@x.example", "x.example", ipaddress.ip_address("2001:db8::cb01"), "h")
    assert expand(parse_macro("%{ir}.%{v}._spf.%{d2}"), facts) == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.x.example")
    assert expand(parse_macro("%{S}.example.com"), facts) == "a%20b%2Fc%40x.example.example.com"


def test_long_digit_transformers():
    assert parse_macro("%{d" + "0" * 4999 + "2}")[0].digits == 2
    assert parse_macro("%{d" + "9" * 5000 + "}")[0].digits == 999
    with pytest.raises(SPFSyntaxError):
        parse_macro("%{d" + "0" * 5000 + "}")


def test_long_names_lose_labels_from_the_left():
    name = ".".join(["a" * 60] * 5) + ".example.com"
    cut = truncate_domain(name)
    assert len(cut) <= 253 and cut.endswith(".example.com") and name.endswith(cut)


# Characters SPF gives a meaning to, often enough for hypothesis to combine them.
SPF_TEXT = st.text(alphabet=st.sampled_from(list("v=spf1 %{}:/.-+~?_,ailmxnpcdeorstu46IR0129"))
                   | st.characters(), max_size=80)


@given(SPF_TEXT)
def test_any_text_parses_or_raises_only_our_error(text):
    for candidate in (text, "v=spf1 " + text):
        try:
            parse(candidate)
        except SPFSyntaxError:
            pass


@given(SPF_TEXT)
def test_any_macro_expands_or_raises_only_our_error(text):
    try:
        spec = parse_macro(text)
    except SPFSyntaxError:
        return
    assert isinstance(expand(spec, FACTS), str)
