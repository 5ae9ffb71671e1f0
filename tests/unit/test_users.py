"""common/users.py: the users and aliases files, address resolution, safe edits."""

import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from common.users import (
    MAX_ALIAS_DEPTH,
    Resolution,
    UserDB,
    atomic_write,
    edit_lines,
    line_address,
    locked,
    parse_aliases,
    parse_users,
    read_text,
)

HASH = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def test_parse_users_good_lines() -> None:
    text = (
        "# users\n"
        "\n"
        f"alice@example.org:{HASH}\n"
        f"  Bob@Example.ORG:{HASH}:quota=1G:note=x  \n"
    )
    users, problems = parse_users(text)
    assert problems == []
    assert list(users) == ["alice@example.org", "bob@example.org"]
    assert users["alice@example.org"].password_hash == HASH
    assert users["alice@example.org"].fields == {}
    assert users["bob@example.org"].fields == {"quota": "1G", "note": "x"}


def test_parse_users_bad_lines_are_reported_with_their_line() -> None:
    text = (
        f"alice@example.org:{HASH}\n"
        "no-colon-here\n"
        "carol@example.org:plaintext\n"
        f"not an address:{HASH}\n"
        f"alice@example.org:{HASH}x\n"
        f"dave@example.org:{HASH}\n"
    )
    users, problems = parse_users(text, "users")
    assert list(users) == ["alice@example.org", "dave@example.org"]
    assert users["alice@example.org"].password_hash == HASH  # the first one counts
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4", "5"]
    assert "listed twice" in problems[3]
    assert all(p.startswith("users:") for p in problems)
    # What follows the address may be a hash or a password: it is not shown.
    assert problems[0] == "users:2: expected user@domain:$argon2id$..., got a line without ':'"
    assert problems[1] == "users:3: expected user@domain:$argon2id$..., got 'carol@example.org':..."
    assert "plaintext" not in "".join(problems)


def test_parse_aliases() -> None:
    text = (
        "# aliases\n"
        "postmaster@example.org: alice@example.org\n"
        "team@example.org: alice@example.org, Bob@Example.org ,x@remote.net  # comment\n"
        "@example.org: alice@example.org\n"
        "team@example.org: carol@example.org\n"
    )
    aliases, problems = parse_aliases(text)
    assert problems == []
    assert aliases == {
        "postmaster@example.org": ["alice@example.org"],
        "team@example.org": [
            "alice@example.org", "bob@example.org", "x@remote.net", "carol@example.org",
        ],
        "@example.org": ["alice@example.org"],
    }


def test_parse_aliases_bad_lines() -> None:
    text = (
        "no colon\n"
        "empty@example.org:\n"
        "bad@example.org: not an address\n"
        "@: alice@example.org\n"
        "ok@example.org: alice@example.org\n"
    )
    aliases, problems = parse_aliases(text, "aliases")
    assert aliases == {"ok@example.org": ["alice@example.org"]}
    assert [p.split(":")[1] for p in problems] == ["1", "2", "3", "4"]
    assert "not an address" in problems[2]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    users = tmp_path / "users"
    aliases = tmp_path / "aliases"
    users.write_text(
        f"alice@example.org:{HASH}\n"
        f"bob@example.org:{HASH}\n"
        f"carol@example.net:{HASH}\n"
    )
    aliases.write_text(
        "postmaster@example.org: alice@example.org\n"
        "team@example.org: alice@example.org, bob@example.org, friend@remote.test\n"
        "bob@example.org: bob@example.org, alice@example.org\n"
        "loop1@example.org: loop2@example.org, carol@example.net\n"
        "loop2@example.org: loop1@example.org\n"
        "selfloop1@example.org: selfloop2@example.org\n"
        "selfloop2@example.org: selfloop1@example.org\n"
        "@example.org: postmaster@example.org\n"
        "sales@example.net: team@example.org\n"
    )
    return users, aliases


@pytest.fixture
def db(files: tuple[Path, Path]) -> UserDB:
    return UserDB(*files, ["example.org", "example.net"])


def test_resolve_local_user(db: UserDB) -> None:
    assert db.resolve("alice@example.org") == Resolution("local", ("alice@example.org",))
    assert db.resolve(" Alice@EXAMPLE.org ") == Resolution("local", ("alice@example.org",))


def test_resolve_alias_to_several_targets_including_remote(db: UserDB) -> None:
    r = db.resolve("team@example.org")
    assert r.kind == "local"
    # bob is itself an alias that keeps a copy for bob and adds alice; no duplicates.
    assert r.targets == ("alice@example.org", "bob@example.org", "friend@remote.test")


