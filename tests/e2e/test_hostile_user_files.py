"""A users or aliases file with a bad byte or line, changed under the running daemons.

Before, one byte that is not UTF-8 made every login `NO [UNAVAILABLE]` and
every RCPT `451`. Now the bad line is logged with its file and number, and
the last good table stays in service until the file is fixed: existing
users still log in (IMAP, SMTP AUTH) and still get mail.
"""

from __future__ import annotations

import os
import smtplib
from pathlib import Path

from common.passwords import hash_password
from tests.conftest import PASSWORD, Stack, wait_for

ALICE = "alice@example.test"
DAVE = "dave@example.test"


def replace(path: Path, data: bytes) -> None:
    """An atomic replace, as an editor or mda-ctl makes it."""
    tmp = path.with_name(f".{path.name}.test.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def rcpt(stack: Stack, address: str) -> int:
    with stack.smtp() as s:
        s.ehlo()
        assert s.mail("someone@remote.test")[0] == 250
        return s.rcpt(address)[0]


def imap_login(stack: Stack, user: str) -> str:
    c = stack.imap(None)
    try:
        return c.login(user, PASSWORD)[0]
    finally:
        c.logout()


def smtp_auth(stack: Stack, user: str) -> int:
    with stack.submission(None) as s:
        try:
            return s.login(user, PASSWORD)[0]
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code


def logged(stack: Stack, text: str) -> bool:
    return text in stack.log("mdad") and text in stack.log("mtad")


def test_a_bad_byte_in_the_users_file_keeps_the_last_good_table(stack: Stack) -> None:
    users = stack.root / "etc" / "users"
    good = users.read_bytes()
    assert imap_login(stack, ALICE) == "OK"
    dave = f"{DAVE}:{hash_password(PASSWORD, cheap=True)}\n".encode()
    bad_line = len(good.splitlines()) + 2
    replace(users, good + dave + b"d\xffve@example.test:$argon2id$x\n")

    assert imap_login(stack, ALICE) == "OK"
    assert smtp_auth(stack, ALICE) == 235
    assert rcpt(stack, ALICE) == 250
    # Dave came in the same change as the bad line: not yet in service.
    assert rcpt(stack, DAVE) == 550
    where = f"{users}:{bad_line}: not valid UTF-8 (byte 0xff at column 2)"
    wait_for(lambda: logged(stack, where), 60, "the bad line in both daemons' logs")
    assert "keeping the last good version in service" in stack.log("mdad")
    assert "keeping the last good version in service" in stack.log("mtad")

    # Fixed: the new table is served, dave included.
    replace(users, good + dave)
    assert imap_login(stack, DAVE) == "OK"
    assert smtp_auth(stack, DAVE) == 235
    assert rcpt(stack, DAVE) == 250
    assert imap_login(stack, ALICE) == "OK"


def test_a_bad_byte_in_the_aliases_file_keeps_the_last_good_table(stack: Stack) -> None:
    aliases = stack.root / "etc" / "aliases"
    good = aliases.read_bytes()
    assert rcpt(stack, "postmaster@example.test") == 250
    bad_line = len(good.splitlines()) + 1
    replace(aliases, good + b"sales\xc3@example.test: alice@example.test\n"
            + b"help@example.test: alice@example.test\n")
    assert rcpt(stack, "postmaster@example.test") == 250
    assert rcpt(stack, ALICE) == 250
    assert rcpt(stack, "help@example.test") == 550  # in the refused change
    where = f"{aliases}:{bad_line}: not valid UTF-8 (byte 0xc3 at column 6)"
    wait_for(lambda: where in stack.log("mtad"), 60, "the bad line in mtad's log")

    replace(aliases, good + b"help@example.test: alice@example.test\n")
    assert rcpt(stack, "help@example.test") == 250


def test_a_bad_line_at_start_up_leaves_the_good_lines_in_service(bare_stack: Stack) -> None:
    stack = bare_stack
    users = stack.root / "etc" / "users"
    with open(users, "ab") as f:
        f.write(b"\xff\xfe not a user at all\n")
    stack.start("mdad")
    stack.start("mtad")
    assert imap_login(stack, ALICE) == "OK"
    assert smtp_auth(stack, ALICE) == 235
    assert rcpt(stack, ALICE) == 250
    n = len(users.read_bytes().splitlines())
    wait_for(lambda: logged(stack, f"{users}:{n}: not valid UTF-8"), 60, "the bad line logged")
    assert "serving its good lines only" in stack.log("mdad")
