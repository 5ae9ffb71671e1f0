"""Which MAIL FROM a login owns: common/senders.py and the lookup's "sender" request."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from common import config
from common.senders import owns, refusal
from common.userservice import UserService

HASH = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
ALICE = "alice@example.org"


def test_owns_itself_and_what_reaches_it():
    assert owns(ALICE, ALICE, (), ())
    assert owns(ALICE, "postmaster@example.org", (ALICE,), ())
    assert owns(ALICE, "team@example.org", ("bob@example.org", ALICE), ())
    assert not owns(ALICE, "bob@example.org", ("bob@example.org",), ())
    assert not owns(ALICE, "x@remote.example", (), ())


@pytest.mark.parametrize(("allowed", "sender", "ok"), [
    (["boss@corp.example"], "boss@corp.example", True),
    (["Boss@Corp.Example"], "boss@corp.example", True),
    (["boss@corp.example"], "boss2@corp.example", False),
    (["@corp.example"], "anyone@corp.example", True),
    (["@corp.example"], "anyone@sub.corp.example", False),
    (["@corp.example"], "corp.example@other.example", False),
    (["*"], "ceo@bank.example", True),
    ([], "ceo@bank.example", False),
])
def test_send_as(allowed, sender, ok):
    assert owns(ALICE, sender, (), allowed) is ok


def test_refusal_is_postfix_wording():
    assert refusal("bob@example.org", ALICE) == (
        "553 5.7.1 <bob@example.org>: Sender address rejected: not owned by user alice@example.org")


@pytest.fixture
def service(tmp_path: Path) -> UserService:
    users, aliases = tmp_path / "users", tmp_path / "aliases"
    users.write_text(f"{ALICE}:{HASH}\nbob@example.org:{HASH}\n")
    aliases.write_text("postmaster@example.org: alice@example.org\n"
                       "team@example.org: alice@example.org, bob@example.org\n"
                       "chain@example.org: postmaster@example.org\n"
                       "out@example.org: someone@remote.example\n")
    cfg = config.from_dict({
        "hostname": "mail.example.org", "domains": ["example.org"],
        "paths": {"users": str(users), "aliases": str(aliases)},
        "mta": {"send_as": {"Alice@Example.org": ["@corp.example"]}},
    })
    return UserService(SimpleNamespace(cfg=cfg))  # type: ignore[arg-type]


@pytest.mark.parametrize(("login", "sender", "ok"), [
    (ALICE, ALICE, True),
    (ALICE, "ALICE@example.org", True),
    (ALICE, "alice+lists@example.org", True),
    (ALICE, "postmaster@example.org", True),
    (ALICE, "chain@example.org", True),  # an alias of an alias of alice
    (ALICE, "team@example.org", True),
    (ALICE, "x@corp.example", True),  # send_as, whose key is written in capitals
    (ALICE, "bob@example.org", False),
    (ALICE, "bob+alice@example.org", False),
    (ALICE, "out@example.org", False),  # reaches a remote address, not alice
    (ALICE, "nobody@example.org", False),
    ("bob@example.org", "postmaster@example.org", False),
    ("bob@example.org", "team@example.org", True),
    ("bob@example.org", "x@corp.example", False),
])
def test_the_sender_request(service, login, sender, ok):
    reply = asyncio.run(service.sender({"login": login, "sender": sender}))
    assert reply == {"allowed": ok}
    assert "sender" in service.handlers()


def test_a_catch_all_that_reaches_the_login_owns_the_unknown_addresses(tmp_path: Path):
    users, aliases = tmp_path / "users", tmp_path / "aliases"
    users.write_text(f"{ALICE}:{HASH}\nbob@example.org:{HASH}\n")
    aliases.write_text("@example.org: alice@example.org\n")
    cfg = config.from_dict({"hostname": "mail.example.org", "domains": ["example.org"],
                            "paths": {"users": str(users), "aliases": str(aliases)}})
    service = UserService(SimpleNamespace(cfg=cfg))  # type: ignore[arg-type]

    def allowed(sender: str) -> bool:
        return asyncio.run(service.sender({"login": ALICE, "sender": sender}))["allowed"]

    assert allowed("anything@example.org")
    assert not allowed("bob@example.org")  # a mailbox of its own: the catch-all is not used