def test_resolve_alias_chain_across_domains(db: UserDB) -> None:
    r = db.resolve("sales@example.net")
    assert r == Resolution(
        "local", ("alice@example.org", "bob@example.org", "friend@remote.test")
    )


def test_resolve_catch_all(db: UserDB) -> None:
    assert db.resolve("anyone@example.org") == Resolution("local", ("alice@example.org",))
    # A user or an alias wins over the catch-all.
    assert db.resolve("bob@example.org").targets == ("bob@example.org", "alice@example.org")


def test_resolve_unknown(db: UserDB) -> None:
    assert db.resolve("nobody@example.net") == Resolution("unknown")
    assert db.resolve("nobody+tag@example.net").kind == "unknown"


def test_resolve_remote_domain(db: UserDB) -> None:
    assert db.resolve("Someone@Elsewhere.test") == Resolution(
        "remote", ("someone@elsewhere.test",)
    )


def test_resolve_subaddress(db: UserDB) -> None:
    assert db.resolve("carol+lists@example.net") == Resolution("local", ("carol@example.net",))
    assert db.resolve("Carol+Lists@example.net").targets == ("carol@example.net",)
    # The alias of the base address applies to its sub-addresses too.
    assert db.resolve("team+x@example.org").targets == (
        "alice@example.org", "bob@example.org", "friend@remote.test",
    )


def test_alias_loop_terminates_and_keeps_real_targets(db: UserDB) -> None:
    assert db.resolve("loop1@example.org") == Resolution("local", ("carol@example.net",))
    assert db.resolve("loop2@example.org") == Resolution("local", ("carol@example.net",))


def test_alias_loop_with_no_mailbox_is_unknown(db: UserDB) -> None:
    # Accepting it would take mail that goes nowhere; the sender must hear instead.
    assert db.resolve("selfloop1@example.org") == Resolution("unknown")
    assert db.resolve("selfloop2@example.org") == Resolution("unknown")


