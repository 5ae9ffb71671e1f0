"""mda-ctl check: what would stop the daemons or make them misbehave, found before they start.

Read-only. Each finding is OK, WARN or ERROR; an ERROR means a daemon would
refuse to start or a part of it could not work (a user that cannot log in,
a certificate that does not load). Ownership is only checked when run as
root, as the daemons only drop privileges then.
"""

from __future__ import annotations

import datetime
import grp
import os
import pwd
import ssl
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from common import config, log, users

OK, WARN, ERROR = "OK", "WARN", "ERROR"
# Renew before this; Let's Encrypt renews at 30 days left.
CERT_WARN_DAYS = 14
SPOOL_SUBDIRS = ("incoming", "queue", "corrupt")


@dataclass(frozen=True)
class Finding:
    level: str
    what: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.level:<5} {self.what}: {self.detail}"


class _Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, level: str, what: str, detail: str) -> None:
        self.findings.append(Finding(level, what, detail))


def _is_root() -> bool:
    return os.geteuid() == 0


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def _owner(st: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def _can_read(st: os.stat_result, user: pwd.struct_passwd) -> bool:
    """Whether user may read a file with this stat (permission bits only)."""
    if user.pw_uid == 0:
        return True
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IRUSR)
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _check_system_users(cfg: config.Config, r: _Report) -> None:
    if not _is_root():
        r.add(OK, "system users", "not checked: not root, so the daemons do not drop "
              "privileges and every process runs as the current user")
        return
    wanted = [("mta.user", cfg.mta.user, True), ("mta.group", cfg.mta.group, False),
              ("mta.queue_user", cfg.mta.queue_user, True),
              ("mta.queue_group", cfg.mta.queue_group, False),
              ("mta.relay_user", cfg.mta.relay_user, True),
              ("mta.relay_group", cfg.mta.relay_group, False),
              ("mda.user", cfg.mda.user, True), ("mda.group", cfg.mda.group, False),
              ("auth.user", cfg.auth.user, True), ("auth.group", cfg.auth.group, False),
              ("mda.lmtp_group", cfg.mda.lmtp_group, False)]
    missing = False
    for key, name, is_user in wanted:
        if (_user(name) if is_user else _group(name)) is None:
            kind = "user" if is_user else "group"
            r.add(ERROR, "system users", f"{key}: the {kind} {name!r} does not exist "
                  "(deploy/install.sh creates it)")
            missing = True
    if not missing:
        names = sorted({name for _, name, _ in wanted})
        r.add(OK, "system users", f"{', '.join(names)} exist")


def _check_protected_file(cfg: config.Config, path: Path, what: str, r: _Report) -> None:
    """The users and aliases files: only root and the auth processes may read them."""
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    problems = 0
    if mode & stat.S_IWOTH:
        r.add(ERROR, what, f"{path} is writable by everyone (mode {mode:04o}): chmod 0640")
        problems += 1
    elif mode & stat.S_IROTH:
        r.add(WARN, what, f"{path} is readable by everyone (mode {mode:04o}): "
              "chmod 0640 (only root and the auth processes should read it)")
        problems += 1
    if mode & stat.S_IWGRP:
        r.add(WARN, what, f"{path} is writable by its group (mode {mode:04o}): chmod 0640")
        problems += 1
    auth_user, auth_group = _user(cfg.auth.user), _group(cfg.auth.group)
    if _is_root() and auth_user is not None and auth_group is not None:
        if not _can_read(st, auth_user):
            r.add(ERROR, what, f"{path} ({_owner(st)}, {mode:04o}) cannot be read by "
                  f"auth.user {cfg.auth.user}: chgrp {cfg.auth.group} and chmod 0640")
            problems += 1
        elif st.st_gid != auth_group.gr_gid:
            r.add(WARN, what, f"{path} is group-owned by {_owner(st).split(':')[1]}, "
                  f"expected auth.group {cfg.auth.group}")
            problems += 1
        if st.st_uid != 0:
            r.add(WARN, what, f"{path} is owned by {_owner(st)}, expected root")
            problems += 1
    if not problems:
        r.add(OK, what, f"{path}: {_owner(st)} {mode:04o}")


def _read_text(path: Path, what: str, r: _Report, missing: tuple[str, str]) -> str | None:
    try:
        return users.read_text(path)  # a bad byte is reported with its line
    except FileNotFoundError:
        r.add(missing[0], what, f"{path} does not exist: {missing[1]}")
    except OSError as e:
        r.add(ERROR, what, f"cannot read {path}: {getattr(e, 'strerror', None) or e}")
    return None


def _kept(path: Path, what: str, problems: list[str], r: _Report) -> None:
    if problems:
        r.add(WARN, what, f"{path} has {len(problems)} bad line(s): until they are fixed "
              "the running daemons keep the last version of it that had none "
              "(started with it, they serve its good lines)")


