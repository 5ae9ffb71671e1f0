"""A real IMAP client: two-way sync with mbsync (isync), flags changed on both sides."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import PASSWORD, require_tool


def config(stack, local: Path) -> Path:
    _, port = stack.address("imaps")
    cfg = local.parent / "mbsyncrc"
    # isync checks the certificate against a host name, not an address.
    cfg.write_text(f"""\
IMAPAccount mp
Host localhost
Port {port}
User alice@example.test
Pass "{PASSWORD}"
SSLType IMAPS
CertificateFile {stack.root / "etc" / "cert.pem"}
AuthMechs PLAIN

IMAPStore mp-remote
Account mp

MaildirStore mp-local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel mp
Far :mp-remote:
Near :mp-local:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
""")
    return cfg


def mbsync(cfg: Path) -> str:
    r = subprocess.run([require_tool("mbsync"), "-V", "-c", str(cfg), "-a"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def snapshot(stack, local: Path) -> tuple:
    """Every file name on our side and every UID, flag set and UIDNEXT on the server's."""
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()
                   and ".mbsyncstate" not in p.name and ".uidvalidity" not in p.name)
    c = stack.imap()
    server = []
    for line in c.list()[1]:
        name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
        c.select(f'"{name}"', readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
        st = c.status(f'"{name}"', "(UIDNEXT UIDVALIDITY)")[1]
        server.append((name, sorted(d for d in data if d), st))
    c.logout()
    return files, server


def local_files(local: Path, box: str = "INBOX") -> dict[str, Path]:
    out = {}
    for p in [*(local / box / "new").iterdir(), *(local / box / "cur").iterdir()]:
        subject = re.search(rb"^Subject: (.*)$", p.read_bytes(), re.M).group(1).decode()
        out[subject] = p
    return out


def test_two_way_sync_with_mbsync(stack, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    cfg = config(stack, local)
    with stack.smtp() as s:
        for n in range(3):
            s.sendmail("far@remote.test", ["alice@example.test"],
                       f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode())
    stack.wait_messages("alice@example.test", 3)
    c = stack.imap()
    c.append("Sent", "(\\Seen)", None, b"Subject: sent one\r\n\r\nx\r\n")
    mbsync(cfg)
    files = local_files(local)
    assert set(files) == {"m0", "m1", "m2"}
    assert set(local_files(local, "Sent")) == {"sent one"}
    # Flags change on both sides: m0 seen here, m1 flagged there.
    m0 = files["m0"]
    m0.rename(local / "INBOX" / "cur" / (m0.name.split(":2,")[0] + ":2,S"))
    c.select("INBOX")
    typ, data = c.uid("SEARCH", None, "SUBJECT", "m1")
    c.uid("STORE", data[0].split()[0], "+FLAGS", "(\\Flagged)")
    mbsync(cfg)
    assert local_files(local)["m1"].name.endswith("F") or ":2,F" in local_files(local)["m1"].name
    typ, data = c.uid("SEARCH", None, "SEEN")
    typ2, data2 = c.uid("SEARCH", None, "SUBJECT", "m0")
    assert data2[0].split()[0] in data[0].split()
    # A message made locally goes up; a folder made on the server comes down.
    c.create("Projects")
    (local / "INBOX" / "new" / "1.local.mail").write_bytes(b"Subject: from here\n\nhi\n")
    mbsync(cfg)
    assert (local / "Projects").is_dir()
    typ, data = c.uid("SEARCH", None, "SUBJECT", '"from here"')
    assert data[0].split()
    # Nothing changed since: the next run has nothing to do.
    before = snapshot(stack, local)
    mbsync(cfg)
    assert snapshot(stack, local) == before
