"""mda-ctl as an administrator runs it: a separate process against a config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.passwords import check_password

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "mda-ctl"


class Ctl:
    def __init__(self, tmp: Path) -> None:
        self.users = tmp / "etc" / "users"
        self.aliases = tmp / "etc" / "aliases"
        self.config = tmp / "mailpair.toml"
        self.config.write_text(
            'hostname = "mail.example.test"\n'
            'domains = ["example.test"]\n'
            "[paths]\n"
            f'users = "{self.users}"\n'
            f'aliases = "{self.aliases}"\n'
        )

    def __call__(self, *args: str, stdin: str = "", env: dict | None = None,
                 config: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "mda.ctl"]
        if config:
            cmd += ["-c", str(self.config)]
        # A new session has no controlling terminal: the password prompt reads stdin.
        return subprocess.run([*cmd, *args], input=stdin, capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60,
                              start_new_session=True)

    def user_lines(self) -> list[str]:
        return self.users.read_text().splitlines()

    def hash_of(self, address: str) -> str:
        (line,) = [x for x in self.user_lines() if x.startswith(address + ":")]
        return line.split(":")[1]


@pytest.fixture
def ctl(tmp_path: Path) -> Ctl:
    return Ctl(tmp_path)


def test_user_add_list_passwd_del(ctl: Ctl) -> None:
    r = ctl("user", "add", "Alice@Example.test", "--password-stdin", stdin="first secret\n")
    assert r.returncode == 0, r.stderr
    assert "added alice@example.test" in r.stdout
    assert r.stderr == ""
    first = ctl.hash_of("alice@example.test")
    assert first.startswith("$argon2id$")
    assert check_password(first, "first secret")
    assert not check_password(first, "first secret\n")

    r = ctl("user", "add", "bob@example.test", "--password-stdin", stdin="bob pw\n")
    assert r.returncode == 0, r.stderr
    assert [x.split(":")[0] for x in ctl.user_lines()] == ["alice@example.test",
                                                           "bob@example.test"]

    r = ctl("user", "add", "alice@example.test", "--password-stdin", stdin="again\n")
    assert r.returncode == 1
    assert "already exists" in r.stderr
    assert ctl.hash_of("alice@example.test") == first

    r = ctl("user", "list")
    assert r.returncode == 0
    assert r.stdout.split() == ["alice@example.test", "bob@example.test"]
    assert "$argon2" not in r.stdout
    r = ctl("user", "list", "--json")
    assert json.loads(r.stdout) == [
        {"address": "alice@example.test", "fields": {}},
        {"address": "bob@example.test", "fields": {}},
    ]

    r = ctl("user", "passwd", "alice@example.test", "--password-stdin", stdin="second\n")
    assert r.returncode == 0, r.stderr
    second = ctl.hash_of("alice@example.test")
    assert second != first
    assert check_password(second, "second")
    assert not check_password(second, "first secret")

    r = ctl("user", "del", "alice@example.test")
    assert r.returncode == 0, r.stderr
    assert [x.split(":")[0] for x in ctl.user_lines()] == ["bob@example.test"]

    r = ctl("user", "del", "alice@example.test")
    assert r.returncode == 1
    assert "no such user: alice@example.test" in r.stderr
    r = ctl("user", "passwd", "alice@example.test", "--password-stdin", stdin="x\n")
    assert r.returncode == 1
    assert "no such user" in r.stderr


def test_passwd_keeps_further_fields(ctl: Ctl) -> None:
    ctl.users.parent.mkdir(parents=True)
    ctl.users.write_text("# comment stays\ncarol@example.test:$argon2id$old:quota=1G\n")
    r = ctl("user", "passwd", "carol@example.test", "--password-stdin", stdin="new\n")
    assert r.returncode == 0, r.stderr
    lines = ctl.user_lines()
    assert lines[0] == "# comment stays"
    address, password_hash, quota = lines[1].split(":")
    assert (address, quota) == ("carol@example.test", "quota=1G")
    assert check_password(password_hash, "new")
    r = ctl("user", "list", "--json")
    assert json.loads(r.stdout) == [{"address": "carol@example.test",
                                     "fields": {"quota": "1G"}}]


def test_user_add_refuses_bad_input(ctl: Ctl) -> None:
    r = ctl("user", "add", "not-an-address", "--password-stdin", stdin="pw\n")
    assert r.returncode == 2
    assert "not an address" in r.stderr
    r = ctl("user", "add", "dave@example.test", "--password-stdin", stdin="\n")
    assert r.returncode == 1
    assert "empty" in r.stderr
    assert not ctl.users.exists()
    r = ctl("user", "add")
    assert r.returncode == 2


def test_user_add_warns_about_a_foreign_domain(ctl: Ctl) -> None:
    r = ctl("user", "add", "eve@elsewhere.test", "--password-stdin", stdin="pw\n")
    assert r.returncode == 0
    assert "warning: elsewhere.test is not in the domains" in r.stderr
    assert ctl.user_lines()[0].startswith("eve@elsewhere.test:$argon2id$")


def test_password_prompt_asks_twice(ctl: Ctl) -> None:
    r = ctl("user", "add", "frank@example.test", stdin="typed\ntyped\n")
    assert r.returncode == 0, r.stderr
    assert check_password(ctl.hash_of("frank@example.test"), "typed")


def test_alias_add_list_del(ctl: Ctl) -> None:
    r = ctl("alias", "add", "postmaster@example.test", "alice@example.test")
    assert r.returncode == 0, r.stderr
    assert ctl.aliases.read_text() == "postmaster@example.test: alice@example.test\n"

    r = ctl("alias", "add", "Team@example.test", "alice@example.test", "friend@remote.test")
    assert r.returncode == 0, r.stderr
    r = ctl("alias", "add", "team@example.test", "bob@example.test", "alice@example.test")
    assert r.returncode == 0, r.stderr
    r = ctl("alias", "add", "@example.test", "alice@example.test")
    assert r.returncode == 0, r.stderr
    assert ctl.aliases.read_text().splitlines() == [
        "postmaster@example.test: alice@example.test",
        "team@example.test: alice@example.test, friend@remote.test, bob@example.test",
        "@example.test: alice@example.test",
    ]

    r = ctl("alias", "list")
    assert r.returncode == 0
    assert r.stdout.splitlines() == ctl.aliases.read_text().splitlines()
    r = ctl("alias", "list", "--json")
    assert json.loads(r.stdout)[1] == {
        "address": "team@example.test",
        "targets": ["alice@example.test", "friend@remote.test", "bob@example.test"],
    }

    r = ctl("alias", "del", "team@example.test")
    assert r.returncode == 0, r.stderr
    assert "team@" not in ctl.aliases.read_text()
    r = ctl("alias", "del", "team@example.test")
    assert r.returncode == 1
    assert "no such alias" in r.stderr

    r = ctl("alias", "add", "x@example.test", "not an address")
    assert r.returncode == 2
    r = ctl("alias", "add", "x@example.test")
    assert r.returncode == 2
    assert "x@example.test" not in ctl.aliases.read_text()


def test_deleting_an_alias_target_warns(ctl: Ctl) -> None:
    assert ctl("user", "add", "gina@example.test", "--password-stdin", stdin="pw\n").returncode == 0
    assert ctl("alias", "add", "info@example.test", "gina@example.test").returncode == 0
    r = ctl("user", "del", "gina@example.test")
    assert r.returncode == 0
    assert "still an alias target of info@example.test" in r.stderr


def test_config_from_the_environment(ctl: Ctl) -> None:
    r = ctl("alias", "add", "abuse@example.test", "root@example.test",
            env={"MAILPAIR_CONFIG": str(ctl.config)}, config=False)
    assert r.returncode == 0, r.stderr
    assert ctl.aliases.exists()


def test_config_problems_exit_78(ctl: Ctl, tmp_path: Path) -> None:
    ctl.config.write_text("[paths]\nusers = 5\n")
    r = ctl("user", "list")
    assert r.returncode == 78
    assert "paths.users" in r.stderr and str(ctl.config) in r.stderr
    r = ctl("-c", str(tmp_path / "missing.toml"), "user", "list", config=False)
    assert r.returncode == 78
    assert "cannot read" in r.stderr


@pytest.mark.skipif(not SCRIPT.exists(), reason="mda-ctl is not installed in this environment")
def test_console_script(ctl: Ctl) -> None:
    r = subprocess.run([str(SCRIPT), "-c", str(ctl.config), "alias", "list"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    r = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "user" in r.stdout and "alias" in r.stdout
