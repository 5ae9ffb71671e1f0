"""deploy/: the systemd units (checked by systemd-analyze) and install.sh run for real."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from common import config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = ("mda.service", "mta.service")
BIN = Path(sys.executable).parent  # the repository's venv: real mtad and mdad
CAPS = {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER",
        "CAP_DAC_OVERRIDE", "CAP_KILL"}


def skip_or_fail(reason: str) -> None:
    """Missing prerequisites skip a test on a workstation; under CI they are failures."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat in a unit file)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    (value,) = section[key]
    return value


@pytest.mark.parametrize("unit", UNITS)
def test_unit_matches_the_privilege_model(unit: str) -> None:
    daemon = {"mda.service": "mdad", "mta.service": "mtad"}[unit]
    s = parse_unit((DEPLOY / unit).read_text())
    u, svc = s["Unit"], s["Service"]
    assert one(svc, "Type") == "simple"
    assert one(svc, "ExecStart") == (
        f"/opt/mailpair/venv/bin/{daemon} -c /etc/mailpair/mailpair.toml")
    assert one(svc, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(svc, "KillMode") == "mixed"
    assert one(svc, "TimeoutStopSec") == "60"  # sessions get ~30 s to finish
    assert one(svc, "Restart") == "on-failure"
    assert one(svc, "RestartPreventExitStatus") == "78"  # EXIT_CANNOT_START, EX_CONFIG
    assert (one(svc, "RuntimeDirectory"), one(svc, "RuntimeDirectoryMode"),
            one(svc, "RuntimeDirectoryPreserve")) == ("mailpair", "0755", "yes")
    assert one(svc, "UMask") == "0027"
    # The parent starts as root and drops its children itself.
    assert "User" not in svc and "Group" not in svc
    assert "DynamicUser" not in svc
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
                "ProtectClock", "ProtectHostname", "RestrictNamespaces", "RestrictRealtime",
                "RestrictSUIDSGID", "LockPersonality"):
        assert one(svc, key) == "yes", key
    assert one(svc, "ProtectSystem") == "strict"
    assert one(svc, "SystemCallArchitectures") == "native"
    assert set(one(svc, "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET",
                                                                "AF_INET6"}
    assert set(one(svc, "CapabilityBoundingSet").split()) == CAPS
    assert "MemoryDenyWriteExecute" not in svc  # cffi/libffi may need W+X pages
    writable = set(one(svc, "ReadWritePaths").split())
    data = "/var/vmail" if unit == "mda.service" else "/var/spool/mailpair"
    assert writable == {data, "/run/mailpair"}
    assert "network-online.target" in one(u, "After").split()
    if unit == "mta.service":
        assert "mda.service" in one(u, "After").split()
        assert "mda.service" in one(u, "Wants").split()
    else:
        assert "mta.service" not in " ".join(u.get("After", []) + u.get("Wants", []))
    assert one(s["Install"], "WantedBy") == "multi-user.target"


def verify(units: list[Path]) -> tuple[int, list[str]]:
    r = subprocess.run(["systemd-analyze", "verify", *map(str, units)],
                       capture_output=True, text=True, timeout=60)
    names = {u.name for u in units} | {str(u) for u in units}
    # Problems elsewhere on the host (other units) are not ours to judge.
    mine = [line for line in (r.stdout + r.stderr).splitlines()
            if any(n in line for n in names)]
    return r.returncode, mine


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        skip_or_fail("systemd-analyze is missing (apt-get install systemd)")
    for daemon in ("mtad", "mdad"):
        if not (BIN / daemon).exists():
            skip_or_fail(f"{BIN / daemon} is missing: make venv installs the console scripts")
    # verify wants ExecStart to exist: the repository's own scripts stand in.
    spool, mail = tmp_path / "spool", tmp_path / "mail"
    spool.mkdir()
    mail.mkdir()
    copies = []
    for unit in UNITS:
        text = (DEPLOY / unit).read_text()
        assert "/opt/mailpair/venv/bin/" in text
        text = text.replace("/opt/mailpair/venv/bin/", f"{BIN}/")
        text = text.replace("/var/spool/mailpair", str(spool)).replace("/var/vmail", str(mail))
        (tmp_path / unit).write_text(text)
        copies.append(tmp_path / unit)
    rc, problems = verify(copies)
    assert rc == 0 and problems == [], problems

    # The same check sees a broken unit here, so its silence above means something.
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (tmp_path / "mta.service").read_text().replace("KillMode=", "KilMode=")
    (broken / "mta.service").write_text(text)
    _, problems = verify([broken / "mta.service"])
    assert any("KilMode" in p for p in problems), problems


# -- install.sh --------------------------------------------------------------------------


def owner_mode(path: Path) -> tuple[str, str, str]:
    st = path.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            f"{stat.S_IMODE(st.st_mode):04o}")


def snapshot(root: Path) -> dict[str, tuple]:
    """Owner, mode and (for files) content of everything under root."""
    found = {}
    for path in sorted(root.rglob("*")):
        content = path.read_bytes() if path.is_file() else None
        found[str(path.relative_to(root))] = (*owner_mode(path), content)
    return found


