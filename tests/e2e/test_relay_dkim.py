"""DKIM signing by the running mtad: what leaves for another domain, verified with dkimpy
and with opendkim-testmsg against the records `mta-ctl dkim keygen` prints, served by the
test DNS server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import dkim
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.zone

from mta.dkim import keys
from tests.conftest import ROOT, wait_for
from tests.opendkim import opendkim_testmsg

ALICE = "alice@example.test"
ROB, ANN, NOBODY = "rob@remote.test", "ann@remote.test", "nobody@remote.test"
DOMAIN, SELECTOR = "example.test", "k1"


def keydir(net):
    return net.sender.root / "etc" / "dkim"


def prepare_keydir(net) -> None:
    """The key dir as deploy/install.sh makes it: root:<relay group> 0750."""
    d = keydir(net)
    d.mkdir(mode=0o750, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(d, "root", "mailpair-relay")


def ctl(net, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "mta.ctl", "-c", str(net.sender.config), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def keygen(net, selector: str = SELECTOR) -> None:
    """`mta-ctl dkim keygen`, and the TXT records it prints published in the test DNS."""
    printed = ctl(net, "dkim", "keygen", DOMAIN, "--selector", selector).stdout
    zone = dns.zone.from_text(printed, origin=".", relativize=False, check_origin=False)
    for name, node in zone.nodes.items():
        for rdata in node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT) or []:
            net.dns.zone.setdefault(name.to_text().rstrip("."), {"TXT": []})["TXT"].append(
                keys.txt_strings(b"".join(rdata.strings).decode()))


def start(net):
    prepare_keydir(net)
    return net.start_sender(mta_dkim_keys=str(keydir(net)))


def send(stack, rcpts: list[str], subject: str) -> None:
    msg = (f"From: Alice <{ALICE}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
           f"\r\nhello  there \r\n")
    with stack.submission() as s:
        assert s.sendmail(ALICE, rcpts, msg.encode()) == {}


def header(raw: bytes) -> bytes:
    return raw.split(b"\n\n", 1)[0]


def signatures(raw: bytes) -> list[dict[str, str]]:
    """The DKIM-Signature fields' tags, top first."""
    found = []
    for m in re.finditer(rb"^DKIM-Signature:(.*(?:\r?\n[ \t].*)*)", header(raw), re.M | re.I):
        text = re.sub(r"\s+", "", m.group(1).decode())
        found.append(dict(t.split("=", 1) for t in text.split(";") if "=" in t))
    return found


def verify_each(net, raw: bytes) -> list[bool]:
    """Each signature checked by a plain dkimpy, its key asked of the test DNS server:
    the first TXT record of the name, as dkimpy takes it."""

    def dnsfunc(name, timeout=5):
        q = dns.message.make_query(name.decode().rstrip("."), dns.rdatatype.TXT)
        host, port = net.dns.address.split(":")
        answer = dns.query.udp(q, host, port=int(port), timeout=timeout)
        for rrset in answer.answer:
            for r in rrset:
                return b"".join(r.strings)
        return None
    return [dkim.DKIM(raw).verify(idx=i, dnsfunc=dnsfunc) for i in range(len(signatures(raw)))]


def only_signature(raw: bytes, keep: int) -> bytes:
    """The message with its signature number `keep` and no other DKIM-Signature field."""
    fields = list(re.finditer(rb"^DKIM-Signature:.*\n(?:[ \t].*\n)*", raw, re.M | re.I))
    for i, m in reversed(list(enumerate(fields))):
        if i != keep:
            raw = raw[:m.start()] + raw[m.end():]
    return raw


def verify_opendkim(net, raw: bytes, tmp_path) -> None:
    """The relay's real output verified by OpenDKIM too, one signature at a time:
    opendkim-testmsg succeeds when one of several signatures verifies."""
    raw = raw.replace(b"\r\n", b"\n")
    for i in range(len(signatures(raw))):
        one = only_signature(raw, i)
        assert len(signatures(one)) == 1
        r = opendkim_testmsg(one.replace(b"\n", b"\r\n"), tmp_path, dict(net.dns.zone))
        assert (r.returncode, r.stderr) == (0, b""), (i, r)


def queue_empty(stack) -> None:
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")


