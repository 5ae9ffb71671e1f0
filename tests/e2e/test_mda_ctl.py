"""mda-ctl as an administrator runs it: a separate process against a config file."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.passwords import check_password, hash_password
from common.tls import ensure_self_signed

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


# -- check ---------------------------------------------------------------------------

ME = pwd.getpwuid(os.geteuid()).pw_name
MY_GROUP = grp.getgrgid(os.getegid()).gr_name


def make_setup(ctl: Ctl, tmp: Path, extra: str = "") -> None:
    """A complete, correct set-up in tmp whose system users are the current user.

    Run as root, that is root itself, so every ownership check applies and passes.
    """
    etc = tmp / "etc"
    (etc / "tls").mkdir(parents=True, exist_ok=True)
    ensure_self_signed(etc / "tls" / "cert.pem", etc / "tls" / "key.pem", "mail.example.test")
    for d in ("spool", "spool/incoming", "spool/queue", "spool/corrupt", "mail"):
        (tmp / d).mkdir(mode=0o700, exist_ok=True)
    ctl.users.write_text(f"alice@example.test:{hash_password('pw', cheap=True)}\n")
    ctl.aliases.write_text("postmaster@example.test: alice@example.test\n")
    ctl.users.chmod(0o640)
    ctl.aliases.chmod(0o640)
    ctl.config.write_text(f"""\
