"""`make run`: both daemons unprivileged on high ports, with state under ./var.

Writes a development configuration (once), a demo domain, user and alias and
a self-signed certificate, starts `mdad` and `mtad` as the current user,
waits until they answer, prints how to point a mail client at them, and
stops them in order (mtad first, then mdad) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import ctypes
import grp
import json
import os
import pwd
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import config, tls
from common.passwords import check_password, hash_password
from common.users import atomic_write, edit_lines, line_address, parse_users, read_text

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
DOMAIN = "example.test"
DEMO_USER = f"demo@{DOMAIN}"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
# Shown in the banner until mdad serves them.


def _q(value: object) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(str(value))


def _run_as() -> str:
    """[mta], [mda] and [auth] user/group lines naming the current user: no privilege drop."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
    except KeyError:  # a uid with no name (some containers): keep the defaults
        return ""
    return f"user = {_q(user)}\ngroup = {_q(group)}\n"


# Thunderbird autoconfig, autodiscover, the Apple profile and the MTA-STS policy over HTTPS.
AUTOCONFIG_SECTION = '[autoconfig]\nlisten = ["127.0.0.1:1443"]\n'


def config_text(var: Path) -> str:
    run_as = _run_as()
    # The queue's and the relay's users too: the whole MTA as the current user.
    mta_run_as = "".join(run_as.replace("user =", f"{role}user =").replace(
        "group =", f"{role}group =") for role in ("", "queue_", "relay_"))
    return f"""\
# Development configuration, written by `make run` (common/devrun.py) when missing.
# Edit it freely; `make clean` removes it with the rest of var/.
hostname = "mail.example.test"
domains = [{_q(DOMAIN)}]

[paths]
spool = {_q(var / "spool")}
mail = {_q(var / "mail")}
run = {_q(var / "run")}
users = {_q(var / "etc" / "users")}
aliases = {_q(var / "etc" / "aliases")}

[tls]
cert = {_q(var / "etc" / "tls" / "cert.pem")}
key = {_q(var / "etc" / "tls" / "key.pem")}
self_signed = true

[log]
format = "console"
level = "info"

[mta]
smtp = ["127.0.0.1:2525"]
submission = ["127.0.0.1:2587"]
submissions = ["127.0.0.1:2465"]
# Short intervals, so a failed delivery is retried while you watch.
retry_schedule = [2, 5, 10, 30, 60, 300]
dkim_keys = {_q(var / "etc" / "dkim")}
{mta_run_as}
[mda]
{run_as}lmtp_group = {_q(grp.getgrgid(os.getgid()).gr_name)}

[imap]
imap = ["127.0.0.1:1143"]
imaps = ["127.0.0.1:1993"]
plaintext_on_loopback = true

[pop3]
pop3 = ["127.0.0.1:1110"]
pop3s = ["127.0.0.1:1995"]
# Loopback only here: a password in the clear never leaves the machine.
plaintext_on_loopback = true

[auth]
{run_as}
{AUTOCONFIG_SECTION}{run_as}
[limits]
# Connection caps count other addresses, not this machine's own clients.
exempt_loopback = true
"""


@dataclass
class Setup:
    cfg: config.Config
    config_path: Path
    # None when the demo user's password was changed by other means.
    password: str | None


def _set_hash(users_path: Path, address: str, password_hash: str) -> None:
    """Replace the address's hash (keeping any further fields), or add the user."""

    def change(lines: list[str]) -> list[str]:
        out, done = [], False
        for line in lines:
            if not done and line_address(line) == address:
                rest = line.strip().split(":")[2:]
                out.append(":".join([address, password_hash, *rest]))
                done = True
            else:
                out.append(line)
        if not done:
            out.append(f"{address}:{password_hash}")
        return out

    edit_lines(users_path, change)


def ensure_demo_user(users_path: Path, password_file: Path) -> str | None:
    """Make sure the demo user exists; returns its password when known."""
    try:
        users, _ = parse_users(read_text(users_path), str(users_path))
    except FileNotFoundError:
        users = {}
    record = users.get(DEMO_USER)
    wanted = os.environ.get("MAILPAIR_DEMO_PASSWORD")
    if wanted:  # the environment wins, and is never written to var/
        if record is None or not check_password(record.password_hash, wanted):
            _set_hash(users_path, DEMO_USER, hash_password(wanted))
        return wanted
    try:
        stored: str | None = password_file.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        stored = None
    if record is None:
        password = stored or secrets.token_urlsafe(12)
        if stored is None:
            atomic_write(password_file, password + "\n", mode=0o600)
        _set_hash(users_path, DEMO_USER, hash_password(password))
        return password
    if stored is not None and check_password(record.password_hash, stored):
        return stored
    return None