def test_authenticated_mail_to_another_domain_is_signed_with_both_keys(net, tmp_path):
    sender = start(net)
    keygen(net)
    remote = net.start_remote()
    send(sender, [ROB, ALICE], "signed")
    (rob,) = remote.wait_messages(ROB, 1, timeout=60)
    (own,) = sender.wait_messages(ALICE, 1, timeout=60)
    queue_empty(sender)
    sigs = signatures(rob)
    assert [s["a"] for s in sigs] == ["ed25519-sha256", "rsa-sha256"], header(rob)
    # One name per algorithm: a verifier takes one TXT record of a name.
    assert [s["s"] for s in sigs] == [f"{SELECTOR}-ed25519", SELECTOR]
    for s in sigs:
        assert (s["d"], s["c"]) == (DOMAIN, "relaxed/relaxed")
        signed = s["h"].lower().split(":")
        for name in ("from", "subject", "to", "date"):  # present once, signed twice
            assert signed.count(name) == 2, s["h"]
    assert verify_each(net, rob) == [True, True]
    for name in keys.txt_names(DOMAIN, SELECTOR):
        assert net.dns.asked(name, "TXT") >= 1, name
    verify_opendkim(net, rob, tmp_path)
    # The copy for our own user went over LMTP: not signed.
    assert b"DKIM-Signature" not in header(own)
    assert re.search(r"DKIM-signed .*queue_id=", sender.log("mtad")) or \
        re.search(r"queue_id=.*DKIM-signed", sender.log("mtad"))


def test_a_bounce_to_a_remote_sender_is_signed_and_forwarded_mail_is_not(net):
    sender = start(net)
    keygen(net)
    sender.add_alias(f"fwd@{DOMAIN}: {ANN}, {NOBODY}")
    remote = net.start_remote()
    # From another domain on port 25, forwarded by the alias: not ours to vouch for.
    msg = (f"From: {ROB}\r\nTo: fwd@{DOMAIN}\r\nSubject: forwarded\r\n"
           f"Message-ID: <fwd@remote.test>\r\n\r\nhi\r\n")
    with sender.smtp() as s:
        assert s.sendmail(ROB, [f"fwd@{DOMAIN}"], msg.encode()) == {}
    (ann,) = remote.wait_messages(ANN, 1, timeout=60)
    assert signatures(ann) == [], header(ann)
    # nobody@remote.test does not exist: our DSN goes back to rob, signed.
    (dsn,) = remote.wait_messages(ROB, 1, timeout=60)
    queue_empty(sender)
    assert b"MAILER-DAEMON@mail.example.test" in header(dsn)
    sigs = signatures(dsn)
    assert [s["a"] for s in sigs] == ["ed25519-sha256", "rsa-sha256"], header(dsn)
    assert {s["d"] for s in sigs} == {DOMAIN}  # the host's mail domain signs
    assert verify_each(net, dsn) == [True, True]


def test_keys_made_while_mtad_runs_are_used_after_reload(net):
    sender = start(net)
    remote = net.start_remote()
    send(sender, [ROB], "before the key")
    (first,) = remote.wait_messages(ROB, 1, timeout=60)
    assert signatures(first) == []
    keygen(net)

    def relays_ready() -> int:
        return len(re.findall(r"\] ready .*role=relay", sender.log("mtad")))
    before = relays_ready()
    ctl(net, "reload")
    wait_for(lambda: relays_ready() > before, 60, "a new relay process")
    send(sender, [ROB], "after the key")
    msgs = remote.wait_messages(ROB, 2, timeout=60)
    (second,) = [m for m in msgs if b"after the key" in m]
    assert verify_each(net, second) == [True, True]


def test_a_world_readable_key_is_refused_and_mail_goes_out_unsigned(net):
    sender = start(net)
    keygen(net)
    keys.key_path(keydir(net), DOMAIN, SELECTOR, "rsa").chmod(0o644)
    remote = net.start_remote()
    send(sender, [ROB], "leaky key")
    (rob,) = remote.wait_messages(ROB, 1, timeout=60)
    queue_empty(sender)
    assert signatures(rob) == []
    log = sender.log("mtad")
    line = next((x for x in log.splitlines() if "DKIM key refused" in x), "")
    assert "accessible to every user" in line and "queue_id=" in line, log[-3000:]
