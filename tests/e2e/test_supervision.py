"""mdad's parent and children that cannot start: after MAX_FAILED_STARTS tries the
daemon stops with one error line naming the child and the reason, and exits 78
(the units' RestartPreventExitStatus), instead of restarting it for ever while its
ports accept connections nobody answers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from common.supervisor import EXIT_CANNOT_START, MAX_FAILED_STARTS
from tests.conftest import ROOT, wait_for

FATAL = "child cannot start, stopping the daemon"
MDAD_ROLES = ("auth", "lmtp", "imap-login", "pop3-login", "imap", "pop3")


def fatal_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if FATAL in line]


def test_a_child_that_can_no_longer_start_stops_mdad(bare_stack) -> None:
    st = bare_stack
    st.start("mdad")
    wait_for(lambda: st._ready(st.logs["mdad"], 0, MDAD_ROLES), 60, "mdad's children")
    # The children read the configuration again at each start; the parent does not.
    st.config.chmod(0)
    imap = st.state("mdad")["children"]["imap"]
    os.kill(imap, signal.SIGKILL)
    proc = st.procs["mdad"]
    code = proc.wait(90)  # 0.5 + 1 + 2 + 4 s of back-off and five interpreters
    st.procs.pop("mdad")
    log = st.log("mdad")
    assert code == EXIT_CANNOT_START, log
    assert "child died, restarting" in log  # it had served: that death is a restart
    (line,) = fatal_lines(log)
    assert "child=imap" in line
    assert "exited with 78 (its configuration was refused) before it was ready" in line
    assert f"attempts={MAX_FAILED_STARTS}" in line
    # The child's own reason is in the same log, just before.
    assert "cannot read the configuration: Permission denied" in log
    assert not (st.root / "run" / "mdad.json").exists()


def private_venv(tmp: Path) -> Path:
    """This repository's venv, but in a directory only root may enter: a python3 under
    /root (pyenv) as the children's users meet it."""
    private = tmp / "private"
    private.mkdir(mode=0o700)
    venv = ROOT / ".venv"
    shutil.copy(venv / "pyvenv.cfg", private / "pyvenv.cfg")
    (private / "lib").symlink_to(venv / "lib")
    (private / "bin").mkdir()
    python = private / "bin" / "python3"
    python.symlink_to(os.path.realpath(venv / "bin" / "python"))
    return python


def test_mdad_on_an_interpreter_its_children_cannot_run_exits_with_the_reason(
        bare_stack, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root parent drops its children to users who may not run it")
    st = bare_stack
    python = private_venv(tmp_path)
    log = tmp_path / "mdad-private.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(python), "-m", "mda.main", "-c", str(st.config)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        code = proc.wait(90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert code == EXIT_CANNOT_START, text
    (line,) = fatal_lines(text)
    assert "Permission denied" in line and str(python) in line, line
    assert "child started" not in text  # no child ever ran
    assert text.count("child did not start, trying again") >= MAX_FAILED_STARTS - 1


def test_a_reload_whose_children_cannot_read_the_configuration_stops_mdad(stack) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs children that run as another user than the parent")
    wait_for(lambda: stack._ready(stack.logs["mdad"], 0, MDAD_ROLES), 60, "mdad's children")
    stack.config.chmod(0o600)  # the parent (root) reads it; vmail and mailpair-auth can't
    proc = stack.procs["mdad"]
    proc.send_signal(signal.SIGHUP)
    code = proc.wait(90)
    stack.procs.pop("mdad")
    log = stack.log("mdad")
    assert code == EXIT_CANNOT_START, log
    (line,) = fatal_lines(log)
    assert "its configuration was refused" in line, line
