"""Three more real IMAP clients against the real mdad: curl over STARTTLS and IMAPS,
offlineimap syncing both ways with a local Maildir, and mutt driven by keys under a
pseudo-terminal. Every effect is checked on the other side (imaplib, the local Maildir)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import smtplib
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, Stack, require_tool

ALICE = "alice@example.test"


@pytest.fixture
def mdad(bare_stack: Stack) -> Stack:
    """Only mdad: messages go in by IMAP APPEND or over its LMTP socket."""
    bare_stack.start("mdad")
    return bare_stack


def cert(stack: Stack) -> Path:
    """The daemons' self-signed certificate (for mail.example.test, localhost, 127.0.0.1)."""
    return stack.root / "etc" / "cert.pem"


def message(subject: str, body: str = "") -> bytes:
    return (f"From: Someone <someone@example.net>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Date: Tue, 4 Feb 2020 09:00:00 +0000\r\nMessage-ID: <{subject}@example.net>\r\n"
            f"\r\n{body or 'This is ' + subject + '.'}\r\n").encode()


def append(stack: Stack, mailbox: str, *msgs: bytes, flags: str = "") -> list[int]:
    """APPEND through imaplib; the UIDs the server gave (APPENDUID)."""
    c = stack.imap(ALICE)
    uids = []
    for m in msgs:
        typ, data = c.append(mailbox, flags or None, None, m)
        assert typ == "OK", data
        uids.append(int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1)))
    c.logout()
    return uids


def deliver(stack: Stack, msg: bytes) -> None:
    """A delivery over LMTP, as mtad would hand it over."""
    with smtplib.LMTP(str(stack.lmtp_socket), timeout=30) as lmtp:
        lmtp.sendmail("someone@example.net", [ALICE], msg)