def prepare(var: Path = VAR) -> Setup:
    etc = var / "etc"
    (etc / "tls").mkdir(parents=True, exist_ok=True)
    config_path = var / "mailpair.toml"
    if not config_path.exists():
        atomic_write(config_path, config_text(var), mode=0o644)
        print(f"wrote {config_path}")
    elif "[autoconfig]" not in config_path.read_text(encoding="utf-8"):
        # Written before there was an autoconfig listener: its default, 443 on all
        # addresses, is no development port (and needs root to bind).
        with open(config_path, "a", encoding="utf-8") as f:
            f.write("\n" + AUTOCONFIG_SECTION)
        print(f"added [autoconfig] on 127.0.0.1:1443 to {config_path}")
    cfg = config.load(config_path)
    if not cfg.paths.users.is_relative_to(var):
        print(f"note: {config_path} keeps its state outside {var} (was the checkout "
              "moved?); `make clean` writes a fresh one", file=sys.stderr)
    if not cfg.paths.aliases.exists():
        atomic_write(cfg.paths.aliases,
                     "# address: target[, target...]   (catch-all: @domain: target)\n"
                     f"postmaster@{DOMAIN}: {DEMO_USER}\n")
    password = ensure_demo_user(cfg.paths.users, etc / "demo-password")
    if cfg.tls.self_signed and tls.ensure_self_signed(cfg.tls.cert, cfg.tls.key, cfg.hostname):
        print(f"made a self-signed certificate for {cfg.hostname}: {cfg.tls.cert}")
    return Setup(cfg, config_path, password)


def _ports_in_use(cfg: config.Config) -> list[str]:
    busy = []
    for item in cfg.mta.smtp + cfg.mta.submission + cfg.mta.submissions + cfg.autoconfig.listen:
        host, port = config.parse_listen(item)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                busy.append(item)
    return busy


def _die_with_us(parent: int) -> None:
    """In the daemon, before exec: end it if devrun dies, even by kill -9."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def start(name: str, module: str, config_path: Path) -> subprocess.Popen:
    parent = os.getpid()
    print(f"starting {name}: {sys.executable} -m {module} -c {config_path}")
    # Its own process group: Ctrl-C reaches only us, and we stop the daemons in order.
    return subprocess.Popen(
        [sys.executable, "-m", module, "-c", str(config_path)],
        cwd=ROOT, stdin=subprocess.DEVNULL, process_group=0,
        preexec_fn=lambda: _die_with_us(parent),
    )


def _smtp_greets(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            greets = s.recv(512).startswith(b"220")
            if greets:
                s.sendall(b"QUIT\r\n")
            return greets
    except OSError:
        return False


class _Stopped(Exception):
    """A stop signal came while we waited for the daemons."""


class Runner:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.procs: dict[str, subprocess.Popen] = {}
        self.signals = 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1

    def _died(self) -> str | None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                if p.returncode < 0:
                    return f"{name} was killed by signal {-p.returncode}"
                return f"{name} exited with status {p.returncode}"
        return None

    def wait_ready(self) -> dict[str, dict]:
        """Poll until both state files exist and SMTP greets; bounded by READY_TIMEOUT."""
        run = self.setup.cfg.paths.run
        deadline = time.monotonic() + READY_TIMEOUT
        states: dict[str, dict] = {}
        while time.monotonic() < deadline and not self.signals:
            if why := self._died():
                raise RuntimeError(why)
            for name in self.procs:
                if name not in states:
                    try:
                        states[name] = json.loads((run / f"{name}.json").read_text())
                    except (FileNotFoundError, ValueError):
                        pass
            if len(states) == len(self.procs):
                smtp = states["mtad"]["listeners"].get("smtp") or []
                if not smtp or _smtp_greets(smtp[0][0], smtp[0][1], 1.0):
                    return states
            time.sleep(0.1)
        if self.signals:
            raise _Stopped
        missing = [n for n in self.procs if n not in states]
        what = f"no {', '.join(missing)} state file" if missing else "no SMTP greeting"
        raise RuntimeError(f"not ready after {READY_TIMEOUT:.0f}s: {what} under {run}")

    def stop(self) -> None:
        for name in ("mtad", "mdad"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            print(f"stopping {name} (pid {p.pid})", file=sys.stderr)
            p.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT
            while p.poll() is None and time.monotonic() < deadline and self.signals < 2:
                time.sleep(0.1)
            if p.poll() is None:
                print(f"{name} did not stop, killing it", file=sys.stderr)
                p.kill()
                p.wait()

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        cfg = self.setup.cfg
        if busy := _ports_in_use(cfg):
            print(f"devrun: in use: {', '.join(busy)} (is another `make run` still running?)",
                  file=sys.stderr)
            return 1
        for name in ("mdad", "mtad"):
            (cfg.paths.run / f"{name}.json").unlink(missing_ok=True)
        try:
            self.procs["mdad"] = start("mdad", "mda.main", self.setup.config_path)
            self.procs["mtad"] = start("mtad", "mta.main", self.setup.config_path)
            states = self.wait_ready()
        except _Stopped:
            self.stop()
            return 0
        except RuntimeError as e:
            print(f"devrun: {e}; stopping", file=sys.stderr)
            self.stop()
            return 1
        print(banner(self.setup, states), flush=True)
        while not self.signals:
            if why := self._died():
                print(f"devrun: {why}; stopping the other daemon", file=sys.stderr)
                self.stop()
                return 1
            time.sleep(0.2)
        self.stop()
        print("stopped", file=sys.stderr)
        return 0


def banner(setup: Setup, states: dict[str, dict]) -> str:
    cfg = setup.cfg
    listeners = states.get("mtad", {}).get("listeners", {})

    def port(name: str) -> str:
        items = listeners.get(name) or []
        return ", ".join(str(p) for _, p in items) or "off"

    pw = setup.password
    shown = pw if pw is not None else (
        "(changed with mda-ctl or MAILPAIR_DEMO_PASSWORD; set that to choose it again)")
    pw = pw if pw is not None else "PASSWORD"
    mda_listeners = states.get("mdad", {}).get("listeners", {})
    pop3 = ", ".join(str(p) for name in ("pop3", "pop3s")
                     for _, p in mda_listeners.get(name) or []) or "off"
    imap = ", ".join(str(p) for name in ("imap", "imaps")
                     for _, p in mda_listeners.get(name) or []) or "off"
    cert = cfg.tls.cert
    sub = (listeners.get("submission") or [["127.0.0.1", 2587]])[0][1]
    smtp = (listeners.get("smtp") or [["127.0.0.1", 2525]])[0][1]
    local, domain = DEMO_USER.split("@")
    return f"""
