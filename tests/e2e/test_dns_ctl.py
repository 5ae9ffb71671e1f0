"""The real `mta-ctl dkim keygen`, `dns records` and `dns check`, the check against the
test suite's loopback DNS server (tests/dnsserver.py) serving what `dns records` printed."""

from __future__ import annotations

import base64
import grp
import json
import os
import stat
import subprocess
import sys

import dns.rdatatype
import dns.zone
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT
from tests.dnsserver import SERVFAIL, DNSServer

DOMAIN = "example.test"
HOST = "mail.example.test"
ADDRESS = "192.0.2.25"


@pytest.fixture
def dnsserver():
    server = DNSServer().start()
    yield server
    server.stop()


@pytest.fixture
def cfgfile(tmp_path, dnsserver):
    path = tmp_path / "mailpair.toml"
    path.write_text(f"""\
hostname = "{HOST}"
domains = ["{DOMAIN}"]
[paths]
spool = "{tmp_path / 'spool'}"
mail = "{tmp_path / 'mail'}"
run = "{tmp_path / 'run'}"
[mta]
dkim_keys = "{tmp_path / 'dkim'}"
public_addresses = ["{ADDRESS}"]
[relay]
nameservers = ["{dnsserver.address}"]
dns_timeout = "2s"
""")
    return path