def _check_users_and_aliases(cfg: config.Config, r: _Report) -> None:
    text = _read_text(cfg.paths.users, "users file", r,
                      (WARN, "no one can log in yet (mda-ctl user add ADDRESS)"))
    found: dict[str, users.User] = {}
    if text is not None:
        _check_protected_file(cfg, cfg.paths.users, "users file", r)
        found, problems = users.parse_users(text, str(cfg.paths.users))
        for p in problems:
            r.add(WARN, "users", p)
        _kept(cfg.paths.users, "users", problems, r)
        if found:
            r.add(OK, "users", f"{len(found)} user(s)")
        else:
            r.add(WARN, "users", "no users yet (mda-ctl user add ADDRESS)")
        for address in found:
            domain = users.split(address)[1]
            if not cfg.is_local_domain(domain):
                r.add(WARN, "users", f"{address}: {domain} is not in domains, "
                      "so no mail is delivered to this user")

    text = _read_text(cfg.paths.aliases, "aliases file", r, (OK, "no aliases"))
    if text is None:
        return
    _check_protected_file(cfg, cfg.paths.aliases, "aliases file", r)
    aliases, problems = users.parse_aliases(text, str(cfg.paths.aliases))
    for p in problems:
        r.add(WARN, "aliases", p)
    _kept(cfg.paths.aliases, "aliases", problems, r)
    # The daemons' own resolution, so "bounces" here means it bounces there.
    db = users.UserDB(cfg.paths.users, cfg.paths.aliases, cfg.domains)
    bad = 0
    for address, targets in aliases.items():
        domain = users.split(address)[1]
        if not cfg.is_local_domain(domain):
            r.add(WARN, "aliases", f"{address}: {domain} is not in domains, "
                  "so this alias is never used")
            bad += 1
        for target in targets:
            if not cfg.is_local_domain(users.split(target)[1]):
                continue
            try:
                unknown = db.resolve(target).kind == "unknown"
            except OSError:
                return  # an unreadable users file is already an ERROR above
            if unknown:
                r.add(WARN, "aliases", f"{address} -> {target}: no such user or alias, "
                      "mail to it bounces")
                bad += 1
    if not aliases and not problems:
        r.add(OK, "aliases", "none")
    elif not bad and not problems:
        r.add(OK, "aliases", f"{len(aliases)} alias(es), every local target resolves")


def _check_tls(cfg: config.Config, r: _Report) -> None:
    cert, key = cfg.tls.cert, cfg.tls.key
    cert_there, key_there = cert.exists(), key.exists()
    if cfg.tls.self_signed and not cert_there and not key_there:
        r.add(OK, "tls", f"{cert} and {key} are missing: made at start (tls.self_signed)")
        return
    if not cert_there or not key_there:
        missing = " and ".join(str(p) for p, there in ((cert, cert_there), (key, key_there))
                               if not there)
        r.add(ERROR, "tls", f"{missing} missing: STARTTLS and port 465 need both files")
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
    except ssl.SSLError as e:
        r.add(ERROR, "tls", f"{cert} and {key} do not load together "
              f"(not a certificate and its key?): {e.reason or e}")
        return
    except OSError as e:
        r.add(ERROR, "tls", f"cannot read {cert} or {key}: {e.strerror}")
        return
    r.add(OK, "tls", f"{cert} and {key} load together")
    _check_expiry(cert, r)
    st = key.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        r.add(WARN, "tls", f"{key} is readable by others (mode {mode:04o}): chmod 0600 "
              "(only the root parents read it)")
    elif _is_root() and st.st_uid != 0:
        r.add(WARN, "tls", f"{key} is owned by {_owner(st)}, expected root")


def _check_expiry(cert: Path, r: _Report) -> None:
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    except (ValueError, OSError):
        return  # OpenSSL loaded it above; a form we cannot parse here is not a finding
    left = leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    until = leaf.not_valid_after_utc.date().isoformat()
    if left.total_seconds() <= 0:
        r.add(ERROR, "tls", f"{cert} expired on {until}")
    elif left.days < CERT_WARN_DAYS:
        r.add(WARN, "tls", f"{cert} expires in {left.days} day(s), on {until}")
    else:
        r.add(OK, "tls", f"{cert} is valid until {until}")


def _check_dir(path: Path, what: str, user: str, group: str, r: _Report) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        r.add(WARN, what, f"{path} does not exist: created at start")
        return
    if not stat.S_ISDIR(st.st_mode):
        r.add(ERROR, what, f"{path} is not a directory")
        return
    mode = stat.S_IMODE(st.st_mode)
    problems = 0
    if mode & stat.S_IRWXO:
        r.add(WARN, what, f"{path} is open to everyone (mode {mode:04o}): chmod 0700")
        problems += 1
    pw, gr = _user(user), _group(group)
    if _is_root() and pw is not None and gr is not None and \
            (st.st_uid, st.st_gid) != (pw.pw_uid, gr.gr_gid):
        r.add(WARN, what, f"{path} is owned by {_owner(st)}, expected {user}:{group} "
              f"(chown {user}:{group} {path})")
        problems += 1
    if not problems:
        r.add(OK, what, f"{path}: {_owner(st)} {mode:04o}")


def run(config_path: str | Path) -> list[Finding]:
    """Every check, in the order an administrator would fix things."""
    r = _Report()
    try:
        cfg = config.load(config_path)
    except config.ConfigError as e:
        r.add(ERROR, "config", str(e))
        return r.findings  # nothing else can be judged without it
    domains = ", ".join(cfg.domains) or "none"
    r.add(OK, "config", f"{cfg.source} loads (hostname {cfg.hostname}, domains {domains})")
    if not cfg.domains:
        r.add(WARN, "config", "domains is empty: no mail is delivered here")
    # UserDB reports reloads and bad lines through structlog: keep them off stdout.
    log.setup("console", "error")
    _check_system_users(cfg, r)
    _check_users_and_aliases(cfg, r)
    _check_tls(cfg, r)
    _check_dir(cfg.paths.spool, "spool", cfg.mta.queue_user, cfg.mta.queue_group, r)
    for sub in SPOOL_SUBDIRS:
        if cfg.paths.spool.is_dir():
            _check_dir(cfg.paths.spool / sub, "spool", cfg.mta.queue_user, cfg.mta.queue_group,
                       r)
    _check_dir(cfg.paths.mail, "mail", cfg.mda.user, cfg.mda.group, r)
    return r.findings