def install(tmp: Path) -> subprocess.CompletedProcess:
    (tmp / "fail2ban").mkdir(exist_ok=True)  # as if fail2ban were installed
    r = subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--prefix", str(tmp / "opt"),
         "--etc", str(tmp / "etc"), "--spool", str(tmp / "spool"), "--mail", str(tmp / "mail"),
         "--systemd-dir", str(tmp / "units"), "--fail2ban-dir", str(tmp / "fail2ban"),
         "--no-venv"],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


EXPECTED = {
    "opt": ("root", "root", "0755"),
    "etc": ("root", "root", "0755"),
    "etc/tls": ("root", "root", "0755"),
    "etc/dkim": ("root", "mailpair-relay", "0750"),
    "etc/mailpair.toml": ("root", "root", "0644"),
    "etc/users": ("root", "mailpair-auth", "0640"),
    "etc/aliases": ("root", "mailpair-auth", "0640"),
    "spool": ("mailpair-queue", "mailpair-queue", "0700"),
    "spool/incoming": ("mailpair-queue", "mailpair-queue", "0700"),
    "spool/queue": ("mailpair-queue", "mailpair-queue", "0700"),
    "spool/corrupt": ("mailpair-queue", "mailpair-queue", "0700"),
    "mail": ("vmail", "vmail", "0700"),
    "units/mta.service": ("root", "root", "0644"),
    "units/mda.service": ("root", "root", "0644"),
    "fail2ban/filter.d/mailpair.conf": ("root", "root", "0644"),
    "fail2ban/jail.d/mailpair.conf": ("root", "root", "0644"),
}


