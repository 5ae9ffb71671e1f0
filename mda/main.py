"""mdad's parent: binds the LMTP socket and the IMAP and POP3 ports, starts the roles.

| role | runs as   | touches                                  |
| lmtp | mda.user  | the LMTP socket, the Maildirs            |
| imap | mda.user  | the network (143, 993), the Maildirs     |
| pop3 | mda.user  | the network (110, 995), the Maildirs     |
| auth | auth.user | the users file                           |

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


def build(cfg: Config) -> tuple[list[Role], dict[str, list]]:
    listeners = daemon.bind_listeners({"imap": cfg.imap.imap, "imaps": cfg.imap.imaps})
    # Each protocol's process holds only its own ports.
    pop3 = daemon.bind_listeners({"pop3": cfg.pop3.pop3, "pop3s": cfg.pop3.pop3s})
    mda = privileges.resolve(*mda_creds(cfg))
    auth = privileges.resolve(*auth_creds(cfg))
    uid = mda.uid if mda else None
    gid = mda.gid if mda else None
    cfg.paths.mail.mkdir(parents=True, exist_ok=True)
    privileges.own(cfg.paths.mail, uid, gid, 0o700)
    run = run_dir(cfg.paths.run / "mda", gid)
    # The MTA connects as its own user: the socket's group is its only door.
    lmtp = ipc.bind_unix(cfg.lmtp_socket, 0o660, uid, privileges.group_id(cfg.mda.lmtp_group))
    auth_sock = ipc.bind_unix(run / "auth.sock", 0o660, auth.uid if auth else None, gid)
    # Stopped in reverse order: lmtp finishes while auth still answers it.
    roles = [
        Role("auth", "mda.auth", {"ipc": [auth_sock]}, auth_creds),
        Role("lmtp", "mda.lmtp", {"lmtp": [lmtp]}, mda_creds),
        Role("imap", "mda.imap.server", listeners, mda_creds, tls=True),
        Role("pop3", "mda.pop3.server", pop3, mda_creds, tls=True),
    ]
    return roles, {**listeners, **pop3}


def main() -> None:
    daemon.main("mdad", build)


if __name__ == "__main__":
    main()
