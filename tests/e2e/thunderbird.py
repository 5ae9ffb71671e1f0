"""A real Thunderbird, headless, driven through its Marionette remote protocol.

Thunderbird runs with a fresh profile, and each step is a piece of
privileged JavaScript run inside it that calls the same mail services its
own user interface calls: the IMAP traffic is Thunderbird's own, command for
command. Its IMAP protocol log (MOZ_LOG) is kept, so a test can check every
tagged answer it got.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from marionette_driver.marionette import Marionette

from tests.conftest import wait_for

# What the profile needs to start straight into work: no first-run pages, no
# updates, no telemetry, no account wizard.
PREFS = {
    "marionette.port": 0,  # any free port, written to MarionetteActivePort
    "mail.shell.checkDefaultClient": False,
    "mail.provider.enabled": False,
    "mailnews.start_page.enabled": False,
    "app.update.enabled": False,
    "app.update.auto": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "mail.rights.version": 1,
    "mail.spotlight.firstRunDone": True,
    "browser.dom.window.dump.enabled": True,
    # Its SMTP client logs each line it sends to the console, kept on stdout.
    "mailnews.smtp.loglevel": "All",
    "devtools.console.stdout.chrome": True,
}

# Shared by every step: the mail services and a few helpers over them.
PRELUDE = """
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const win = Services.wm.getMostRecentWindow("mail:3pane");
const accountServer = () => MailServices.accounts.findServer(ACCOUNT, "127.0.0.1", "imap");
const folder = name => accountServer().rootFolder.getChildNamed(name);
// Fetch what is new in a folder, as opening it in the folder pane does.
const update = name => new Promise(done => folder(name)
  .QueryInterface(Ci.nsIMsgImapMailFolder)
  .updateFolderWithListener(win.msgWindow, {
    OnStartRunningUrl() {},
    OnStopRunningUrl(url, status) { done(status); },
  }));
// What the message list shows of a folder.
const listing = name => [...folder(name).messages].map(h => ({
  key: h.messageKey, subject: h.mime2DecodedSubject, author: h.mime2DecodedAuthor,
  read: h.isRead, flagged: h.isFlagged,
  replied: (h.flags & Ci.nsMsgMessageFlags.Replied) != 0,
  keywords: h.getStringProperty("keywords"),
}));
"""


class Thunderbird:
    def __init__(self, workdir: Path, account: str, prefs: dict | None = None) -> None:
        self.profile = workdir / "profile"
        self.profile.mkdir(parents=True)
        self.account = account
        self.imap_log = workdir / "imap.moz_log"
        with open(self.profile / "user.js", "w") as f:
            for name, value in {**PREFS, **(prefs or {})}.items():
                v = json.dumps(value)
                f.write(f'user_pref("{name}", {v});\n')
        env = dict(os.environ, MOZ_LOG="timestamp,sync,IMAP:5", MOZ_LOG_FILE=str(self.imap_log),
                   HOME=str(workdir))
        self.output = workdir / "thunderbird.out"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                ["thunderbird", "--headless", "--marionette", "--remote-allow-system-access",
                 "--no-remote", "--profile", str(self.profile)],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        port_file = self.profile / "MarionetteActivePort"

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"thunderbird exited: {self.output.read_text()[-3000:]}")
            return port_file.exists() and port_file.read_text().strip().isdigit()
        wait_for(listening, 90, "Thunderbird's Marionette port")

        self.marionette = Marionette(host="127.0.0.1", port=int(port_file.read_text()),
                                     startup_timeout=60)
        self.marionette.start_session()
        self.marionette.set_context("chrome")
        wait_for(lambda: self.run("return !!win && !!win.msgWindow;"), 60,
                 "Thunderbird's main window")

    def run(self, body: str, *args: object, timeout: float = 60) -> object:
        """Run `body` (JavaScript that may await and return) with `args` as args."""
        script = (
            f"const ACCOUNT = {self.account!r};\n{PRELUDE}\n"
            "const [resolve, args] = [arguments[arguments.length - 1],"
            " Array.from(arguments).slice(0, -1)];\n"
            f"(async () => {{\n{body}\n}})().then(resolve,"
            " e => resolve({scriptError: String(e) + '\\n' + e.stack}));"
        )
        result = self.marionette.execute_async_script(
            script, script_args=list(args), script_timeout=int(timeout * 1000))
        if isinstance(result, dict) and "scriptError" in result:
            raise AssertionError(f"Thunderbird script failed: {result['scriptError']}")
        return result

    def listing(self, folder: str) -> list[dict]:
        return self.run("return listing(args[0]);", folder)

    def traffic(self) -> list[tuple[str, str, str]]:
        """(connection, "sent" or "got", line) for each IMAP line, in order."""
        out = []
        for log in sorted(self.imap_log.parent.glob(self.imap_log.name + "*")):
            for line in log.read_text(errors="replace").splitlines():
                m = re.search(r"I/IMAP ([0-9a-f]+):[^ ]*:(SendData|CreateNewLineFromSocket): (.*)",
                              line)
                if m:
                    out.append((m.group(1), "sent" if m.group(2) == "SendData" else "got",
                                m.group(3)))
        return out

    def commands(self) -> list[str]:
        """Every command Thunderbird sent, without its tag."""
        return [line.split(" ", 1)[1] for _, way, line in self.traffic()
                if way == "sent" and re.match(r"[0-9]+ ", line)]

    def answers(self) -> list[str]:
        """Every tagged answer Thunderbird's IMAP connections received."""
        return [line for _, way, line in self.traffic()
                if way == "got" and re.match(r"[0-9]+ (OK|NO|BAD)\b", line)]

    def idling(self) -> bool:
        """Whether a connection sits in IDLE now (sent IDLE, got "+", sent nothing since)."""
        state: dict[str, str] = {}
        for conn, way, line in self.traffic():
            if way == "sent":
                state[conn] = "asked" if re.match(r"[0-9]+ IDLE$", line) else ""
            elif state.get(conn) == "asked" and line.startswith("+"):
                state[conn] = "idle"
        return "idle" in state.values()

    def got_in_idle(self, pattern: str) -> bool:
        """Whether a line matching `pattern` reached a connection sitting in IDLE."""
        last: dict[str, str] = {}
        for conn, way, line in self.traffic():
            if way == "sent":
                last[conn] = line
            elif re.search(pattern, line) and re.match(r"[0-9]+ IDLE$", last.get(conn, "")):
                return True
        return False

    def close(self) -> None:
        try:
            self.marionette.delete_session()
        except Exception:  # noqa: BLE001 - Thunderbird may be gone already
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
