"""The record builder (mta/dnsrecords.py): zone-file syntax, TXT quoting and lengths, the
DKIM records against the keys, SRV per configured listener; and dnscheck's comparisons."""

from __future__ import annotations

import dns.rdatatype
import dns.zone

from common import config
from mta import dnscheck, dnsrecords
from mta.dkim import keys

ADDRS = ["192.0.2.25", "2001:db8::25"]


def cfg(tmp_path, **mta) -> config.Config:
    return config.from_dict({"hostname": "mail.example.org", "domains": ["example.org"],
                             "mta": {"dkim_keys": str(tmp_path / "dkim"), **mta}})


def parse(text: str) -> dns.zone.Zone:
    """Every line through dnspython's zone parser: what a DNS server would load."""
    return dns.zone.from_text(text, origin=".", relativize=False, check_origin=False)


def test_zone_lines_parse_and_carry_every_record(tmp_path):
    c = cfg(tmp_path)
    keys.generate(c.mta.dkim_keys, "example.org", "sel1")
    records = dnsrecords.domain_records(c, "example.org", ADDRS)
    text = dnsrecords.zone(c, "example.org", records, ADDRS)
    lines = [x for x in text.splitlines() if x and not x.startswith(";")]
    assert len(lines) == len(records)
    for line in lines:
        name, ttl, cls, rtype, _ = line.split(" ", 4)
        assert name.endswith(".") and ttl == "3600" and cls == "IN"
    z = parse(text)
    txt = {n.to_text(): ["".join(s.decode() for s in r.strings) for r in rs]
           for n, rs in z.iterate_rdatasets(dns.rdatatype.TXT)}
    assert txt["example.org."] == ["v=spf1 mx ~all"]
    assert txt["_dmarc.example.org."][0].startswith("v=DMARC1; p=none")
    assert txt["_mta-sts.example.org."][0].startswith("v=STSv1; id=")
    assert txt["_smtp._tls.example.org."][0].startswith("v=TLSRPTv1; rua=mailto:")
    # One record per name: each algorithm's key at its own selector name.
    for k in keys.load(c.mta.dkim_keys, "example.org", "sel1"):
        name = {"rsa": "sel1", "ed25519": "sel1-ed25519"}[k.algorithm]
        assert txt[f"{name}._domainkey.example.org."] == [k.txt_record()]
    mx = z.find_rdataset("example.org.", "MX")
    assert [r.to_text() for r in mx] == ["10 mail.example.org."]
    assert {r.to_text() for r in z.find_rdataset("mail.example.org.", "A")} == {"192.0.2.25"}
    for label in ("autoconfig", "autodiscover", "mta-sts"):
        (cname,) = z.find_rdataset(f"{label}.example.org.", "CNAME")
        assert cname.to_text() == "mail.example.org."
    assert "25.2.0.192.in-addr.arpa. PTR mail.example.org." in text  # a comment: not ours
    assert "p=quarantine" in text and "version: STSv1" in text


def test_long_txt_is_split_into_strings_of_at_most_255_octets(tmp_path):
    c = cfg(tmp_path)
    keys.generate(c.mta.dkim_keys, "example.org", "big", algorithms=("rsa",))
    (rec,) = [r for r in dnsrecords.domain_records(c, "example.org", [])
              if r.name.startswith("big.")]
    assert len(rec.value) > 255
    (rdata,) = parse(rec.line()).find_rdataset("big._domainkey.example.org.", "TXT")
    assert len(rdata.strings) == 2 and all(len(s) <= 255 for s in rdata.strings)
    assert b"".join(rdata.strings).decode() == rec.value


def test_srv_follow_the_listeners_and_a_switched_off_service_is_not_offered(tmp_path):
    c = config.from_dict({"hostname": "mx.example.org", "domains": ["example.org"],
                          "mta": {"dkim_keys": str(tmp_path), "submission": ["0.0.0.0:2587"]},
                          "pop3": {"pop3": [], "pop3s": []}})
    srv = {r.name: r.value for r in dnsrecords.domain_records(c, "example.org", [])
           if r.rtype == "SRV"}
    assert srv == {"_submissions._tcp.example.org": "0 1 465 mx.example.org.",
                   "_submission._tcp.example.org": "10 1 2587 mx.example.org.",
                   "_imaps._tcp.example.org": "0 1 993 mx.example.org.",
                   "_imap._tcp.example.org": "10 1 143 mx.example.org.",
                   "_pop3s._tcp.example.org": "0 0 0 .", "_pop3._tcp.example.org": "0 0 0 ."}