def server_view(stack: Stack, mailbox: str) -> dict[bytes, tuple[int, frozenset[str]]]:
    """Every message of a folder: its bytes -> (UID, stored flags), read without changing
    \\Seen (nor \\Recent, which belongs to a session and is left out)."""
    c = stack.imap(ALICE)
    typ, _ = c.select(mailbox, readonly=True)
    assert typ == "OK"
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    c.logout()
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        uid = int(re.search(rb"UID (\d+)", head).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split()
        out[body] = (uid, frozenset(flags) - {"\\Recent"})
    return out


def status(stack: Stack, mailbox: str) -> dict[str, int]:
    c = stack.imap(ALICE)
    typ, data = c.status(mailbox, "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
    c.logout()
    assert typ == "OK", data
    pairs = re.findall(rb"([A-Z]+) (\d+)", data[0])
    return {k.decode(): int(v) for k, v in pairs}


# -- curl ------------------------------------------------------------------------------


def curl(stack: Stack, path: str, *args: str, implicit: bool = False,
         password: str = PASSWORD) -> subprocess.CompletedProcess:
    """curl on imap://localhost (STARTTLS required) or imaps://; the certificate is checked
    against the test CA and the name localhost. stdout is bytes, stderr curl's transcript."""
    exe = require_tool("curl")
    scheme, listener = ("imaps", "imaps") if implicit else ("imap", "imap")
    # -q first: no ~/.curlrc.
    cmd = [exe, "-q", "-sS", "-v", "--max-time", "30", "--cacert", str(cert(stack)),
           "-u", f"{ALICE}:{password}"]
    if not implicit:
        cmd.append("--ssl-reqd")
    cmd += [*args, f"{scheme}://localhost:{stack.port(listener)}/{path}"]
    return subprocess.run(cmd, capture_output=True, timeout=60)


def ok(r: subprocess.CompletedProcess) -> bytes:
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def test_curl_starttls_list_examine_fetch_and_search(mdad: Stack) -> None:
    msgs = [message("first"), message("second", "caf\u00e9 \u2615\r\n.dot line"),
            message("third")]
    assert append(mdad, "INBOX", *msgs) == [1, 2, 3]
    uidvalidity = status(mdad, "INBOX")["UIDVALIDITY"]

    r = curl(mdad, "")
    assert ok(r).split(b"\r\n") == [
        b'* LIST (\\HasNoChildren) "/" INBOX',
        b'* LIST (\\HasNoChildren \\Archive) "/" Archive',
        b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
        b'* LIST (\\HasNoChildren \\Junk) "/" Junk',
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent',
        b'* LIST (\\HasNoChildren \\Trash) "/" Trash',
        b""]
    transcript = r.stderr.decode(errors="replace")
    # STARTTLS first, then the certificate was verified, and only then the password.
    starttls = re.search(r"> A\d+ STARTTLS\r?\n< A\d+ OK", transcript)
    assert starttls, transcript
    login = re.search(r"> A\d+ AUTHENTICATE PLAIN ", transcript)
    assert login, transcript
    assert starttls.end() < transcript.index("SSL certificate verify ok") < login.start()

    # EXAMINE as a custom command: curl prints the untagged answers.
    r = curl(mdad, "", "-X", "EXAMINE INBOX")
    out = ok(r).decode()
    assert re.search(rb"< A\d+ OK \[READ-ONLY\]", r.stderr), r.stderr
    assert "* 3 EXISTS\r\n" in out
    assert f"* OK [UIDVALIDITY {uidvalidity}]" in out
    assert "* OK [UIDNEXT 4]" in out
    assert "* OK [UNSEEN 1]" in out

    # A message by UID (curl SELECTs, then UID FETCH n BODY[]): the exact bytes.
    assert ok(curl(mdad, "INBOX;UID=2")) == msgs[1]
    assert ok(curl(mdad, f"INBOX;UIDVALIDITY={uidvalidity};UID=3;SECTION=TEXT")) == (
        b"This is third.\r\n")
    # BODY[] without PEEK set \Seen on 2 and 3 only.
    view = server_view(mdad, "INBOX")
    assert [view[m][1] for m in msgs] == [frozenset(), {"\\Seen"}, {"\\Seen"}]
    # The wrong UIDVALIDITY, or a UID that is not there, is curl's "not found".
    r = curl(mdad, f"INBOX;UIDVALIDITY={uidvalidity + 1};UID=1")
    assert r.returncode == 78 and b"UIDVALIDITY has changed" in r.stderr, r.stderr
    r = curl(mdad, "INBOX;UID=99")
    assert r.returncode == 78, r.stderr

    # A custom command on a selected folder, and curl's own SEARCH URL.
    assert ok(curl(mdad, "INBOX", "-X", 'UID SEARCH SUBJECT "second"')) == b"* SEARCH 2\r\n"
    assert ok(curl(mdad, "INBOX", "-X", "UID SEARCH UNSEEN")) == b"* SEARCH 1\r\n"
    assert ok(curl(mdad, "INBOX?SUBJECT%20third")) == b"* SEARCH 3\r\n"


def test_curl_imaps_append_by_upload_keeps_every_byte(mdad: Stack, tmp_path: Path) -> None:
    upload = tmp_path / "upload.eml"
    # 8-bit text, a line that is only a dot, a blank line at the end and a long line.
    body = (b"From: Alice <alice@example.test>\r\nSubject: uploaded by curl\r\n"
            b"Message-ID: <upload@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"\r\nGr\xc3\xbc\xc3\x9fe \xe2\x80\x94 caf\xc3\xa9\r\n.\r\n..two dots\r\n"
            + b"x" * 990 + b"\r\n\r\n")
    upload.write_bytes(body)
    r = curl(mdad, "Drafts", "-T", str(upload), implicit=True)
    ok(r)
    assert re.search(rb"> A\d+ APPEND Drafts ", r.stderr), r.stderr
    assert re.search(rb"< A\d+ OK \[APPENDUID \d+ 1\]", r.stderr), r.stderr
    assert "SSL certificate verify ok" in r.stderr.decode()
    # It is there, byte for byte, with the flag curl asked for.
    assert server_view(mdad, "Drafts") == {body: (1, frozenset({"\\Seen"}))}
    assert ok(curl(mdad, "Drafts;UID=1", implicit=True)) == body
    assert ok(curl(mdad, "Drafts;UID=1")) == body  # and over STARTTLS
    assert status(mdad, "Drafts")["UIDNEXT"] == 2


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "imaps"])
def test_curl_wrong_password_is_login_denied(mdad: Stack, implicit: bool) -> None:
    append(mdad, "INBOX", message("private"))
    r = curl(mdad, "INBOX;UID=1", implicit=implicit, password="not the password")
    assert r.returncode == 67, r.stderr  # CURLE_LOGIN_DENIED
    assert b"curl: (67) Login denied" in r.stderr
    assert re.search(rb"< A\d+ NO ", r.stderr), r.stderr
    assert r.stdout == b""
    assert server_view(mdad, "INBOX")[message("private")][1] == frozenset()


# -- offlineimap ------------------------------------------------------------------------


FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                "\\Deleted": "T"}


def offlineimap_config(stack: Stack, work: Path) -> Path:
    rc = work / "offlineimaprc"
    rc.write_text(f"""\
[general]
accounts = mp
metadata = {work}/meta

[Account mp]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {work}/local

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {stack.port("imaps")}
ssl = yes
sslcacertfile = {cert(stack)}
remoteuser = {ALICE}
remotepass = {PASSWORD}
""")
    return rc


def offlineimap(rc: Path) -> str:
    """One run (-o), plain output (-u basic); it must succeed without an error."""
    exe = require_tool("offlineimap")
    r = subprocess.run([exe, "-c", str(rc), "-o", "-u", "basic"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, HOME=str(rc.parent)))
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "ERROR" not in log and "Traceback" not in log, log
    return log


