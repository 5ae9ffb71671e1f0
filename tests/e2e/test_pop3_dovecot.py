"""POP3 UIDLs against Dovecot itself: one Maildir, as Dovecot wrote it, listed by both servers.

Dovecot 2.3 (Debian's dovecot-core and dovecot-pop3d) runs on a private
configuration of its own (`dovecot -F -c <tmp>/dovecot.conf`: its own
base_dir, a passwd-file, an ephemeral loopback port, no TLS), so nothing of
the system's Dovecot is read or changed. Dovecot assigns the UIDs and writes
the dovecot-uidlist; the same tree, copied, is then served by mdad, and the
two UIDL listings must be equal byte for byte. Then back: a message mdad
delivers gets its UID from mdad, and Dovecot lists that tree the way mdad did.
"""

from __future__ import annotations

import os
import poplib
import shutil
import signal
import smtplib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, Stack, wait_for

ALICE = "alice@example.test"
DOVECOT = "/usr/sbin/dovecot"
# More than nine messages, so that the UIDs have hex letters too (UID 10 is 0000000a).
COUNT = 12


def require_dovecot() -> None:
    if os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/pop3"):
        return
    why = f"{DOVECOT} or its pop3 is missing (apt-get install dovecot-core dovecot-pop3d)"
    if os.environ.get("CI") == "true":
        pytest.fail(why + "; .ci/run installs them")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    """Dovecot on a private configuration, serving POP3 for ALICE from dir/mail/alice/Maildir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.maildir = root / "mail" / "alice" / "Maildir"
        self.port = free_port()
        self.log = root / "dovecot.log"
        self.proc: subprocess.Popen | None = None
        for d in ("run", "state"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "passwd").write_text(f"{ALICE}:{{PLAIN}}{PASSWORD}::::::\n")
        owner = ("uid=vmail gid=vmail" if os.geteuid() == 0
                 else f"uid={os.getuid()} gid={os.getgid()}")
        (root / "dovecot.conf").write_text(f"""\
protocols = pop3
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = {self.log}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%n/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = {owner} home={root}/mail/%n
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"dovecot exited with {self.proc.returncode}:\n"
                                     + self.log.read_text(errors="replace"))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    return s.recv(100).startswith(b"+OK")
            except OSError:
                return False
        wait_for(up, 60, "Dovecot's POP3 greeting")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def listing(self) -> tuple[list[bytes], list[bytes]]:
        return listing(poplib.POP3("127.0.0.1", self.port, timeout=60))


def listing(p: poplib.POP3) -> tuple[list[bytes], list[bytes]]:
    """(UIDL lines, LIST lines) of ALICE's maildrop, changing nothing."""
    try:
        p.user(ALICE)
        p.pass_(PASSWORD)
        uidls = p.uidl()[1]
        sizes = p.list()[1]
    finally:
        p.quit()
    return uidls, sizes


@pytest.fixture
def dovecot(bare_stack: Stack) -> Iterator[Dovecot]:
    require_dovecot()
    root = bare_stack.root / "dovecot"
    root.mkdir(parents=True)
    os.chmod(bare_stack.root, 0o755)
    d = Dovecot(root)
    try:
        yield d
    finally:
        d.stop()
        if d.log.exists():
            print("----- dovecot log -----\n" + d.log.read_text(errors="replace")[-5000:])


def chown_tree(top: Path) -> None:
    if os.geteuid() == 0:
        for p in [top, *top.rglob("*")]:
            shutil.chown(p, "vmail", "vmail")


def copy_maildir(src: Path, dst: Path) -> None:
    """The Maildir tree as an admin moves it: every file, Dovecot's index files too."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, symlinks=True)
    chown_tree(dst.parent.parent)


def test_uidls_are_byte_identical_to_dovecots_both_ways(bare_stack: Stack,
                                                        dovecot: Dovecot) -> None:
    md = dovecot.maildir
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    for i in range(COUNT):
        # Delivered as any MDA would: a unique name in new/, no UID yet.
        (md / "new" / f"17000000{i:02d}.M{i}P4242.oldhost").write_bytes(
            f"From: a@example.net\nTo: {ALICE}\nSubject: message {i}\n\nbody {i}\n".encode())
    chown_tree(dovecot.root / "mail")
    dovecot.start()
    theirs, their_sizes = dovecot.listing()
    dovecot.stop()
    assert len(theirs) == COUNT
    uidlist = (md / "dovecot-uidlist").read_text()
    assert uidlist.startswith("3 V"), uidlist  # Dovecot gave the UIDs, not us
    assert any(u.split()[1][:8] == b"0000000a" for u in theirs), theirs

    copy_maildir(md, bare_stack.maildir(ALICE))
    bare_stack.start("mdad")
    ours, our_sizes = listing(poplib.POP3(*bare_stack.address("pop3"), timeout=60))
    assert ours == theirs
    assert our_sizes == their_sizes

    # And back: a message mdad delivers gets its UID from mdad; Dovecot agrees on all of them.
    with smtplib.LMTP(str(bare_stack.lmtp_socket), timeout=60) as lmtp:
        lmtp.sendmail("a@example.net", [ALICE], b"Subject: late\r\n\r\nlate\r\n")
    ours, our_sizes = listing(poplib.POP3(*bare_stack.address("pop3"), timeout=60))
    assert len(ours) == COUNT + 1
    bare_stack.stop("mdad")
    copy_maildir(bare_stack.maildir(ALICE), md)
    dovecot.start()
    theirs, their_sizes = dovecot.listing()
    assert theirs == ours
    assert their_sizes == our_sizes