def test_install_sh(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        skip_or_fail("install.sh creates system users and chowns: run the tests as root")
    r = install(tmp_path)
    assert "Next steps" in r.stdout and "systemctl enable --now mda mta" in r.stdout

    for name in ("mailpair", "mailpair-queue", "mailpair-relay", "vmail", "mailpair-login",
                 "mailpair-auth", "mailpair-web"):
        for db in ("passwd", "group"):
            got = subprocess.run(["getent", db, name], capture_output=True, text=True)
            assert got.returncode == 0, f"getent {db} {name}"

    for rel, want in EXPECTED.items():
        assert owner_mode(tmp_path / rel) == want, rel
    assert (tmp_path / "etc" / "users").read_text() == ""

    cfg = config.load(tmp_path / "etc" / "mailpair.toml")
    assert cfg.paths.spool == tmp_path / "spool"
    assert cfg.paths.mail == tmp_path / "mail"
    assert cfg.paths.users == tmp_path / "etc" / "users"
    assert cfg.paths.aliases == tmp_path / "etc" / "aliases"
    assert cfg.tls.cert == tmp_path / "etc" / "tls" / "cert.pem"
    assert cfg.tls.key == tmp_path / "etc" / "tls" / "key.pem"
    assert cfg.mta.dkim_keys == tmp_path / "etc" / "dkim"

    for unit, daemon, data in (("mta.service", "mtad", "spool"),
                               ("mda.service", "mdad", "mail")):
        svc = parse_unit((tmp_path / "units" / unit).read_text())["Service"]
        assert one(svc, "ExecStart") == (
            f"{tmp_path}/opt/venv/bin/{daemon} -c {tmp_path}/etc/mailpair.toml")
        assert one(svc, "ReadWritePaths").split() == [str(tmp_path / data), "/run/mailpair"]
    for conf in ("filter.d/mailpair.conf", "jail.d/mailpair.conf"):
        assert ((tmp_path / "fail2ban" / conf).read_text()
                == (DEPLOY / "fail2ban" / conf).read_text())

    # What install.sh made passes mda-ctl check, but for what only the admin can add.
    r = subprocess.run([sys.executable, "-m", "mda.ctl", "-c",
                        str(tmp_path / "etc" / "mailpair.toml"), "check", "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    problems = [f for f in json.loads(r.stdout) if f["level"] != "OK"]
    assert [(f["level"], f["what"]) for f in problems] == [("WARN", "users"),
                                                           ("ERROR", "tls")], problems

    # Again: nothing changes, and an edited configuration is kept.
    conf = tmp_path / "etc" / "mailpair.toml"
    conf.write_text(conf.read_text().replace("mail.example.org", "mx.mine.example") +
                    "# mine\n")
    jail = tmp_path / "fail2ban" / "jail.d" / "mailpair.conf"
    jail.write_text(jail.read_text().replace("maxretry = 10", "maxretry = 3"))
    before = snapshot(tmp_path)
    r = install(tmp_path)
    assert "nothing to change" in r.stdout, r.stdout
    assert snapshot(tmp_path) == before  # the edited jail too
    assert conf.read_text().endswith("# mine\n")
    assert config.load(conf).hostname == "mx.mine.example"

    # Wrong modes and owners are put right; the key is made private.
    (tmp_path / "etc" / "users").chmod(0o644)
    os.chown(tmp_path / "etc" / "aliases", 0, 0)
    (tmp_path / "spool" / "queue").chmod(0o755)
    os.chown(tmp_path / "mail", 0, 0)
    key = tmp_path / "etc" / "tls" / "key.pem"
    key.write_text("not really a key\n")
    key.chmod(0o644)
    r = install(tmp_path)
    assert r.stdout.count("fixed ") == 5, r.stdout
    for rel, want in EXPECTED.items():
        assert owner_mode(tmp_path / rel) == want, rel
    assert owner_mode(key) == ("root", "root", "0600")
    assert conf.read_text().endswith("# mine\n")


def test_install_sh_refuses_bad_arguments(tmp_path: Path) -> None:
    for args in (["--prefix", "relative/path"], ["--etc", f"{tmp_path}/with space"],
                 ["--bogus"], ["--spool"]):
        r = subprocess.run(["bash", str(DEPLOY / "install.sh"), *args, "--no-venv"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0, args
        assert "install.sh:" in r.stderr, (args, r.stderr)
    assert list(tmp_path.iterdir()) == []


# -- the interpreter the venv is built on ---------------------------------------------------


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess:
    """argv run as a system user, through sh: setpriv keeps root's capabilities up to
    its own execve, so it could start a program that the user itself could not."""
    pw = pwd.getpwnam(user)
    return subprocess.run(
        ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--",
         "/bin/sh", "-c", 'exec "$@"', "sh", *argv],
        capture_output=True, text=True, timeout=60)


def private_python(tmp: Path) -> Path:
    """A python3 that only root can reach, as one under /root/.pyenv is."""
    private = tmp / "private"
    private.mkdir(mode=0o700)
    (private / "python3").symlink_to(os.path.realpath("/usr/bin/python3"))
    return private / "python3"


def install_venv(prefix: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--prefix", str(prefix / "opt"),
         "--etc", str(prefix / "etc"), "--spool", str(prefix / "spool"),
         "--mail", str(prefix / "mail"), "--no-systemd", "--no-fail2ban"],
        capture_output=True, text=True, timeout=300, env=env)


def need_root_and_system_python() -> None:
    if os.geteuid() != 0:
        skip_or_fail("install.sh creates system users and chowns: run the tests as root")
    if not os.access("/usr/bin/python3", os.X_OK) or shutil.which("setpriv") is None:
        skip_or_fail("needs /usr/bin/python3 and setpriv (apt-get install python3 util-linux)")


def test_install_sh_refuses_an_interpreter_the_system_users_cannot_run(tmp_path: Path) -> None:
    need_root_and_system_python()
    py = private_python(tmp_path)
    assert subprocess.run([str(py), "-c", "pass"]).returncode == 0  # root can
    prefix = tmp_path / "install"
    r = install_venv(prefix, {**os.environ, "PYTHON": str(py)})
    assert r.returncode != 0
    assert (f"install.sh: {py} (PYTHON={py}) cannot be run by the system users"
            in r.stderr), r.stderr
    assert f"{tmp_path / 'private'} is mode 700" in r.stderr, r.stderr
    assert "apt-get install python3 python3-venv" in r.stderr
    assert "PYTHON=" in r.stderr.split("\n", 1)[1]  # what to do instead
    assert not prefix.exists()  # refused before it changed anything


def test_install_sh_builds_the_venv_on_the_system_python(tmp_path: Path) -> None:
    need_root_and_system_python()
    # The first python3 on PATH is one the system users can't run (pyenv's shim).
    py = private_python(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env["PATH"] = f"{py.parent}:{env.get('PATH', '/usr/bin:/bin')}"
    assert shutil.which("python3", path=env["PATH"]) == str(py)
    # The prefix must be reachable by the system users: pytest's tmp_path is not.
    prefix = Path(tempfile.mkdtemp(prefix="mailpair-install-", dir="/tmp"))
    try:
        prefix.chmod(0o755)
        r = install_venv(prefix, env)
        assert r.returncode == 0, r.stdout + r.stderr
        venv = prefix / "opt" / "venv"
        assert "home = /usr/bin\n" in (venv / "pyvenv.cfg").read_text()
        assert "interpreter: /usr/bin/python3 (the system's python3)" in r.stdout, r.stdout
        conf = prefix / "etc" / "mailpair.toml"
        for user in ("vmail", "mailpair", "mailpair-auth"):
            ran = as_user(user, str(venv / "bin" / "mdad"), "-c", str(conf), "--check")
            assert ran.returncode == 0 and "configuration is valid" in ran.stdout, (
                user, ran.stdout + ran.stderr)

        # A venv an earlier install built on that python3 is built again.
        shutil.rmtree(venv)
        subprocess.run([str(py), "-m", "venv", "--without-pip", str(venv)], check=True)
        assert as_user("vmail", str(venv / "bin" / "python"), "-c", "pass").returncode != 0
        r = install_venv(prefix, env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "rebuilt the virtual environment" in r.stdout, r.stdout
        ran = as_user("vmail", str(venv / "bin" / "mdad"), "-c", str(conf), "--check")
        assert ran.returncode == 0, ran.stdout + ran.stderr
    finally:
        shutil.rmtree(prefix)
