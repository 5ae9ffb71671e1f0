"""Real daemons for the tests: mtad and mdad as subprocesses in a temporary directory.

Every listener is configured on port 0; the parent writes the ports it got
into <run>/<daemon>.json, which is how a test finds them. Readiness is
polled (banner on a socket), never slept for.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.passwords import hash_password

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse 1"
MTAD_ROLES = ("lookup", "relay", "queue", "smtp", "autoconfig")
USERS = ("alice@example.test", "bob@example.test", "carol@example.test")


def wait_for(cond: Callable[[], object], timeout: float = 60.0, what: str = "condition"):
    """Poll cond until it returns something true; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# Outbound mail in tests goes only to loopback: a nameserver nobody answers on
# (every lookup fails at once, a temporary failure) unless a test sets its own.
NO_DNS = {"nameservers": ["127.0.0.1:9"], "dns_timeout": 2}


def toml_value(v: object) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def config_text(root: Path, relay: dict | None = None, hostname: str = "mail.example.test",
                domain: str = "example.test", sections: dict[str, dict] | None = None,
                **mta: object) -> str:
    """The tests' configuration: mta keys as keyword arguments, relay= for
    [relay], and sections= for any other table's keys ({"limits": {...}}),
    each merged over the defaults below."""
    tables: dict[str, dict[str, object]] = {
        "paths": {"spool": f"{root}/spool", "mail": f"{root}/mail", "run": f"{root}/run",
                  "users": f"{root}/etc/users", "aliases": f"{root}/etc/aliases"},
        "tls": {"cert": f"{root}/etc/cert.pem", "key": f"{root}/etc/key.pem",
                "self_signed": True},
        "log": {"format": "console", "level": "debug"},
        "auth": {"failure_delay": 0.2, "failure_delay_max": 0.2},
        "imap": {"imap": ["127.0.0.1:0"], "imaps": ["127.0.0.1:0"],
                 "plaintext_on_loopback": True},
        "pop3": {"pop3": ["127.0.0.1:0"], "pop3s": ["127.0.0.1:0"],
                 "plaintext_on_loopback": True},
        "mta": {"smtp": ["127.0.0.1:0"], "submission": ["127.0.0.1:0"],
                "submissions": ["127.0.0.1:0"], "retry_schedule": [0.5, 1, 2],
                "max_message_size": 1048576, **mta},
        "relay": dict(relay or NO_DNS),
        "autoconfig": {"listen": ["127.0.0.1:0"]},
    }
    for name, keys in (sections or {}).items():
        tables.setdefault(name, {}).update(keys)
    out = [f"hostname = {json.dumps(hostname)}", f"domains = [{json.dumps(domain)}]", ""]
    for name, keys in tables.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in keys.items())
        out.append("")
    return "\n".join(out)