def local_view(local: Path, folder: str) -> dict[bytes, tuple[str, str]]:
    """A local Maildir folder: bytes (CRLF, as the server sends them) -> (file name, flags)."""
    out = {}
    for sub in ("new", "cur"):
        for p in (local / folder / sub).iterdir():
            flags = p.name.split(":2,", 1)[1] if ":2," in p.name else ""
            data = p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            assert data not in out, f"{p} twice"
            out[data] = (f"{sub}/{p.name}", flags)
    return out


def letters(flags: frozenset[str]) -> str:
    return "".join(sorted(FLAG_LETTERS[f] for f in flags))


def assert_in_step(stack: Stack, local: Path, folders: tuple[str, ...]) -> tuple:
    """Both sides hold the same messages with the same flags; what each side looks like."""
    snapshot = []
    for folder in folders:
        server = server_view(stack, folder)
        here = local_view(local, folder)
        assert {b: letters(f) for b, (_, f) in server.items()} == {
            b: f for b, (_, f) in here.items()}, folder
        snapshot.append((folder, server, here, status(stack, folder)))
    return tuple(snapshot)


def test_offlineimap_two_way_sync_converges_and_then_rests(mdad: Stack, tmp_path: Path) -> None:
    work = tmp_path / "offlineimap"
    work.mkdir()
    rc = offlineimap_config(mdad, work)
    local = work / "local"
    plain, seen, answered, flagged, doomed_here, doomed_there = (
        message(s) for s in ("plain", "seen", "answered", "flagged", "doomed-here",
                             "doomed-there"))
    append(mdad, "INBOX", plain, doomed_here, doomed_there)
    append(mdad, "INBOX", seen, flags="(\\Seen)")
    append(mdad, "INBOX", answered, flags="(\\Answered \\Seen)")
    append(mdad, "INBOX", flagged, flags="(\\Flagged)")
    sent = message("sent", "A message in Sent.")
    append(mdad, "Sent", sent, flags="(\\Seen)")
    draft = message("draft", "Not finished.")
    append(mdad, "Drafts", draft, flags="(\\Draft)")
    folders = ("INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash")

    # First run: everything comes down, flags intact.
    log = offlineimap(rc)
    assert sorted(p.name for p in local.iterdir()) == sorted(folders)
    assert_in_step(mdad, local, folders)
    here = local_view(local, "INBOX")
    assert {here[m][1] for m in (plain, doomed_here, doomed_there)} == {""}
    assert [here[m][1] for m in (seen, answered, flagged)] == ["S", "RS", "F"]
    assert local_view(local, "Sent")[sent][1] == "S"
    assert local_view(local, "Drafts")[draft][1] == "D"
    assert log.count("Copy message") == 8, log

    # Changes on both sides: flags, a deletion each, a new message each.
    path = local / "INBOX" / here[plain][0]
    path.rename(local / "INBOX" / "cur" / (path.name.split(":2,")[0] + ":2,S"))
    (local / "INBOX" / here[doomed_here][0]).unlink()
    made_here = message("made-here", "Written in the local Maildir.")
    (local / "INBOX" / "new" / "1600000000.local.vm").write_bytes(
        made_here.replace(b"\r\n", b"\n"))
    c = mdad.imap(ALICE)
    c.select("INBOX")
    uid_of = {b: u for b, (u, _) in server_view(mdad, "INBOX").items()}
    assert c.uid("STORE", str(uid_of[flagged]), "+FLAGS", "(\\Seen)")[0] == "OK"
    assert c.uid("STORE", str(uid_of[seen]), "-FLAGS", "(\\Seen)")[0] == "OK"
    assert c.uid("STORE", str(uid_of[doomed_there]), "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert c.expunge()[0] == "OK"
    c.logout()
    made_there = message("made-there", "Delivered over LMTP.")
    deliver(mdad, made_there)

    # Second run: both sides converge.
    offlineimap(rc)
    before = assert_in_step(mdad, local, folders)
    server = server_view(mdad, "INBOX")
    assert {b: letters(f) for b, (_, f) in server.items()} == {
        plain: "S", seen: "", answered: "RS", flagged: "FS", made_here: "",
        # LMTP adds its trace headers at the top: find the delivery by its end.
        next(b for b in server if b.endswith(made_there)): ""}
    assert server_view(mdad, "Sent") == {sent: (1, frozenset({"\\Seen"}))}

    # Third run: nothing to do, nothing changes on either side (not even a modseq).
    log = offlineimap(rc)
    for word in ("Copy message", "Deleting", "Adding flag", "Deleting flag", "Creating"):
        assert word not in log, log
    assert assert_in_step(mdad, local, folders) == before


# -- mutt ------------------------------------------------------------------------------


def muttrc(stack: Stack, home: Path, starttls: bool = False) -> Path:
    """Trusts our certificate (checked against the name localhost) without a prompt;
    no caches, no questions on sync or quit, no 'Old' keyword of its own."""
    if starttls:
        folder = f"imap://localhost:{stack.port('imap')}/"
    else:
        folder = f"imaps://localhost:{stack.port('imaps')}/"
    rc = home / "muttrc"
    rc.write_text(f"""\
set imap_user="{ALICE}"
set imap_pass="{PASSWORD}"
set folder="{folder}"
set spoolfile="+INBOX"
set ssl_ca_certificates_file="{cert(stack)}"
set certificate_file="{home}/certificates"
set ssl_verify_host=yes
set ssl_starttls=yes
set ssl_force_tls=yes
unset header_cache
unset message_cachedir
unset mark_old
set move=no
set delete=yes
set quit=yes
set confirmappend=no
set confirmcreate=no
set wait_key=no
set beep=no
set sort=mailbox-order
set record=""
set postponed="+Drafts"
""")
    return rc


def run_mutt(home: Path, rc: Path, keys: str, timeout: float = 30) -> str:
    """mutt -e 'push KEYS' on a pseudo-terminal until it exits; what it drew on the screen.
    The keys run once INBOX is open; they must end by quitting."""
    exe = require_tool("mutt")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
    env = {"HOME": str(home), "TERM": "vt100", "LC_ALL": "C.UTF-8",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.Popen([exe, "-n", "-F", str(rc), "-d", "2", "-e", f"push {keys}"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=home,
                            start_new_session=True)
    os.close(slave)
    screen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait(10)
                debug = home / ".muttdebug0"
                raise AssertionError(
                    f"mutt did not quit within {timeout}s; screen:\n"
                    f"{screen.decode(errors='replace')}\ndebug log:\n"
                    f"{debug.read_text(errors='replace') if debug.exists() else ''}")
            readable, _, _ = select.select([master], [], [], min(left, 0.5))
            if not readable:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: mutt has gone and the terminal with it
                data = b""
            if not data:
                break
            screen += data
        assert proc.wait(10) == 0, screen.decode(errors="replace")
    finally:
        os.close(master)
    return screen.decode(errors="replace")


def test_mutt_flags_copies_saves_reads_and_deletes_over_imaps(mdad: Stack,
                                                              tmp_path: Path) -> None:
    home = tmp_path / "mutt"
    home.mkdir()
    names = ("flag-me", "copy-me", "save-me", "read-me", "delete-me", "keep-me")
    msgs = {n: message(n) for n in names}
    append(mdad, "INBOX", *msgs.values())
    keys = ('"'
            "<search>~s flag-me<enter><flag-message>"
            "<search>~s copy-me<enter><copy-message>=Archive<enter>"
            "<search>~s save-me<enter><save-message>=Trash<enter>"
            "<search>~s read-me<enter><display-message><exit>"
            "<search>~s delete-me<enter><delete-message>"
            "<sync-mailbox><quit>"
            '"')
    screen = run_mutt(home, muttrc(mdad, home), keys)
    assert "SSL/TLS connection using" in screen, screen
    assert "Reading imaps://localhost:" in screen, screen
    # The server has what the keys did, no more.
    inbox = server_view(mdad, "INBOX")
    assert {b: sorted(f) for b, (_, f) in inbox.items()} == {
        msgs["flag-me"]: ["\\Flagged"], msgs["copy-me"]: [], msgs["read-me"]: ["\\Seen"],
        msgs["keep-me"]: []}
    assert list(server_view(mdad, "Archive")) == [msgs["copy-me"]]
    assert list(server_view(mdad, "Trash")) == [msgs["save-me"]]
    assert status(mdad, "INBOX")["MESSAGES"] == 4


def test_mutt_over_starttls_moves_tagged_messages(mdad: Stack, tmp_path: Path) -> None:
    home = tmp_path / "mutt"
    home.mkdir()
    keep = [message(f"keep-{n}") for n in range(3)]
    bulk = [message(f"bulk-{n}") for n in range(4)]
    append(mdad, "INBOX", keep[0], bulk[0], bulk[1], keep[1], bulk[2], keep[2], bulk[3])
    keys = ('"<tag-pattern>~s bulk-<enter><tag-prefix><save-message>=Archive<enter>'
            '<sync-mailbox><quit>"')
    screen = run_mutt(home, muttrc(mdad, home, starttls=True), keys)
    assert "Reading imap://localhost:" in screen, screen
    assert "SSL/TLS connection using" in screen, screen  # ssl_force_tls: STARTTLS or nothing
    assert list(server_view(mdad, "INBOX")) == keep
    assert list(server_view(mdad, "Archive")) == bulk
