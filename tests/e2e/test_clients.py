"""Real SMTP clients against mtad: swaks on 25, 587 (STARTTLS + AUTH) and 465."""

from __future__ import annotations

import subprocess

from tests.conftest import PASSWORD, require_tool


def swaks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("swaks"), "--server", "127.0.0.1", *args],
                          capture_output=True, text=True, timeout=60)


def test_swaks_port25_local_delivery(stack):
    r = swaks("--port", str(stack.port("smtp")), "--from", "far@remote.test",
              "--to", "bob@example.test", "--header", "Subject: via swaks", "--body", "hello")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 Ok: queued as" in r.stdout
    (msg,) = stack.wait_messages("bob@example.test", 1)
    assert b"Subject: via swaks" in msg


def test_swaks_refused_relay_exits_with_rcpt_error(stack):
    r = swaks("--port", str(stack.port("smtp")), "--from", "far@remote.test",
              "--to", "someone@elsewhere.test")
    assert r.returncode == 24  # swaks: RCPT TO was refused
    assert "554 5.7.1" in r.stdout


def test_swaks_submission_starttls_auth(stack):
    r = swaks("--port", str(stack.port("submission")), "--tls", "--auth", "PLAIN",
              "--auth-user", "alice@example.test", "--auth-password", PASSWORD,
              "--from", "alice@example.test", "--to", "carol@example.test",
              "--header", "Subject: submitted")
    assert r.returncode == 0, r.stdout + r.stderr
    (msg,) = stack.wait_messages("carol@example.test", 1)
    assert b"with ESMTPSA" in msg


def test_swaks_submissions_implicit_tls_login(stack):
    r = swaks("--port", str(stack.port("submissions")), "--tls-on-connect", "--auth", "LOGIN",
              "--auth-user", "bob@example.test", "--auth-password", PASSWORD,
              "--from", "bob@example.test", "--to", "alice@example.test")
    assert r.returncode == 0, r.stdout + r.stderr
    stack.wait_messages("alice@example.test", 1)


def test_swaks_wrong_password_is_refused(stack):
    r = swaks("--port", str(stack.port("submission")), "--tls", "--auth", "PLAIN",
              "--auth-user", "alice@example.test", "--auth-password", "nope",
              "--from", "alice@example.test", "--to", "carol@example.test")
    assert r.returncode == 28  # swaks: authentication failed
    assert "535 5.7.8" in r.stdout