def test_long_alias_chain_stops(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(f"end@example.org:{HASH}\n")
    aliases = tmp_path / "aliases"
    n = MAX_ALIAS_DEPTH + 5
    aliases.write_text(
        "".join(f"a{i}@example.org: a{i + 1}@example.org\n" for i in range(n))
        + f"a{n}@example.org: end@example.org\n"
    )
    db = UserDB(users, aliases, ["example.org"])
    assert db.resolve(f"a{n - 3}@example.org").targets == ("end@example.org",)
    assert db.resolve("a0@example.org") == Resolution("unknown")  # beyond the depth limit


def test_missing_files_mean_no_users(tmp_path: Path) -> None:
    db = UserDB(tmp_path / "users", tmp_path / "aliases", ["example.org"])
    assert db.users == {}
    assert db.resolve("alice@example.org") == Resolution("unknown")


def test_reload_after_the_files_change(files: tuple[Path, Path], db: UserDB) -> None:
    users, aliases = files
    assert db.get("dave@example.org") is None
    assert db.get("ALICE@example.org") is not None
    edit_lines(users, lambda lines: [*lines, f"dave@example.org:{HASH}"])
    assert db.get("dave@example.org") is not None
    edit_lines(users, lambda lines: [x for x in lines if line_address(x) != "alice@example.org"])
    assert db.get("alice@example.org") is None
    edit_lines(aliases, lambda lines: ["@example.org: dave@example.org"])
    assert db.resolve("postmaster@example.org").targets == ("dave@example.org",)


def test_reload_sees_an_in_place_rewrite_of_the_same_size(
    files: tuple[Path, Path], db: UserDB
) -> None:
    users, _ = files
    assert db.get("bob@example.org") is not None
    text = users.read_text().replace("bob@", "bib@")
    st = users.stat()
    users.write_text(text)
    os.utime(users, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert db.get("bob@example.org") is None
    assert db.get("bib@example.org") is not None


def test_edit_lines_creates_and_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "users"
    edit_lines(path, lambda lines: [*lines, "one"])
    assert path.read_text() == "one\n"
    assert (path.stat().st_mode & 0o777) == 0o640
    path.chmod(0o600)
    before = path.stat().st_ino
    with path.open() as reader:
        edit_lines(path, lambda lines: [*lines, "two"])
        assert reader.read() == "one\n"  # an open reader keeps the old file whole
    assert path.read_text() == "one\ntwo\n"
    assert path.stat().st_ino != before  # replaced by rename, not rewritten in place
    assert (path.stat().st_mode & 0o777) == 0o600  # the mode is kept
    assert sorted(p.name for p in path.parent.iterdir()) == ["users", "users.lock"]


def test_edit_lines_leaves_the_file_alone_when_the_change_fails(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("keep\n")

    def change(lines: list[str]) -> list[str]:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        edit_lines(path, change)
    assert path.read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users", "users.lock"]


def test_atomic_write_cleans_up_when_it_fails(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    (target / "child").mkdir(parents=True)
    with pytest.raises(OSError):
        atomic_write(target, "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir-in-the-way"]


def test_concurrent_edits_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users"
    per_thread = 25

    def worker(name: str) -> None:
        for i in range(per_thread):
            edit_lines(path, lambda lines, i=i: [*lines, f"{name}{i}"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert sorted(lines) == sorted(f"{n}{i}" for n in "ab" for i in range(per_thread))


def test_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "users"
    got_it = threading.Event()

    def other() -> None:
        with locked(path):
            got_it.set()

    with locked(path):
        t = threading.Thread(target=other)
        t.start()
        assert not got_it.wait(0.2)  # waits for us
    t.join(5)
    assert got_it.is_set()


def test_line_address() -> None:
    assert line_address(f"Alice@Example.org:{HASH}") == "alice@example.org"
    assert line_address("  # comment") is None
    assert line_address("   ") is None
    assert line_address("@example.org: x@example.org") == "@example.org"


# A bad byte or a bad line: logged with its line, and the last good table kept.


def test_a_line_that_is_not_utf8_is_reported_and_the_others_read(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(f"alice@example.org:{HASH}\n".encode()
                     + b"b\xffb@example.org:" + HASH.encode() + b"\n"
                     + f"carol@example.org:{HASH}\n".encode())
    users, problems = parse_users(read_text(path), "users")
    assert list(users) == ["alice@example.org", "carol@example.org"]
    assert problems == ["users:2: not valid UTF-8 (byte 0xff at column 2); line ignored"]
    aliases, problems = parse_aliases("a@example.org: b@example.org\nc\udcc3@example.org: b\n",
                                      "aliases")
    assert aliases == {"a@example.org": ["b@example.org"]}
    assert problems == ["aliases:2: not valid UTF-8 (byte 0xc3 at column 2); line ignored"]


def test_edit_lines_keeps_a_bad_byte_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_bytes(b"b\xffb@example.org:x\n")
    edit_lines(path, lambda lines: [*lines, f"dave@example.org:{HASH}"])
    assert path.read_bytes() == b"b\xffb@example.org:x\n" + f"dave@example.org:{HASH}\n".encode()


def events(logs: list[dict]) -> list[str]:
    return [e["event"] for e in logs]


def test_a_changed_file_with_problems_keeps_the_last_good_table(
        files: tuple[Path, Path], db: UserDB) -> None:
    users, aliases = files
    assert db.get("alice@example.org") is not None
    good = users.read_bytes()
    # A new user and a typo in the same change: nothing of it is taken.
    users.write_bytes(good + f"dave@example.org:{HASH}\n".encode() + b"\xff\n")
    with capture_logs() as logs:
        for _ in range(3):  # lookups after one change: logged once
            assert db.get("alice@example.org") is not None
            assert db.get("dave@example.org") is None
    assert events(logs) == ["bad line", "file has bad lines: keeping the last good version "
                            "in service until it is fixed"]
    assert logs[0]["problem"] == f"{users}:5: not valid UTF-8 (byte 0xff at column 1); line ignored"
    assert logs[1]["file"] == str(users) and logs[1]["log_level"] == "error"
    # A line of the wrong shape counts the same.
    users.write_bytes(good + b"dave@example.org:plaintext\n")
    with capture_logs() as logs:
        assert db.get("alice@example.org") is not None and db.get("dave@example.org") is None
    assert events(logs)[-1].startswith("file has bad lines: keeping")
    # Fixed: the new table is served.
    users.write_bytes(good + f"dave@example.org:{HASH}\n".encode())
    with capture_logs() as logs:
        assert db.get("dave@example.org") is not None
    assert events(logs) == ["loaded"]
    # The aliases file follows the same rule.
    aliases.write_bytes(aliases.read_bytes() + b"new@example.org: alice@example.org\n\xfe\n")
    assert db.resolve("postmaster@example.org").kind == "local"
    assert db.resolve("new@example.org").targets == ("alice@example.org",)  # the catch-all's


def test_at_start_up_the_good_lines_are_served(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_bytes(f"alice@example.org:{HASH}\n".encode() + b"\xff\n")
    with capture_logs() as logs:
        db = UserDB(users, tmp_path / "aliases", ["example.org"])  # read at once
    assert events(logs) == ["bad line", "file has bad lines: serving its good lines only"]
    assert db.get("alice@example.org") is not None
    # Still no clean version: a later change with problems is served too, so
    # users can still be added while the bad line waits for its fix.
    users.write_bytes(users.read_bytes() + f"bob@example.org:{HASH}\n".encode())
    assert db.get("bob@example.org") is not None
