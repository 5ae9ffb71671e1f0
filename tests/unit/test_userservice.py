"""common/userservice.py's auth request: what is hashed, refused, counted and logged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from common import config
from common.child import ChildContext
from common.passwords import Verifier, hash_password
from common.userservice import UserService
from tests.conftest import config_text

ALICE, PASSWORD = "alice@example.test", "pw"


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "users").write_text(f"{ALICE}:{hash_password(PASSWORD, cheap=True)}\n")
    (tmp_path / "etc" / "aliases").write_text("")
    conf = tmp_path / "mailpair.toml"
    conf.write_text(config_text(tmp_path, sections={
        "auth": {"failure_delay": 0.01, "failure_delay_max": 0.01, "cache_ttl": 0}}))
    cfg = config.load(conf)
    hashed: list[tuple[str, str, bytes, object]] = []
    real = Verifier.verify

    async def recording(self, user, stored_hash, password, key=""):
        hashed.append((user, stored_hash, password, key))
        return await real(self, user, stored_hash, password, key)

    monkeypatch.setattr(Verifier, "verify", recording)
    svc = UserService(ChildContext(cfg=cfg, daemon="mdad", role="auth"))
    return svc, hashed


def ask(svc: UserService, **req) -> dict:
    return asyncio.run(svc.auth({"address": "192.0.2.7", "service": "imap", **req}))


def test_an_unknown_user_is_hashed_against_the_dummy(service) -> None:
    svc, hashed = service
    assert "m=65536,t=3,p=4" in svc.dummy  # the production cost, whatever the users have
    assert ask(svc, user="nobody@example.test", password="pw") == {"valid": False, "user": None}
    assert hashed == [("nobody@example.test", svc.dummy, b"pw", "192.0.2.7")]


def test_client_bytes_reach_argon2_as_bytes(service) -> None:
    svc, hashed = service
    assert ask(svc, user=ALICE, password="\udcff")["valid"] is False
    assert hashed[-1][2] == b"\xff"


def test_an_authorization_identity_other_than_the_user_is_refused(service) -> None:
    svc, _ = service
    assert ask(svc, user=ALICE, password=PASSWORD, authzid="bob@example.test")["valid"] is False
    assert ask(svc, user=ALICE, password=PASSWORD, authzid="Alice@Example.test") == {
        "valid": True, "user": ALICE}


def test_failures_are_counted_and_a_success_clears_the_address(service) -> None:
    svc, _ = service
    ask(svc, user=ALICE, password="wrong")
    ask(svc, user="bob@example.test", password="wrong", address="192.0.2.8")
    assert svc.penalties.addresses["192.0.2.7"].count == 1
    assert svc.penalties.accounts[ALICE].count == 1
    assert ask(svc, user=ALICE, password=PASSWORD)["valid"]
    assert "192.0.2.7" not in svc.penalties.addresses
    assert "192.0.2.8" in svc.penalties.addresses


def test_one_log_line_per_refusal(service) -> None:
    svc, _ = service
    with structlog.testing.capture_logs() as logs:
        svc.log = structlog.get_logger()
        ask(svc, user="Nobody@Example.test", password="x", service="pop3")
        ask(svc, user=ALICE, password=PASSWORD)
    # (the users file's "loaded" line comes from UserDB, on first use)
    assert [e["event"] for e in logs if e["event"] != "loaded"] == [
        "login failed: address=192.0.2.7 user=nobody@example.test service=pop3"]


def test_a_login_token_names_the_user_once(service) -> None:
    svc, _ = service
    wrong = asyncio.run(svc.login_auth({"user": ALICE, "password": "nope", "address": "192.0.2.9",
                                        "service": "imap"}))
    assert wrong == {"valid": False, "user": None}  # no token for a wrong password
    good = asyncio.run(svc.login_auth({"user": ALICE, "password": PASSWORD,
                                       "address": "192.0.2.9", "service": "imap"}))
    assert good["valid"] and len(good["token"]) == 32
    assert asyncio.run(svc.redeem({"token": good["token"]})) == {"user": ALICE}
    assert asyncio.run(svc.redeem({"token": good["token"]})) == {"user": None}  # once
    assert asyncio.run(svc.redeem({"token": "forged"})) == {"user": None}
    # The login processes' socket answers auth alone; redeem is the mail processes'.
    assert set(svc.login_handlers()) == {"auth"}
    assert "redeem" in svc.handlers()