def ctl(cfgfile, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mta.ctl", "-c", str(cfgfile), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def publish(server: DNSServer, zone_text: str) -> None:
    """Serve every record of the snippet, as the admin would after pasting it in."""
    z = dns.zone.from_text(zone_text, origin=".", relativize=False, check_origin=False)
    for name, rdataset in z.iterate_rdatasets():
        entry = server.zone.setdefault(name.to_text().rstrip(".").lower(), {})
        entry[dns.rdatatype.to_text(rdataset.rdtype)] = [r.to_text() for r in rdataset]
    server.zone["25.2.0.192.in-addr.arpa"] = {"PTR": [f"{HOST}."]}


def lines(out: str) -> dict[tuple[str, str], str]:
    """The check's lines by (type, name) -> status."""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("  ") and len(parts) >= 3:
            i = 2 if parts[1] == "(optional)" else 1
            found[(parts[i], parts[i + 1].rstrip(":;"))] = parts[0]
    return found


def test_keygen_makes_both_keys_refuses_to_overwrite_and_prints_matching_records(cfgfile,
                                                                                  tmp_path):
    r = ctl(cfgfile, "dkim", "keygen", DOMAIN, "--selector", "k1")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "dkim" / DOMAIN
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["k1.ed25519.key", "k1.rsa.key"]
    try:
        relay_gid = grp.getgrnam("mailpair-relay").gr_gid
    except KeyError:
        relay_gid = None
    for name in files:
        st = (folder / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o640
        if os.geteuid() == 0 and relay_gid is not None:
            assert (st.st_uid, st.st_gid) == (0, relay_gid)
    z = dns.zone.from_text(r.stdout, origin=".", relativize=False, check_origin=False)

    def texts(name: str) -> list[str]:
        return [b"".join(t.strings).decode() for t in z.find_rdataset(name, "TXT")]
    ed = serialization.load_pem_private_key((folder / "k1.ed25519.key").read_bytes(), None)
    raw = ed.public_key().public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw)
    # One record per name: each algorithm has its own selector name.
    assert texts(f"k1-ed25519._domainkey.{DOMAIN}.") == [
        f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"]
    rsa = serialization.load_pem_private_key((folder / "k1.rsa.key").read_bytes(), None)
    der = rsa.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert rsa.key_size == 2048
    assert texts(f"k1._domainkey.{DOMAIN}.") == [
        f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"]

    before = {n: (folder / n).read_bytes() for n in files}
    again = ctl(cfgfile, "dkim", "keygen", DOMAIN, "--selector", "k1")
    assert again.returncode == 1 and "--force" in again.stderr
    assert {n: (folder / n).read_bytes() for n in files} == before
    forced = ctl(cfgfile, "dkim", "keygen", DOMAIN, "--selector", "k1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert all((folder / n).read_bytes() != before[n] for n in files)
    assert stat.S_IMODE((folder / "k1.rsa.key").stat().st_mode) == 0o640


def test_check_says_present_missing_and_different_and_exits_accordingly(cfgfile, dnsserver):
    assert ctl(cfgfile, "dkim", "keygen", DOMAIN, "--selector", "k1").returncode == 0
    records = ctl(cfgfile, "dns", "records")
    assert records.returncode == 0, records.stderr
    assert f"k1._domainkey.{DOMAIN}." in records.stdout

    r = ctl(cfgfile, "dns", "check")
    assert r.returncode == 1  # nothing published yet
    got = lines(r.stdout)
    assert got[("MX", DOMAIN)] == "missing"
    assert got[("SRV", f"_imaps._tcp.{DOMAIN}")] == "missing"

    publish(dnsserver, records.stdout)
    r = ctl(cfgfile, "dns", "check", DOMAIN)
    assert r.returncode == 0, r.stdout
    got = lines(r.stdout)
    assert set(got.values()) == {"ok"}, r.stdout
    assert got[("PTR", "25.2.0.192.in-addr.arpa")] == "ok"
    assert got[("TXT", f"k1._domainkey.{DOMAIN}")] == "ok"
    assert got[("TXT", f"k1-ed25519._domainkey.{DOMAIN}")] == "ok"
    assert dnsserver.asked(f"_dmarc.{DOMAIN}", "TXT")

    # An optional record missing is reported, and all is still well.
    del dnsserver.zone[f"_imap._tcp.{DOMAIN}"]
    r = ctl(cfgfile, "dns", "check")
    assert r.returncode == 0 and lines(r.stdout)[("SRV", f"_imap._tcp.{DOMAIN}")] == "missing"

    # An SPF record of the admin's own that lets us send: accepted.
    dnsserver.zone[DOMAIN]["TXT"] = [f'"v=spf1 ip4:{ADDRESS} -all"']
    r = ctl(cfgfile, "dns", "check")
    assert r.returncode == 0 and lines(r.stdout)[("TXT", DOMAIN)] == "accepted"

    # One that does not: different, with what we expect, and a failed check.
    dnsserver.zone[DOMAIN]["TXT"] = ['"v=spf1 -all"']
    r = ctl(cfgfile, "dns", "check")
    assert r.returncode == 1 and lines(r.stdout)[("TXT", DOMAIN)] == "different"
    assert "expected v=spf1 mx ~all" in r.stdout
    dnsserver.zone[DOMAIN]["TXT"] = ['"v=spf1 mx ~all"']

    # A DKIM record of another key, then none at all.
    dkim = f"k1._domainkey.{DOMAIN}"
    dnsserver.zone[dkim]["TXT"] = ['"v=DKIM1; k=ed25519; p=AAAA"']
    r = ctl(cfgfile, "dns", "check")
    assert r.returncode == 1 and lines(r.stdout)[("TXT", dkim)] == "different"
    del dnsserver.zone[dkim]
    r = ctl(cfgfile, "dns", "check")
    assert r.returncode == 1 and lines(r.stdout)[("TXT", dkim)] == "missing"

    # A failing DNS server is neither present nor missing: an error, and a failed check.
    dnsserver.zone[dkim] = SERVFAIL
    r = ctl(cfgfile, "dns", "check")
    assert r.returncode == 1 and lines(r.stdout)[("TXT", dkim)] == "error"


def test_records_without_an_address_name_the_ptr_to_ask_for(cfgfile, tmp_path):
    text = cfgfile.read_text().replace(f'public_addresses = ["{ADDRESS}"]', "")
    cfgfile.write_text(text)
    r = ctl(cfgfile, "dns", "records")
    assert r.returncode == 0, r.stderr
    assert " IN A " not in r.stdout and "--address" in r.stdout
    r = ctl(cfgfile, "dns", "records", DOMAIN, "--address", "2001:db8::25")
    assert f"{HOST}. 3600 IN AAAA 2001:db8::25" in r.stdout
    assert "ip6.arpa. PTR mail.example.test." in r.stdout


def test_several_domains_list_the_host_once(cfgfile):
    cfgfile.write_text(cfgfile.read_text().replace(f'domains = ["{DOMAIN}"]',
                                                   f'domains = ["other.test", "{DOMAIN}"]'))
    r = ctl(cfgfile, "dns", "records")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(f"{HOST}. 3600 IN A {ADDRESS}") == 1
    assert r.stdout.count("in-addr.arpa. PTR") == 1
    assert "other.test. 3600 IN MX 10 mail.example.test." in r.stdout
    assert "_dmarc.other.test." in r.stdout and f"_dmarc.{DOMAIN}." in r.stdout


def test_rotate_walks_publish_seen_switched_and_retired(cfgfile, dnsserver, tmp_path):
    folder = tmp_path / "dkim" / DOMAIN
    assert ctl(cfgfile, "dkim", "keygen", DOMAIN, "--selector", "k1").returncode == 0
    publish(dnsserver, ctl(cfgfile, "dns", "records").stdout)

    r = ctl(cfgfile, "dkim", "rotate", DOMAIN, "--selector", "k2", "--keep-days", "3")
    assert r.returncode == 0, r.stderr
    assert "step 1 of 3" in r.stdout and f"k2._domainkey.{DOMAIN}. 3600 IN TXT" in r.stdout
    assert f"k2-ed25519._domainkey.{DOMAIN}. 3600 IN TXT" in r.stdout
    assert (folder / "k2.rsa.key").exists()
    assert (folder / "active").read_text().strip() == "k1"  # not the unpublished key
    r = ctl(cfgfile, "dkim", "rotate", DOMAIN)
    assert "step 1 of 3" in r.stdout  # nothing in DNS yet: no step forward
    r = ctl(cfgfile, "dkim", "rotate", DOMAIN, "--selector", "k3")
    assert r.returncode == 1 and "under way" in r.stderr
    assert not (folder / "k3.rsa.key").exists()  # one rotation at a time

    publish(dnsserver, ctl(cfgfile, "dns", "records").stdout)  # k1 and k2 now
    r = ctl(cfgfile, "dkim", "rotate", DOMAIN)
    assert "step 2 of 3" in r.stdout and "mta-ctl reload" in r.stdout, r.stdout
    assert (folder / "active").read_text().strip() == "k2"
    r = ctl(cfgfile, "dkim", "rotate", DOMAIN)
    assert "step 2 of 3" in r.stdout and f"k1._domainkey.{DOMAIN} published" in r.stdout
    assert f"keep k1-ed25519._domainkey.{DOMAIN} and" in r.stdout

    state = json.loads((folder / "rotation.json").read_text())
    state["since"] -= 3 * 86400 + 60  # the days to keep the old record are over
    (folder / "rotation.json").write_text(json.dumps(state))
    r = ctl(cfgfile, "dkim", "rotate", DOMAIN)
    assert "step 3 of 3" in r.stdout and f"; remove: k1._domainkey.{DOMAIN}." in r.stdout
    assert f"; remove: k1-ed25519._domainkey.{DOMAIN}." in r.stdout
    assert (folder / "k1.rsa.key").exists()  # until DNS stops serving it
    r = ctl(cfgfile, "dkim", "rotate", DOMAIN)
    assert "step 3 of 3" in r.stdout

    del dnsserver.zone[f"k1._domainkey.{DOMAIN}"]
    r = ctl(cfgfile, "dkim", "rotate", DOMAIN)
    assert "step 3 of 3" in r.stdout  # the Ed25519 record is still served
    del dnsserver.zone[f"k1-ed25519._domainkey.{DOMAIN}"]
    r = ctl(cfgfile, "dkim", "rotate", DOMAIN)
    assert "rotation is done" in r.stdout, r.stdout
    assert sorted(p.name for p in folder.glob("*.key")) == ["k2.ed25519.key", "k2.rsa.key"]
    assert not (folder / "rotation.json").exists()
    records = ctl(cfgfile, "dns", "records").stdout
    assert "k2._domainkey" in records and "k2-ed25519._domainkey" in records
    assert "k1._domainkey" not in records and "k1-ed25519._domainkey" not in records
    assert ctl(cfgfile, "dns", "check").returncode == 0