hostname = "mail.example.test"
domains = ["example.test"]
[paths]
spool = "{tmp}/spool"
mail = "{tmp}/mail"
run = "{tmp}/run"
users = "{ctl.users}"
aliases = "{ctl.aliases}"
[tls]
cert = "{etc}/tls/cert.pem"
key = "{etc}/tls/key.pem"
[auth]
user = "{ME}"
group = "{MY_GROUP}"
[mta]
user = "{ME}"
group = "{MY_GROUP}"
queue_user = "{ME}"
queue_group = "{MY_GROUP}"
relay_user = "{ME}"
relay_group = "{MY_GROUP}"
[mda]
user = "{ME}"
group = "{MY_GROUP}"
lmtp_group = "{MY_GROUP}"
{extra}""")


def lines(r: subprocess.CompletedProcess, level: str) -> list[str]:
    return [x for x in r.stdout.splitlines() if x.split(" ", 1)[0] == level]


def test_check_a_good_setup(ctl: Ctl, tmp_path: Path) -> None:
    make_setup(ctl, tmp_path)
    r = ctl("check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines(r, "ERROR") == [] and lines(r, "WARN") == [], r.stdout
    assert len(lines(r, "OK")) == len(r.stdout.splitlines()) >= 8
    assert any("load together" in x for x in lines(r, "OK"))
    r = ctl("check", "--json")
    assert r.returncode == 0
    findings = json.loads(r.stdout)
    assert {f["level"] for f in findings} == {"OK"}
    assert all(set(f) == {"level", "what", "detail"} for f in findings)
    assert {"config", "users file", "aliases", "tls", "spool", "mail"} <= {
        f["what"] for f in findings}


def test_check_warns_of_a_world_readable_users_file(ctl: Ctl, tmp_path: Path) -> None:
    make_setup(ctl, tmp_path)
    ctl.users.chmod(0o644)
    r = ctl("check")
    assert r.returncode == 0, r.stdout
    (warn,) = lines(r, "WARN")
    assert str(ctl.users) in warn and "readable by everyone" in warn
    assert lines(r, "ERROR") == []


def test_check_reports_a_byte_that_is_not_utf8_with_its_line(ctl: Ctl, tmp_path: Path) -> None:
    make_setup(ctl, tmp_path)
    with open(ctl.users, "ab") as f:
        f.write(b"b\xffd@example.test:" + hash_password("pw", cheap=True).encode() + b"\n")
    with open(ctl.aliases, "ab") as f:
        f.write(b"sales@example.test: alice@example.test\n"
                b"inf\xf6@example.test: alice@example.test\n")
    r = ctl("check")
    assert r.returncode == 0, r.stdout + r.stderr
    warns = lines(r, "WARN")
    n_users = len(ctl.users.read_bytes().splitlines())
    n_aliases = len(ctl.aliases.read_bytes().splitlines())
    assert f"WARN  users: {ctl.users}:{n_users}: not valid UTF-8 (byte 0xff at column 2); " \
        "line ignored" in warns, r.stdout
    assert f"WARN  aliases: {ctl.aliases}:{n_aliases}: not valid UTF-8 (byte 0xf6 at column 4); " \
        "line ignored" in warns, r.stdout
    assert any(f"{ctl.users} has 1 bad line(s): until they are fixed the running daemons keep "
               "the last version" in w for w in warns), r.stdout
    assert any(f"{ctl.aliases} has 1 bad line(s)" in w for w in warns), r.stdout
    assert lines(r, "ERROR") == [], r.stdout
    # The other tools read it too, and keep the bad byte when they edit the file.
    r = ctl("user", "list")
    assert r.returncode == 0 and "alice@example.test" in r.stdout, r.stdout + r.stderr
    assert f"{ctl.users}:{n_users}: not valid UTF-8" in r.stderr
    r = ctl("alias", "add", "help@example.test", "alice@example.test")
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"inf\xf6@example.test: alice@example.test\n" in ctl.aliases.read_bytes()


def test_check_reports_an_unknown_config_key(ctl: Ctl, tmp_path: Path) -> None:
    make_setup(ctl, tmp_path, extra="colour = 'blue'\n")
    r = ctl("check")
    assert r.returncode == 1
    (error,) = lines(r, "ERROR")
    assert "mda.colour: unknown key" in error and str(ctl.config) in error
    r = ctl("check", "--json")
    assert r.returncode == 1
    assert [f["level"] for f in json.loads(r.stdout)] == ["ERROR"]


def test_check_reports_a_key_that_is_not_the_certificates(ctl: Ctl, tmp_path: Path) -> None:
    make_setup(ctl, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    ensure_self_signed(other / "cert.pem", other / "key.pem", "mail.example.test")
    os.replace(other / "key.pem", tmp_path / "etc" / "tls" / "key.pem")
    r = ctl("check")
    assert r.returncode == 1
    (error,) = lines(r, "ERROR")
    assert error.startswith("ERROR tls:") and "do not load together" in error


def test_check_warnings(ctl: Ctl, tmp_path: Path) -> None:
    make_setup(ctl, tmp_path)
    text = ctl.config.read_text().replace('key = "', 'self_signed = true\nkey = "')
    ctl.config.write_text(text)
    for name in ("cert.pem", "key.pem"):
        (tmp_path / "etc" / "tls" / name).unlink()
    (tmp_path / "spool" / "corrupt").rmdir()
    with open(ctl.users, "a") as f:
        f.write(f"zed@elsewhere.test:{hash_password('pw', cheap=True)}\nnot a line\n")
    with open(ctl.aliases, "a") as f:
        f.write("sales@example.test: nobody@example.test, friend@remote.test\n"
                "info@example.test: alice+info@example.test\n")
    r = ctl("check")
    assert r.returncode == 0, r.stdout
    warns = lines(r, "WARN")
    assert any("zed@elsewhere.test: elsewhere.test is not in domains" in w for w in warns)
    assert any(f"{ctl.users}:3: expected user@domain" in w for w in warns)
    assert any("sales@example.test -> nobody@example.test: no such user or alias" in w
               for w in warns)
    assert any(f"{tmp_path}/spool/corrupt does not exist: created at start" in w
               for w in warns)
    # What a bad line means for the running daemons is said once.
    assert any(f"{ctl.users} has 1 bad line(s)" in w for w in warns)
    assert len(warns) == 5, r.stdout  # a remote target and a subaddress are fine
    assert any("made at start (tls.self_signed)" in x for x in lines(r, "OK"))


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership is only checked as root")
def test_check_as_root_reports_missing_users_and_unreadable_files(
        ctl: Ctl, tmp_path: Path) -> None:
    make_setup(ctl, tmp_path)
    text = ctl.config.read_text()
    # The auth processes as nobody:nogroup cannot read root:root 0640 files.
    text = text.replace(f'[auth]\nuser = "{ME}"\ngroup = "{MY_GROUP}"',
                        '[auth]\nuser = "nobody"\ngroup = "nogroup"')
    text = text.replace(f'[mta]\nuser = "{ME}"', '[mta]\nuser = "no-such-user-mp"')
    ctl.config.write_text(text)
    r = ctl("check")
    assert r.returncode == 1
    errors = lines(r, "ERROR")
    assert any("mta.user: the user 'no-such-user-mp' does not exist" in e for e in errors)
    assert any(str(ctl.users) in e and "cannot be read by auth.user nobody" in e
               for e in errors)
    assert any(str(ctl.aliases) in e and "cannot be read by auth.user nobody" in e
               for e in errors)
    os.chown(ctl.users, 0, grp.getgrnam("nogroup").gr_gid)
    r = ctl("check")
    assert not any(str(ctl.users) in e for e in lines(r, "ERROR")), r.stdout


# -- mailbox ---------------------------------------------------------------------------


def put(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


@pytest.fixture
def mailboxes(ctl: Ctl, tmp_path: Path) -> Path:
    """alice's Maildir, made by hand: INBOX, .Sent and .Archive.2024."""
    make_setup(ctl, tmp_path)
    with open(ctl.users, "a") as f:
        f.write(f"bob@example.test:{hash_password('pw', cheap=True)}\n")
    md = tmp_path / "mail" / "example.test" / "alice" / "Maildir"
    put(md / "new" / "1.M1.host,S=10", 10)
    put(md / "new" / "2.M2.host,S=20", 20)
    put(md / "cur" / "3.M3.host:2,S", 30)
    put(md / "cur" / "4.M4.host:2,FS", 40)
    put(md / "cur" / "5.M5.host:2,R", 50)  # answered but not seen
    put(md / "tmp" / "6.M6.host", 1000)  # not delivered yet: not counted
    put(md / "new" / ".nfs0001", 1000)  # dot-files are not messages
    put(md / "dovecot-uidlist", 1000)
    put(md / ".Sent" / "cur" / "7.M7.host:2,S", 60)
    (md / ".Sent" / "new").mkdir()
    put(md / ".Archive.2024" / "new" / "8.M8.host", 70)
    put(md / ".Archive.2024" / "cur" / "9.M9.host", 80)  # no info at all: unseen
    return md


