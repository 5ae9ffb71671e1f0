"""The DNS records a mailpair domain needs, built from the configuration and the DKIM key dir.

Pure: no DNS and no printing. `records()` gives, per local domain, what the
admin must publish; `zone()` writes them as zone-file lines, `name TTL IN TYPE
value`, names absolute, TXT values as quoted strings of at most 255 octets
(RFC 1035 3.3, the one rule in mta.dkim.keys.txt_strings). mta.dnscheck compares
the same Record objects with what DNS answers, so what is printed is what is checked.

What each record says, and why:
- MX 10 <hostname>; A/AAAA of the hostname for each public address.
- SPF "v=spf1 mx ~all": the MX hosts send our mail; ~all (softfail) rather
  than -all so a forwarder's copy is junked at worst, never refused outright.
- DKIM: every selector with a key in the key dir, Ed25519 and RSA records at
  the same name (RFC 8463 says a signer may publish both).
- DMARC p=none with reports to postmaster: watch first, then tighten.
- MTA-STS (RFC 8461) in mode "testing", with an id that changes whenever the
  policy text does; TLS-RPT (RFC 8460) to postmaster; mta-sts.<domain> must
  serve the policy over HTTPS.
- SRV (RFC 6186, RFC 8314): implicit TLS preferred (priority 0) over
  STARTTLS (10); a service switched off is published as "0 0 0 ." (not offered).
- autoconfig/autodiscover/mta-sts names: CNAME to the hostname.
- PTR: only the address's owner can publish it, so it is a comment.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.reversename

from common.config import Config, parse_listen
from mta.dkim import keys

__all__ = ["MTA_STS_MAX_AGE", "Record", "default_selector", "domain_records", "host_domain",
           "mta_sts_id", "mta_sts_policy", "ptr_name", "ptr_records", "zone"]

TTL = 3600
MTA_STS_MAX_AGE = 604800  # one week, RFC 8461 3.2's example; short while in "testing"


@dataclass(frozen=True)
class Record:
    name: str  # without the root dot
    rtype: str
    value: str  # TXT: the unquoted text; others: presentation format
    # Mail works without it (SRV, autoconfig, MTA-STS, TLS-RPT): a check reports it, not fails.
    optional: bool = False
    # How dnscheck compares: "exact", or a prefix any published value must start with to count
    # as ours ("v=spf1", "v=DMARC1"): another valid policy is reported, not failed.
    lenient_prefix: str = ""
    notes: list[str] = field(default_factory=list, compare=False)

    def line(self, ttl: int = TTL) -> str:
        value = keys.txt_strings(self.value) if self.rtype == "TXT" else self.value
        return f"{self.name}. {ttl} IN {self.rtype} {value}"


def default_selector(cfg: Config, now: float | None = None) -> str:
    if cfg.mta.dkim_selector:
        return cfg.mta.dkim_selector
    return time.strftime("mp%Y%m", time.gmtime(now))


def mta_sts_policy(cfg: Config) -> str:
    """The text to serve at https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 3.2)."""
    return (f"version: STSv1\r\nmode: testing\r\nmx: {cfg.hostname}\r\n"
            f"max_age: {MTA_STS_MAX_AGE}\r\n")


def mta_sts_id(policy: str) -> str:
    # RFC 8461 3.1: 1 to 32 alphanumerics, changed whenever the policy is; a hash of the
    # policy changes exactly then and is the same on every run.
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


def ptr_name(address: str) -> str:
    return dns.reversename.from_address(address).to_text().rstrip(".")


def _port(listeners: list[str]) -> int | None:
    return parse_listen(listeners[0])[1] if listeners else None


def _srv(cfg: Config, domain: str) -> list[Record]:
    services = [("_submissions._tcp", 0, cfg.mta.submissions),
                ("_submission._tcp", 10, cfg.mta.submission),
                ("_imaps._tcp", 0, cfg.imap.imaps), ("_imap._tcp", 10, cfg.imap.imap),
                ("_pop3s._tcp", 0, cfg.pop3.pop3s), ("_pop3._tcp", 10, cfg.pop3.pop3)]
    out = []
    for label, priority, listeners in services:
        port = _port(listeners)
        value = f"{priority} 1 {port} {cfg.hostname}." if port else "0 0 0 ."
        out.append(Record(f"{label}.{domain}", "SRV", value, optional=True))
    return out


def _dkim(keydir: Path, domain: str) -> list[Record]:
    """Each key's record of every selector, at its algorithm's name (keys.txt_name);
    keys.DKIMKeyError for an unsafe key."""
    return [Record(key.txt_name(), "TXT", key.txt_record())
            for selector in keys.selectors(keydir, domain)
            for key in keys.load(keydir, domain, selector)]


def host_domain(cfg: Config, domains: list[str]) -> str:
    """The domain whose listing carries the host's own A/AAAA records (and whose check
    looks up the PTR): the one the host name is in, else the first."""
    host = cfg.hostname.lower()
    for d in domains:
        if host == d or host.endswith("." + d):
            return d
    return domains[0]


def domain_records(cfg: Config, domain: str, addresses: list[str],
                   with_host: bool = True) -> list[Record]:
    """Everything to publish for one domain, in the order a zone file lists it;
    with_host: the host name's addresses too (once, when several domains are listed)."""
    domain = domain.lower()
    host = cfg.hostname.lower()
    out = [Record(domain, "MX", f"10 {host}.")]
    for a in addresses if with_host else []:
        rtype = "AAAA" if ipaddress.ip_address(a).version == 6 else "A"
        out.append(Record(host, rtype, a))
    out.append(Record(domain, "TXT", "v=spf1 mx ~all", lenient_prefix="v=spf1 "))
    out += _dkim(cfg.mta.dkim_keys, domain)
    out.append(Record(
        f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}",
        lenient_prefix="v=DMARC1",
        notes=["p=none only asks for reports: once they show all your mail passes, "
               "move to p=quarantine, then p=reject"]))
    policy = mta_sts_policy(cfg)
    out.append(Record(f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={mta_sts_id(policy)}",
                      optional=True, lenient_prefix="v=STSv1"))
    out.append(Record(f"_smtp._tls.{domain}", "TXT",
                      f"v=TLSRPTv1; rua=mailto:postmaster@{domain}",
                      optional=True, lenient_prefix="v=TLSRPTv1"))
    out += _srv(cfg, domain)
    for label in ("mta-sts", "autoconfig", "autodiscover"):
        name = f"{label}.{domain}"
        if name != host:
            out.append(Record(name, "CNAME", f"{host}.", optional=True))
    return out


def ptr_records(cfg: Config, addresses: list[str]) -> list[Record]:
    """What the addresses' owners must publish: checked, printed only as comments."""
    return [Record(ptr_name(a), "PTR", f"{cfg.hostname.lower()}.") for a in addresses]


def zone(cfg: Config, domain: str, records: list[Record], addresses: list[str],
         with_host: bool = True) -> str:
    """The zone-file snippet for one domain, with the comments an admin needs."""
    lines = [f"; mailpair: DNS records for {domain} (mail host {cfg.hostname})"]
    for r in records:
        lines += [f"; {n}" for n in r.notes]
        lines.append(r.line())
    for a in addresses if with_host else []:
        lines.append(f"; PTR: ask the owner of {a} (your provider) for "
                     f"{ptr_name(a)}. PTR {cfg.hostname}.")
    if with_host and not addresses:
        lines.append(f"; A/AAAA and PTR of {cfg.hostname}: give the public addresses with "
                     f"--address or mta.public_addresses; ask your provider for the PTR")
    lines.append(f"; MTA-STS: serve this at https://mta-sts.{domain}/.well-known/mta-sts.txt")
    lines += [f";   {x}" for x in mta_sts_policy(cfg).splitlines()]
    return "\n".join(lines) + "\n"