def test_mta_sts_id_changes_with_the_policy_only(tmp_path):
    a, b = cfg(tmp_path), config.from_dict({"hostname": "other.example.org"})
    ida = dnsrecords.mta_sts_id(dnsrecords.mta_sts_policy(a))
    assert ida == dnsrecords.mta_sts_id(dnsrecords.mta_sts_policy(a))
    assert ida != dnsrecords.mta_sts_id(dnsrecords.mta_sts_policy(b))
    assert ida.isalnum() and len(ida) <= 32  # RFC 8461 3.1


def test_default_selector(tmp_path):
    assert dnsrecords.default_selector(cfg(tmp_path), now=1764633600) == "mp202512"
    assert dnsrecords.default_selector(cfg(tmp_path, dkim_selector="k1")) == "k1"


# -- dnscheck.compare -------------------------------------------------------------------

def verdict(record: dnsrecords.Record, found, more: dict | None = None) -> str:
    answers = {q: [] for q in dnscheck.lookups([record])}
    answers[(record.name, record.rtype)] = found
    answers.update(more or {})
    return dnscheck.compare(record, answers, "mail.example.org", ADDRS).status


SPF = dnsrecords.Record("example.org", "TXT", "v=spf1 mx ~all", lenient_prefix="v=spf1 ")


def test_spf_own_policy_is_accepted_when_it_authorizes_us():
    assert verdict(SPF, ["v=spf1 mx ~all"]) == "ok"
    assert verdict(SPF, ["v=spf1 ip4:192.0.2.25 -all", "google-site-verification=x"]) == (
        "accepted")
    assert verdict(SPF, ["v=spf1 include:_spf.provider.example ~all"]) == "accepted"
    assert verdict(SPF, ["v=spf1 -all"]) == "different"
    assert verdict(SPF, ["v=spf1 -mx ~all"]) == "different"
    assert verdict(SPF, ["v=spf1 mx ~all", "v=spf1 a ~all"]) == "different"  # two: permerror
    assert verdict(SPF, ["something else"]) == "missing"
    assert verdict(SPF, "timed out") == "error"


def test_dkim_compares_the_key_not_the_spelling():
    rec = dnsrecords.Record("s._domainkey.example.org", "TXT", "v=DKIM1; k=ed25519; p=AAAA")
    assert verdict(rec, ["v=DKIM1;k=ed25519;  p=AA AA; t=s"]) == "ok"
    assert verdict(rec, ["v=DKIM1; k=ed25519; p=BBBB"]) == "different"
    assert verdict(rec, []) == "missing"


def test_mx_srv_cname_and_optional_records_do_not_fail():
    mx = dnsrecords.Record("example.org", "MX", "10 mail.example.org.")
    assert verdict(mx, ["20 mail.example.org."]) == "ok"
    assert verdict(mx, ["10 other.example.net."]) == "different"
    srv = dnsrecords.Record("_imaps._tcp.example.org", "SRV", "0 1 993 mail.example.org.",
                            optional=True)
    assert verdict(srv, ["5 0 993 mail.example.org."]) == "ok"
    assert verdict(srv, ["0 1 994 mail.example.org."]) == "different"
    cname = dnsrecords.Record("autoconfig.example.org", "CNAME", "mail.example.org.",
                              optional=True)
    assert verdict(cname, [], {("autoconfig.example.org", "A"): ["192.0.2.25"]}) == "accepted"
    assert verdict(cname, [], {("autoconfig.example.org", "A"): ["198.51.100.1"]}) == (
        "different")
    answers = {q: [] for q in dnscheck.lookups([srv, mx])}
    results = [dnscheck.compare(r, answers, "mail.example.org", ADDRS) for r in (srv, mx)]
    assert [r.fails for r in results] == [False, True]
    assert "expected 10 mail.example.org." in dnscheck.describe(results[1])