class Stack:
    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = root
        self.log_dir = log_dir
        self.config = root / "mailpair.toml"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.run_as: int | None = None  # a uid to start the daemons as, instead of ours
        # Run in each daemon's process just before it starts (e.g. to lower an rlimit).
        self.preexec: Callable[[], None] | None = None
        (root / "etc").mkdir(parents=True, exist_ok=True)

    # -- set-up ----------------------------------------------------------------

    def write_config(self, **mta: object) -> None:
        """mta keys, and relay= (a dict), hostname= and domain= for another stack,
        sections= for other tables (see config_text)."""
        self.config.write_text(config_text(self.root, **mta))

    def add_user(self, address: str, password: str = PASSWORD) -> None:
        with open(self.root / "etc" / "users", "a") as f:
            f.write(f"{address}:{hash_password(password, cheap=True)}\n")

    def add_alias(self, line: str) -> None:
        with open(self.root / "etc" / "aliases", "a") as f:
            f.write(line + "\n")

    # -- processes ---------------------------------------------------------------

    def state(self, daemon: str) -> dict | None:
        try:
            return json.loads((self.root / "run" / f"{daemon}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def start(self, daemon: str) -> None:
        module = {"mtad": "mta.main", "mdad": "mda.main"}[daemon]
        state = self.root / "run" / f"{daemon}.json"
        state.unlink(missing_ok=True)
        log = self.log_dir / f"{daemon}.log"
        self.logs[daemon] = log
        offset = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, "-c", str(self.config)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                **({"user": self.run_as} if self.run_as is not None else {}),
                **({"preexec_fn": self.preexec} if self.preexec is not None else {}),
            )
        self.procs[daemon] = proc

        def up():
            if proc.poll() is not None:
                raise AssertionError(f"{daemon} exited with {proc.returncode}:\n{self.log(daemon)}")
            st = self.state(daemon)
            return st is not None and st["pid"] == proc.pid
        wait_for(up, 60, f"{daemon} to bind")
        if daemon == "mtad":
            wait_for(lambda: self._banner(self.address("smtp")), 60, "SMTP banner")
            # Every child has read the configuration (a test may change it next).
            wait_for(lambda: self._ready(log, offset, MTAD_ROLES), 60, "mtad's children")
        else:
            wait_for(lambda: self._banner(str(self.lmtp_socket)), 60, "LMTP banner")

    @staticmethod
    def _ready(log: Path, offset: int, roles: tuple[str, ...]) -> bool:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        ready = {m.group(1) for m in re.finditer(r"\] ready .*?role=([\w-]+)", text)}
        for line in text.splitlines():  # log.format = "json"
            if line.startswith("{") and '"ready"' in line:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("event") == "ready":
                        ready.add(entry.get("role"))
        return set(roles) <= ready

    def _banner(self, where: tuple | str) -> bool:
        family = socket.AF_UNIX if isinstance(where, str) else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(where)
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    def kill9(self, daemon: str) -> None:
        """kill -9 of the whole daemon: parent and every child at once."""
        proc = self.procs.pop(daemon)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self, daemon: str, timeout: float = 30) -> int:
        proc = self.procs.pop(daemon)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        for daemon in list(self.procs):
            try:
                self.stop(daemon, timeout=20)
            except subprocess.TimeoutExpired:
                pass

    def log(self, daemon: str) -> str:
        path = self.logs.get(daemon)
        return path.read_text(errors="replace") if path and path.exists() else ""

    # -- where things are ----------------------------------------------------------

    def port(self, listener: str) -> int:
        return self.address(listener)[1]

    def address(self, listener: str) -> tuple[str, int]:
        daemon = "mdad" if listener in ("imap", "imaps", "pop3", "pop3s") else "mtad"
        st = self.state(daemon)
        assert st, f"{daemon} is not running"
        host, port = st["listeners"][listener][0]
        return host, port

    def imap(self, user: str | None = "alice@example.test"):
        """An imaplib session on the plain port (loopback may log in without TLS)."""
        import imaplib
        c = imaplib.IMAP4(*self.address("imap"), timeout=30)
        if user:
            c.login(user, PASSWORD)
        return c

    @property
    def lmtp_socket(self) -> Path:
        return self.root / "run" / "lmtp.sock"

    def give_to_mail_user(self, path: Path) -> None:
        """A directory a test made by hand inside the mail root, as the MDA would own it."""
        if os.geteuid() == 0:
            shutil.chown(path, "vmail", "vmail")

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.root / "mail" / domain / local / "Maildir"

    def messages(self, address: str) -> list[bytes]:
        md = self.maildir(address)
        files = sorted((md / "new").glob("*")) + sorted((md / "cur").glob("*"))
        return [f.read_bytes() for f in files]

    def wait_messages(self, address: str, count: int, timeout: float = 20) -> list[bytes]:
        return wait_for(lambda: (m := self.messages(address)) and len(m) >= count and m,
                        timeout, f"{count} message(s) for {address}")

    def queue_files(self) -> list[str]:
        return sorted(p.name for p in (self.root / "spool" / "queue").glob("*.env"))

    # -- clients ---------------------------------------------------------------------

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP(*self.address("smtp"), timeout=30)

    def submission(self, login: str | None = "alice@example.test") -> smtplib.SMTP:
        s = smtplib.SMTP(*self.address("submission"), timeout=30)
        s.starttls(context=client_tls())
        if login:
            s.login(login, PASSWORD)
        return s


SYSTEM_USERS = ("mailpair", "mailpair-queue", "mailpair-relay", "vmail", "mailpair-login",
                "mailpair-auth", "mailpair-web")


def make_system_users() -> None:
    """As root the daemons drop to their own users: make them, as deploy/install.sh does."""
    if os.geteuid() != 0:
        return
    import pwd
    for name in SYSTEM_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/", "--shell", "/usr/sbin/nologin", name], check=True)


@pytest.fixture(scope="session")
def system_users() -> None:
    make_system_users()


def configured_stack(root: Path, log_dir: Path) -> Stack:
    """A Stack in root (kept short: Unix socket paths), configured, with users and aliases."""
    shutil.rmtree(root, ignore_errors=True)
    st = Stack(root, log_dir)
    st.write_config()
    for u in USERS:
        st.add_user(u)
    st.add_alias("postmaster@example.test: alice@example.test")
    st.add_alias("team@example.test: alice@example.test, bob@example.test")
    return st


@pytest.fixture
def bare_stack(tmp_path: Path, system_users: None) -> Iterator[Stack]:
    """Configured, with users, but not started."""
    # Unix socket paths are limited to 108 bytes: keep the root short.
    root = Path(f"/tmp/mp-{os.getpid()}-{tmp_path.name[-20:]}")
    st = configured_stack(root, tmp_path)
    try:
        yield st
    finally:
        st.stop_all()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(bare_stack: Stack) -> Stack:
    """Both daemons up: mdad first, as systemd starts them."""
    bare_stack.start("mdad")
    bare_stack.start("mtad")
    return bare_stack


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request):
    """A failing daemon test prints both daemons' logs: the first thing one reads."""
    yield
    rep = getattr(request.node, "rep_call", None)
    st = request.node.funcargs.get("bare_stack")
    if rep is not None and rep.failed and st is not None:
        for d in ("mdad", "mtad"):
            print(f"----- {d} log -----\n{st.log(d)[-20000:]}")


# Debian packages whose name is not the program's.
PACKAGE_OF = {"mbsync": "isync", "offlineimap": "offlineimap3", "fail2ban-regex": "fail2ban"}


def require_tool(name: str) -> str:
    """Path of a Debian client the test drives; under CI its absence is a failure."""
    path = shutil.which(name)
    if path:
        return path
    package = PACKAGE_OF.get(name, name)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is missing: .ci/run installs it (package {package})")
    pytest.skip(f"{name} is not installed (apt-get install {package})")
