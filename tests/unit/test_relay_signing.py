"""The relay's choice of DKIM key and its key cache (mta/relay/signing.py), on files in tmp."""

from __future__ import annotations

import os

import structlog

from mta.dkim import keys, rotation
from mta.relay.signing import Signer, candidate_domains, from_domain

MSG = (b"From: \"Alice, A.\" <alice@Example.TEST>\r\nTo: rob@remote.test\r\n"
       b"Subject: hi\r\n\r\nbody\r\n")


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def __getattr__(self, level):
        return lambda event, **kw: self.lines.append((level, event, kw))


def test_from_domain():
    assert from_domain(MSG) == "example.test"
    assert from_domain(b"From: MAILER-DAEMON@mail.example.test\r\n\r\n") == "mail.example.test"
    assert from_domain(b"To: x@y.test\r\n\r\n") is None
    assert from_domain(b"From: undisclosed\r\n\r\n") is None


def test_candidate_domains_stop_before_the_top_level():
    assert candidate_domains("mail.example.test") == ["mail.example.test", "example.test"]
    assert candidate_domains("test") == []


def test_signs_with_the_active_selector_and_sees_new_keys_at_once(tmp_path):
    signer, log = Signer(tmp_path), Log()
    assert signer.sign(MSG, log) == MSG  # no key
    assert signer.sign(MSG, log) == MSG
    assert [e for _, e, _ in log.lines].count("not DKIM-signed: no key for the From domain") == 1
    keys.generate(tmp_path, "example.test", "a1")
    out = signer.sign(MSG, log)
    assert out.endswith(MSG) and out.count(b"DKIM-Signature:") == 2 and b"s=a1;" in out
    assert b"s=a1-ed25519;" in out  # the Ed25519 key's own name
    keys.generate(tmp_path, "example.test", "b2")
    rotation.set_active(tmp_path, "example.test", "a1")
    assert b"s=a1;" in signer.sign(MSG, log)
    rotation.set_active(tmp_path, "example.test", "b2")
    assert b"s=b2;" in signer.sign(MSG, log) and b"s=b2-ed25519;" in signer.sign(MSG, log)


def test_a_parent_domain_key_signs_for_the_host_name(tmp_path):
    keys.generate(tmp_path, "example.test", "a1", algorithms=("ed25519",))
    out = Signer(tmp_path).sign(b"From: MAILER-DAEMON@mail.example.test\r\n\r\nx\r\n", Log())
    assert out.count(b"DKIM-Signature:") == 1 and b"d=example.test;" in out


def test_a_key_made_world_readable_is_refused_though_cached(tmp_path):
    signer, log = Signer(tmp_path), Log()
    keys.generate(tmp_path, "example.test", "a1", algorithms=("rsa",))
    assert b"DKIM-Signature" in signer.sign(MSG, log)
    path = keys.key_path(tmp_path, "example.test", "a1", "rsa")
    os.chmod(path, 0o644)  # the mtime stays; the ctime changes
    assert signer.sign(MSG, log) == MSG
    assert any(lvl == "warning" and "every user" in kw["error"] for lvl, _, kw in log.lines)
    os.chmod(path, 0o640)
    assert b"DKIM-Signature" in signer.sign(MSG, log)


def test_a_broken_key_file_sends_unsigned(tmp_path):
    keys.generate(tmp_path, "example.test", "a1", algorithms=("rsa",))
    keys.key_path(tmp_path, "example.test", "a1", "rsa").write_bytes(b"not a key")
    log = Log()
    assert Signer(tmp_path).sign(MSG, log) == MSG
    assert log.lines[-1][0] == "warning"


def test_works_with_a_structlog_logger(tmp_path):
    keys.generate(tmp_path, "example.test", "a1", algorithms=("ed25519",))
    out = Signer(tmp_path).sign(MSG, structlog.get_logger().bind(queue_id="Q1"))
    assert out.startswith(b"DKIM-Signature:")
