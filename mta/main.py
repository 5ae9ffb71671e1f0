"""mtad's parent: binds the SMTP ports and the internal sockets, starts the roles.

| role   | runs as        | touches                                  |
| smtp   | mta.user       | the network, spool/incoming              |
| queue  | mta.user       | the spool                                |
| relay  | mta.user       | reads the spool, the LMTP socket, SMTP out, DNS |
| lookup | auth.user      | the users and aliases files              |
"""

from __future__ import annotations

from common import daemon, ipc, privileges
from common.config import Config
from common.supervisor import Role, run_dir
from mta.queue import spool


def mta_creds(cfg: Config) -> tuple[str, str]:
    return cfg.mta.user, cfg.mta.group


def auth_creds(cfg: Config) -> tuple[str, str]:
    return cfg.auth.user, cfg.auth.group


def build(cfg: Config) -> tuple[list[Role], dict[str, list]]:
    mta = privileges.resolve(*mta_creds(cfg))
    auth = privileges.resolve(*auth_creds(cfg))
    uid = mta.uid if mta else None
    gid = mta.gid if mta else None
    spool.create_dirs(cfg.paths.spool)
    for d in (cfg.paths.spool, *(cfg.paths.spool / s for s in spool.SUBDIRS)):
        privileges.own(d, uid, gid, 0o700)
    run = run_dir(cfg.paths.run / "mta", gid)
    listeners = daemon.bind_listeners({
        "smtp": cfg.mta.smtp,
        "submission": cfg.mta.submission,
        "submissions": cfg.mta.submissions,
    })
    # Each internal socket: served by one role, entered by the mta user's processes.
    lookup = ipc.bind_unix(run / "lookup.sock", 0o660, auth.uid if auth else None, gid)
    queue = ipc.bind_unix(run / "queue.sock", 0o660, uid, gid)
    relay = ipc.bind_unix(run / "relay.sock", 0o600, uid, gid)
    # Started in this order and stopped in the reverse one: each role only
    # calls roles above it, so none loses its peer while it finishes.
    roles = [
        Role("lookup", "mta.lookup", {"ipc": [lookup]}, auth_creds),
        Role("relay", "mta.relay.main", {"ipc": [relay]}, mta_creds),
        Role("queue", "mta.queue.main", {"ipc": [queue]}, mta_creds),
        Role("smtp", "mta.smtp", listeners, mta_creds, tls=True),
    ]
    return roles, listeners


def main() -> None:
    daemon.main("mtad", build)


if __name__ == "__main__":
    main()
