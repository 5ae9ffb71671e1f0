"""common/supervisor.py with real child processes: a child that started and dies is
restarted for ever, one that cannot start stops the daemon after MAX_FAILED_STARTS."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
import structlog

from common import config, supervisor
from common.supervisor import EXIT_CANNOT_START, MAX_FAILED_STARTS, Role, Supervisor

PROBE = "tests.unit.supervised_child"


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file that tells each new probe child what to do."""
    mode = tmp_path / "mode"
    mode.write_text("serve")
    monkeypatch.setenv("MAILPAIR_PROBE_MODE", str(mode))
    # Short waits between starts; the rule is the same.
    monkeypatch.setattr(supervisor, "BACKOFF_FIRST", 0.05)
    monkeypatch.setattr(supervisor, "BACKOFF_MAX", 0.2)
    return mode


def make(tmp_path: Path, module: str = PROBE) -> Supervisor:
    conf = tmp_path / "mailpair.toml"
    conf.write_text(f'[paths]\nrun = "{tmp_path}/run"\n[log]\nformat = "console"\n')
    cfg = config.load(conf)
    cfg.paths.run.mkdir()
    return Supervisor("probed", cfg, [Role("probe", module)], lambda p: (config.load(p), b""),
                      b"")


async def until(cond, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


def events(logs: list[dict], name: str) -> list[dict]:
    return [e for e in logs if e["event"] == name]


def run_to_end(sup: Supervisor, timeout: float = 60.0) -> tuple[int, list[dict]]:
    async def go() -> int:
        return await asyncio.wait_for(sup.run({}), timeout)
    with structlog.testing.capture_logs() as logs:
        code = asyncio.run(go())
    return code, logs


def test_a_child_that_exits_before_ready_stops_the_daemon(tmp_path: Path, probe: Path) -> None:
    sup = make(tmp_path)
    # A configuration the parent has read but each child refuses: exit 78 at once.
    Path(sup.cfg.source).write_text("[paths\n")
    code, logs = run_to_end(sup)
    assert code == EXIT_CANNOT_START
    (fatal,) = [e for e in logs if e["log_level"] == "error"]
    assert fatal["event"] == "child cannot start, stopping the daemon"
    assert fatal["child"] == "probe"
    assert fatal["reason"] == "exited with 78 (its configuration was refused) before it was ready"
    assert fatal["attempts"] == MAX_FAILED_STARTS
    assert len(events(logs, "child did not start, trying again")) == MAX_FAILED_STARTS - 1
    assert len(events(logs, "child started")) == MAX_FAILED_STARTS
    assert not (tmp_path / "run" / "probed.json").exists()


def test_a_child_whose_interpreter_cannot_be_run_stops_the_daemon(
        tmp_path: Path, probe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = tmp_path / "python3"
    python.write_bytes(Path(os.path.realpath(sys.executable)).read_bytes()[:4096])
    python.chmod(0o644)  # EACCES at exec, as for a user who may not run it
    sup = make(tmp_path)
    monkeypatch.setattr(sys, "executable", str(python))
    code, logs = run_to_end(sup)
    assert code == EXIT_CANNOT_START
    (fatal,) = [e for e in logs if e["log_level"] == "error"]
    assert fatal["child"] == "probe"
    assert "Permission denied" in fatal["reason"] and str(python) in fatal["reason"]
    assert events(logs, "child started") == []


def test_a_child_that_served_is_restarted_however_often_it_dies(
        tmp_path: Path, probe: Path) -> None:
    probe.write_text("ready-then-die")
    sup = make(tmp_path)

    async def go(logs: list[dict]) -> int:
        task = asyncio.create_task(sup.run({}))
        await until(lambda: len(events(logs, "child died, restarting")) > MAX_FAILED_STARTS + 1,
                    what="more restarts than a failing start is allowed")
        assert not task.done()
        sup.stopping.set()
        return await asyncio.wait_for(task, 60)
    with structlog.testing.capture_logs() as logs:
        code = asyncio.run(go(logs))
    assert code == 0
    assert events(logs, "child cannot start, stopping the daemon") == []
    assert events(logs, "child did not start, trying again") == []


def test_a_child_that_never_says_ready_has_started_once_it_lived_long_enough(
        tmp_path: Path, probe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe.write_text("quiet-then-die")  # lives 0.5 s
    monkeypatch.setattr(supervisor, "HEALTHY_AFTER", 0.2)
    sup = make(tmp_path)

    async def go(logs: list[dict]) -> int:
        task = asyncio.create_task(sup.run({}))
        await until(lambda: len(events(logs, "child died, restarting")) > MAX_FAILED_STARTS,
                    what="restarts of a quiet child")
        sup.stopping.set()
        return await asyncio.wait_for(task, 60)
    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(go(logs)) == 0


def test_a_failed_start_after_a_good_one_counts_afresh(tmp_path: Path, probe: Path) -> None:
    """Starts that fail, one that serves, then failing starts again: the count starts over."""
    probe.write_text("refuse")
    sup = make(tmp_path)

    async def go(logs: list[dict]) -> int:
        task = asyncio.create_task(sup.run({}))
        await until(lambda: len(events(logs, "child did not start, trying again"))
                    == MAX_FAILED_STARTS - 2, what="failed starts")
        probe.write_text("ready-then-die")
        await until(lambda: events(logs, "child died, restarting"), what="a start that served")
        probe.write_text("refuse")
        return await asyncio.wait_for(task, 60)
    with structlog.testing.capture_logs() as logs:
        code = asyncio.run(go(logs))
    assert code == EXIT_CANNOT_START
    attempts = [e["attempt"] for e in events(logs, "child did not start, trying again")]
    assert attempts[-(MAX_FAILED_STARTS - 1):] == list(range(1, MAX_FAILED_STARTS))


def test_reload_keeps_the_old_child_when_the_new_one_cannot_be_spawned(
        tmp_path: Path, probe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sup = make(tmp_path)
    python = tmp_path / "python3"
    python.write_bytes(b"")
    python.chmod(0o644)

    async def go(logs: list[dict]) -> None:
        task = asyncio.create_task(sup.run({}))
        await until(lambda: "probe" in sup.procs, what="the first child")
        old = sup.procs["probe"]
        await until((tmp_path / f"ready-{old.pid}").exists, what="the first child to serve")
        with monkeypatch.context() as m:
            m.setattr(sys, "executable", str(python))
            await sup.reload()
        assert events(logs, "reload: cannot start child, keeping the old one")
        assert sup.procs["probe"] is old and old.returncode is None
        assert not task.done()

        await sup.reload()  # now it can: the old one is told to go
        await until(lambda: sup.procs["probe"] is not old, what="the new child")
        await asyncio.wait_for(old.wait(), 30)
        assert not task.done()
        sup.stopping.set()
        assert await asyncio.wait_for(task, 60) == 0
    with structlog.testing.capture_logs() as logs:
        asyncio.run(go(logs))
    assert events(logs, "child died, restarting") == []
    assert events(logs, "child did not start, trying again") == []


def test_a_new_child_of_a_reload_that_cannot_start_stops_the_daemon(
        tmp_path: Path, probe: Path) -> None:
    sup = make(tmp_path)

    async def go(logs: list[dict]) -> int:
        task = asyncio.create_task(sup.run({}))
        await until(lambda: "probe" in sup.procs, what="the first child")
        old = sup.procs["probe"]
        await until((tmp_path / f"ready-{old.pid}").exists, what="the first child to serve")
        probe.write_text("refuse")
        await sup.reload()
        return await asyncio.wait_for(task, 60)
    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(go(logs)) == EXIT_CANNOT_START
    (fatal,) = [e for e in logs if e["log_level"] == "error"]
    assert fatal["event"] == "child cannot start, stopping the daemon"
