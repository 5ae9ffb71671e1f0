"""DKIM signing by the running mtad: what leaves for another domain, verified with dkimpy
against the records the test DNS server serves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import dkim
import dns.message
import dns.query
import dns.rdatatype

from mta.dkim import keys
from tests.conftest import ROOT, wait_for

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
    """`mta-ctl dkim keygen`, and its TXT records published in the test DNS."""
    ctl(net, "dkim", "keygen", DOMAIN, "--selector", selector)
    records = [keys.txt_strings(k.txt_record())
               for k in keys.load(keydir(net), DOMAIN, selector)]
    net.dns.zone[keys.txt_name(DOMAIN, selector)] = {"TXT": records}


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
    """Each signature checked by dkimpy, its key asked of the test DNS server.

    Both keys of a selector are published at one name, and dkimpy takes the
    first TXT record it gets, so each signature is shown the record of its
    own algorithm (k=) among those the server answers with.
    """
    results = []
    for i, sig in enumerate(signatures(raw)):
        want = "k=" + sig["a"].split("-")[0]

        def dnsfunc(name, timeout=5, want=want):
            q = dns.message.make_query(name.decode().rstrip("."), dns.rdatatype.TXT)
            host, port = net.dns.address.split(":")
            answer = dns.query.udp(q, host, port=int(port), timeout=timeout)
            for rrset in answer.answer:
                for r in rrset:
                    txt = b"".join(r.strings)
                    if want.encode() in txt.replace(b" ", b""):
                        return txt
            return None
        results.append(dkim.DKIM(raw).verify(idx=i, dnsfunc=dnsfunc))
    return results


def queue_empty(stack) -> None:
    wait_for(lambda: not stack.queue_files(), 60, "the queue to empty")


def test_authenticated_mail_to_another_domain_is_signed_with_both_keys(net):
    sender = start(net)
    keygen(net)
    remote = net.start_remote()
    send(sender, [ROB, ALICE], "signed")
    (rob,) = remote.wait_messages(ROB, 1, timeout=60)
    (own,) = sender.wait_messages(ALICE, 1, timeout=60)
    queue_empty(sender)
    sigs = signatures(rob)
    assert [s["a"] for s in sigs] == ["ed25519-sha256", "rsa-sha256"], header(rob)
    for s in sigs:
        assert (s["d"], s["s"], s["c"]) == (DOMAIN, SELECTOR, "relaxed/relaxed")
        signed = s["h"].lower().split(":")
        for name in ("from", "subject", "to", "date"):  # present once, signed twice
            assert signed.count(name) == 2, s["h"]
    assert verify_each(net, rob) == [True, True]
    assert net.dns.asked(keys.txt_name(DOMAIN, SELECTOR), "TXT") >= 2
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
