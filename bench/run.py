"""`make bench`: mailpair and the reference Postfix + Dovecot, same machine, same run.

Starts a mailpair stack in a scratch directory, runs the figure scripts of
the shared benchmark harness against it and against the reference pair (set
up on loopback by the anchors script when it is not up yet), and prints each
figure beside the reference's with the ratio.

    python -m bench.run [--quick] [--no-anchors] [--only smtp_load,smtp_latency,pop3_retr]

Figures: smtp_load, smtp_latency, pop3_retr, imap_ops, imap_idle_mem (the
shared harness's scripts), imap_client_list (bench/imap_client_list.py:
a client's message list, Thunderbird's first sync) and imap_login
(bench/imap_login.py: login latency plain and TLS, memory per idle logged-in
TLS connection, through the login processes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common.passwords import hash_password

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MAILPAIR_SHARED", ROOT.parent / "shared"))
SCRIPTS = SHARED / "bench"
OURS = ROOT / "bench"  # figures of our own, on the shared harness's helpers
ANCHOR_READY = Path("/tmp/anchor-stack-ready")
USER, PASSWORD = "carol@example.test", "secret-pass-1"
# The anchors' POP3 account (the harness's default), a mailbox of its own.
REF_POP3_USER = "dave@example.test"
# Rates (…_per_s) are better higher; every other figure (times, CPU, losses) lower.
HIGHER_IS_BETTER = "_per_s"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def anchors(setup: bool) -> dict[str, str] | None:
    # The marker outlives the daemons (a machine restarted with /tmp kept):
    # then the idempotent script starts them again.
    down = ANCHOR_READY.exists() and not all(_answers(p) for p in (25, 143, 110))
    if (down or not ANCHOR_READY.exists()) and setup:
        script = SHARED / "anchors" / "setup-postfix-dovecot.sh"
        if os.geteuid() != 0 or not script.exists():
            log("reference pair not set up (needs root and ../shared/anchors); mailpair alone")
            return None
        log(f"setting up Postfix + Dovecot on loopback: {script}")
        subprocess.run(["bash", str(script)], check=True)
    if not ANCHOR_READY.exists():
        return None
    pairs = (line.split("=", 1) for line in ANCHOR_READY.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


class Stack:
    """mailpair as production runs it (argon2 defaults, info logs), in a scratch dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def start(self) -> dict:
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "etc").mkdir(parents=True)
        r = self.root
        (r / "mailpair.toml").write_text(f"""\
hostname = "mail.example.test"
domains = ["example.test"]
[paths]
spool = "{r}/spool"
mail = "{r}/mail"
run = "{r}/run"
users = "{r}/etc/users"
aliases = "{r}/etc/aliases"
[tls]
cert = "{r}/etc/cert.pem"
key = "{r}/etc/key.pem"
self_signed = true
[log]
format = "json"
level = "info"
[mta]
smtp = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
submissions = []
# Loopback ports of our own: the reference pair holds 143 and 110. Passwords
# in the clear on loopback, as Dovecot allows there (the harness logs in so).
[imap]
imap = ["127.0.0.1:0"]
imaps = ["127.0.0.1:0"]
plaintext_on_loopback = true
[pop3]
pop3 = ["127.0.0.1:0"]
pop3s = []
plaintext_on_loopback = true
# The load generators all connect from loopback: the per-address caps would
# measure themselves (Dovecot's reference counts no per-address connections).
[limits]
exempt_loopback = true
""")
        (r / "etc" / "users").write_text(f"{USER}:{hash_password(PASSWORD)}\n")
        for daemon, module in (("mdad", "mda.main"), ("mtad", "mta.main")):
            with open(r / f"{daemon}.log", "wb") as out:
                p = subprocess.Popen([sys.executable, "-m", module, "-c", str(r / "mailpair.toml")],
                                     cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            self.procs.append(p)
            state = r / "run" / f"{daemon}.json"
            deadline = time.monotonic() + 30
            while not state.exists():
                if p.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{daemon} did not start; see {r / (daemon + '.log')}")
                time.sleep(0.05)
            (r / f"{daemon}.pid").write_text(str(p.pid))
        return json.loads((r / "run" / "mtad.json").read_text())

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def figure(script: str, label: str, args: list[str], out: Path) -> None:
    """A figure script of the shared harness, or of ours (bench/) when it is here."""
    path = OURS / script if (OURS / script).exists() else SCRIPTS / script
    cmd = [sys.executable, str(path), "--label", label, "--json-out", str(out), *args]
    log("+ " + " ".join(cmd))
    subprocess.run(cmd, check=False, timeout=3600,
                   env={**os.environ, "MAILPAIR_BENCH_SCRIPTS": str(SCRIPTS)})


def table(out: Path, ours: str, theirs: str) -> str:
    recs = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]

    def key(r):
        return r["figure"], json.dumps({k: v for k, v in r["params"].items() if k != "port"},
                                       sort_keys=True)
    by = {(r["label"], *key(r)): r for r in recs}
    rows = ["| figure | parameters | metric | mailpair | reference | ratio |",
            "| --- | --- | --- | --- | --- | --- |"]
    for r in recs:
        if r["label"] != ours:
            continue
        ref = by.get((theirs, *key(r)))
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "port")
        for metric, s in r["metrics"].items():
            t = ref["metrics"].get(metric) if ref else None
            mine, other = s.get("median"), t.get("median") if t else None
            ratio = f"{mine / other:.2f}" if mine is not None and other else "-"
            if ratio != "-":
                better = "higher" if metric.endswith(HIGHER_IS_BETTER) else "lower"
                ratio += f" ({better} is better)"
            rows.append(f"| {r['figure']} | {params} | {metric} | {fmt(mine)} | {fmt(other)} "
                        f"| {ratio} |")
    return "\n".join(rows)


def fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer messages and one run each")
    ap.add_argument("--no-anchors", action="store_true", help="do not set up Postfix + Dovecot")
    ap.add_argument("--only", default="smtp_load,smtp_latency,pop3_retr,imap_ops,"
                                      "imap_client_list,imap_idle_mem,imap_login")
    ap.add_argument("--imap-count", type=int, action="append",
                    help="mailbox sizes for imap_ops (default 10000 and 100000; 2000 with --quick)")
    a = ap.parse_args()
    if not SCRIPTS.exists():
        raise SystemExit(f"bench: the figure scripts are not at {SCRIPTS} (set MAILPAIR_SHARED)")
    only = set(a.only.split(","))
    n, runs = ("500", "1") if a.quick else ("2000", "3")
    ref = None if a.no_anchors else anchors(setup=True)
    if only & {"smtp_load", "smtp_latency"} and not Path("/usr/sbin/smtp-source").exists():
        raise SystemExit("bench: smtp-source (Postfix) is missing; run as root to set up anchors")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results" / f"bench-{stamp}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    stack = Stack(Path("/tmp/mailpair-bench"))
    st = stack.start()
    port = str(st["listeners"]["smtp"][0][1])
    r = stack.root
    ours = ["--port", port, "--user", USER, "--maildir-template", f"{r}/mail/%d/%n/Maildir",
            "--mail-owner", "", "--server-pidfile", str(r / "mtad.pid"),
            "--server-pidfile", str(r / "mdad.pid")]
    theirs = ["--user", USER, "--server-pidfile", "/var/spool/postfix/pid/master.pid",
              "--server-pidfile", "/run/dovecot/master.pid"]
    load = ["-m", n, "--size", "4096", "-c", "1", "-c", "10", "-c", "50", "--runs", runs]
    latency = ["-m", "100" if a.quick else "200", "--interval", "0.05", "--runs", runs]
    pop3 = ["--count", "200" if a.quick else "1000", "--runs", "1" if a.quick else "5"]
    try:
        for name, script, extra in (("smtp_load", "smtp_load.py", load),
                                    ("smtp_latency", "smtp_latency.py", latency)):
            if name not in only:
                continue
            figure(script, "mailpair", ours + extra, out)
            if ref is not None:
                figure(script, "postfix+dovecot", theirs + extra, out)
        if "pop3_retr" in only:
            mdad = json.loads((r / "run" / "mdad.json").read_text())
            # The harness writes the mailbox itself: as root, as the user mdad's
            # pop3 process runs as, so that it can index and change it.
            owner = "vmail:vmail" if os.geteuid() == 0 else ""
            mine = ["--port", str(mdad["listeners"]["pop3"][0][1]), "--user", USER,
                    "--maildir-template", f"{r}/mail/%d/%n/Maildir", "--mail-owner", owner]
            figure("pop3_retr.py", "mailpair", mine + pop3, out)
            if ref is not None:
                figure("pop3_retr.py", "postfix+dovecot",
                       ["--port", ref.get("POP3_PORT", "110"), "--user", REF_POP3_USER,
                        *pop3], out)
        mdad = json.loads((r / "run" / "mdad.json").read_text())
        owner = "vmail:vmail" if os.geteuid() == 0 else ""
        imap_mine = ["--port", str(mdad["listeners"]["imap"][0][1]), "--user", USER,
                     "--maildir-template", f"{r}/mail/%d/%n/Maildir", "--mail-owner", owner,
                     "--server-pidfile", str(r / "mdad.pid")]
        imap_theirs = ["--port", ref.get("IMAP_PORT", "143") if ref else "143", "--user", USER,
                       "--server-pidfile", "/run/dovecot/master.pid"]
        counts = a.imap_count or ([2000] if a.quick else [10000, 100000])
        for name in ("imap_ops", "imap_client_list"):
            if name not in only:
                continue
            for count in counts:
                extra = ["--count", str(count), "--runs", "1" if a.quick or count > 20000
                         else "3"]
                figure(f"{name}.py", "mailpair", imap_mine + extra, out)
                if ref is not None:
                    figure(f"{name}.py", "postfix+dovecot", imap_theirs + extra, out)
        if "imap_idle_mem" in only:
            # Uses the mailbox the figures above left behind (both fill it alike).
            extra = ["--clients", "100" if a.quick else "500", "--runs", "1"]
            figure("imap_idle_mem.py", "mailpair", imap_mine + extra, out)
            if ref is not None:
                figure("imap_idle_mem.py", "postfix+dovecot", imap_theirs + extra, out)
        if "imap_login" in only:
            extra = ["--logins", "50" if a.quick else "200", "--conns", "200",
                     "--runs", "1" if a.quick else "3"]
            mine = [*imap_mine, "--tls-port", str(mdad["listeners"]["imaps"][0][1])]
            figure("imap_login.py", "mailpair", mine + extra, out)
            if ref is not None:
                figure("imap_login.py", "postfix+dovecot",
                       [*imap_theirs, "--tls-port", ref.get("IMAPS_PORT", "993")] + extra, out)
    finally:
        stack.stop()
    print(f"\nResults: {out}\n")
    print(table(out, "mailpair", "postfix+dovecot"))


if __name__ == "__main__":
    main()