================================================================
 mailpair is running (development mode, state in {setup.config_path.parent})

 server        127.0.0.1
 SMTP          {port("smtp"):<6} no authentication; mail for {", ".join(cfg.domains)} only
 submission    {port("submission"):<6} STARTTLS, then password login
 submissions   {port("submissions"):<6} implicit TLS, then password login
 POP3          {pop3:<11} STLS (or none, on loopback), implicit TLS; USER/PASS, AUTH PLAIN
 IMAP          {imap:<11} STARTTLS (or none, on loopback), implicit TLS
 autoconfig    {port("autoconfig"):<6} HTTPS: Thunderbird, Outlook, Apple Mail, MTA-STS; any Host:
               https://127.0.0.1:{port("autoconfig")}/mail/config-v1.1.xml?emailaddress={DEMO_USER}
 user          {DEMO_USER}
 password      {shown}
 certificate   {cert}
               (self-signed for {cfg.hostname}, localhost and 127.0.0.1:
                trust it, or accept it in your client)

 Send a test message:
   swaks --server 127.0.0.1:{smtp} --from you@example.net --to {DEMO_USER}
   swaks --server 127.0.0.1:{sub} --tls --auth-user {DEMO_USER} \\
         --auth-password {shlex.quote(pw)} --from {DEMO_USER} --to {DEMO_USER}

   python3 - <<'EOF'
   import smtplib, ssl
   from email.message import EmailMessage
   msg = EmailMessage()
   msg["From"] = msg["To"] = {json.dumps(DEMO_USER)}
   msg["Subject"] = "hello"
   msg.set_content("It works.")
   tls = ssl.create_default_context(cafile={json.dumps(str(cert))})
   with smtplib.SMTP("127.0.0.1", {sub}) as s:
       s.starttls(context=tls)
       s.login({json.dumps(DEMO_USER)}, {json.dumps(pw)})
       s.send_message(msg)
   EOF

 Mail for {DEMO_USER} lands in {cfg.paths.mail / domain / local / "Maildir"}
 Ctrl-C stops both daemons.
================================================================"""


def main() -> None:
    try:
        setup = prepare()
    except config.ConfigError as e:
        print(f"devrun: {e}", file=sys.stderr)
        sys.exit(78)
    except OSError as e:
        print(f"devrun: cannot prepare {VAR}: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(Runner(setup).run())


if __name__ == "__main__":
    main()
