"""mdad's parent: binds the LMTP socket and the IMAP and POP3 ports, starts the roles.

| role       | runs as         | touches                                                |
| lmtp       | mda.user        | the LMTP socket, the Maildirs                          |
| imap-login | mda.login_user  | the network (143, 993), the TLS key; no mail          |
| pop3-login | mda.login_user  | the network (110, 995), the TLS key; no mail          |
| imap       | mda.user        | the Maildirs, connections handed over by imap-login    |
| pop3       | mda.user        | the Maildirs, connections handed over by pop3-login    |
| auth       | auth.user       | the users file                                         |

The login roles speak IMAP and POP3 before authentication and hand each
logged-in connection to the mail role on a socket in <run>/mda-login/,
a directory only the login user (and root) may enter: the mail roles are
handed their listening end, as they are the LMTP socket, and do not need to.
The auth role answers the login user there too, on a socket of its own.

Adding a protocol is one more Role in the table below.
"""

from __future__ import annotations

from common import daemon, ipc, privileges
from common.config import Config
from common.supervisor import Role, run_dir


def mda_creds(cfg: Config) -> tuple[str, str]:
    return cfg.mda.user, cfg.mda.group


def auth_creds(cfg: Config) -> tuple[str, str]:
    return cfg.auth.user, cfg.auth.group


def login_creds(cfg: Config) -> tuple[str, str]:
    return cfg.mda.login_user, cfg.mda.login_group


def build(cfg: Config) -> tuple[list[Role], dict[str, list]]:
    listeners = daemon.bind_listeners({"imap": cfg.imap.imap, "imaps": cfg.imap.imaps})
    # Each protocol's process holds only its own ports.
    pop3 = daemon.bind_listeners({"pop3": cfg.pop3.pop3, "pop3s": cfg.pop3.pop3s})
    mda = privileges.resolve(*mda_creds(cfg))
    auth = privileges.resolve(*auth_creds(cfg))
    login = privileges.resolve(*login_creds(cfg))
    uid = mda.uid if mda else None
    gid = mda.gid if mda else None
    cfg.paths.mail.mkdir(parents=True, exist_ok=True)
    privileges.own(cfg.paths.mail, uid, gid, 0o700)
    run = run_dir(cfg.paths.run / "mda", gid)
    # The MTA connects as its own user: the socket's group is its only door.
    lmtp = ipc.bind_unix(cfg.lmtp_socket, 0o660, uid, privileges.group_id(cfg.mda.lmtp_group))
    auth_uid = auth.uid if auth else None
    auth_sock = ipc.bind_unix(run / "auth.sock", 0o660, auth_uid, gid)
    login_gid = login.gid if login else None
    logins = run_dir(cfg.paths.run / "mda-login", login_gid)
    login_auth = ipc.bind_unix(logins / "auth.sock", 0o660, auth_uid, login_gid)
    imap_mail = ipc.bind_unix(logins / "imap-mail.sock", 0o660, uid, login_gid)
    pop3_mail = ipc.bind_unix(logins / "pop3-mail.sock", 0o660, uid, login_gid)
    # Stopped in reverse order: the mail roles end their sessions (through the
    # login roles' TLS proxies) first, and lmtp finishes while auth still answers it.
    roles = [
        Role("auth", "mda.auth", {"ipc": [auth_sock], "login": [login_auth]}, auth_creds),
        Role("lmtp", "mda.lmtp", {"lmtp": [lmtp]}, mda_creds),
        Role("imap-login", "mda.login.imap", listeners, login_creds, tls=True),
        Role("pop3-login", "mda.login.pop3", pop3, login_creds, tls=True),
        Role("imap", "mda.imap.server", {"handover": [imap_mail]}, mda_creds),
        Role("pop3", "mda.pop3.server", {"handover": [pop3_mail]}, mda_creds),
    ]
    return roles, {**listeners, **pop3}


def main() -> None:
    daemon.main("mdad", build)


if __name__ == "__main__":
    main()