def test_mailbox_list(ctl: Ctl, mailboxes: Path) -> None:
    r = ctl("mailbox", "list", "alice@example.test", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [
        {"folder": "INBOX", "messages": 5, "new": 2, "cur": 3, "unseen": 3, "bytes": 150},
        {"folder": "Archive/2024", "messages": 2, "new": 1, "cur": 1, "unseen": 2,
         "bytes": 150},
        {"folder": "Sent", "messages": 1, "new": 0, "cur": 1, "unseen": 0, "bytes": 60},
    ]
    r = ctl("mailbox", "list", "Alice@Example.test")
    assert r.returncode == 0, r.stderr
    rows = [x.split() for x in r.stdout.splitlines()]
    assert rows == [["FOLDER", "NEW", "CUR", "UNSEEN", "BYTES"],
                    ["INBOX", "2", "3", "3", "150"],
                    ["Archive/2024", "1", "1", "2", "150"],
                    ["Sent", "0", "1", "0", "60"]]


def test_mailbox_stats(ctl: Ctl, mailboxes: Path) -> None:
    r = ctl("mailbox", "stats", "alice@example.test", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"address": "alice@example.test", "messages": 8,
                                    "unseen": 5, "bytes": 360, "folders": 3}
    r = ctl("mailbox", "stats", "alice@example.test")
    assert r.returncode == 0, r.stderr
    assert [x.split() for x in r.stdout.splitlines()] == [
        ["messages", "8"], ["unseen", "5"], ["bytes", "360"], ["folders", "3"]]
    # Reading a message moves it to cur/ with the S flag: one fewer unseen.
    (mailboxes / "new" / "1.M1.host,S=10").rename(mailboxes / "cur" / "1.M1.host,S=10:2,S")
    r = ctl("mailbox", "stats", "alice@example.test", "--json")
    assert json.loads(r.stdout)["unseen"] == 4


def test_mailbox_refusals(ctl: Ctl, mailboxes: Path, tmp_path: Path) -> None:
    for command in ("list", "stats"):
        r = ctl("mailbox", command, "nobody@example.test")
        assert r.returncode == 1
        assert "no such user: nobody@example.test" in r.stderr
        r = ctl("mailbox", command, "bob@example.test")
        assert r.returncode == 1
        assert "bob@example.test has no mailbox yet" in r.stderr
        r = ctl("mailbox", command, "not-an-address")
        assert r.returncode == 2
    # A Maildir that is a symlink out of paths.mail is not read.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(mailboxes, elsewhere)
    bob = tmp_path / "mail" / "example.test" / "bob"
    bob.mkdir()
    (bob / "Maildir").symlink_to(elsewhere)
    r = ctl("mailbox", "list", "bob@example.test")
    assert r.returncode == 1
    assert "leads outside paths.mail" in r.stderr and r.stdout == ""


def test_mailbox_list_shows_folder_names_as_clients_see_them(bare_stack) -> None:
    """A folder made over IMAP as "Entwürfe" is `.Entw&APw-rfe` on disk; mda-ctl says Entwürfe."""
    bare_stack.start("mdad")
    c = bare_stack.imap()
    # imaplib sends names as given: the client's modified UTF-7, as RFC 3501 wants.
    for name in ("Entw&APw-rfe", "Archiv/&ZeVnLIqe-", "R&-D"):
        typ, data = c.create(f'"{name}"')
        assert typ == "OK", data
    typ, data = c.append('"Entw&APw-rfe"', None, None, b"Subject: draft\r\n\r\nx\r\n")
    assert typ == "OK", data
    c.logout()
    md = bare_stack.maildir("alice@example.test")
    assert (md / ".Entw&APw-rfe").is_dir() and (md / ".Archiv.&ZeVnLIqe-").is_dir()
    run = [sys.executable, "-m", "mda.ctl", "-c", str(bare_stack.config), "mailbox", "list",
           "alice@example.test"]
    r = subprocess.run([*run, "--json"], capture_output=True, text=True, encoding="utf-8",
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    got = {f["folder"]: f["messages"] for f in json.loads(r.stdout)}
    assert got["Entwürfe"] == 1 and got["Archiv/日本語"] == 0 and got["R&D"] == 0
    assert not any("&" in n and n != "R&D" for n in got), got
    r = subprocess.run(run, capture_output=True, text=True, encoding="utf-8", cwd=ROOT,
                       timeout=60, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert r.returncode == 0, r.stderr
    assert "Entwürfe" in [line.split()[0] for line in r.stdout.splitlines()], r.stdout
