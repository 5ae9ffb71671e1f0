"""mtad's parent: binds the SMTP ports and the internal sockets, starts the roles.

| role   | runs as        | touches                                  |
| smtp   | mta.user       | the network; writes the message files queue hands it |
| queue  | mta.queue_user | the spool (mta.queue_user's, mode 0700)  |
| relay  | mta.relay_user | reads the messages queue hands it, the LMTP socket, SMTP out, DNS |
| lookup | auth.user      | the users and aliases files              |
| autoconfig | autoconfig.user | HTTPS: client set-up, MTA-STS policy; no files |

The internal sockets, in <run>/mta (0711: the sockets' own modes decide):

| socket           | served by | who may connect (owner, group, mode)          |
| lookup.sock      | lookup    | smtp (auth.user, mta.group, 0660)             |
| lookup-queue.sock| lookup    | queue, `resolve` only (auth.user, mta.queue_group, 0660) |
| queue.sock       | queue     | smtp, open/commit/discard only (mta.queue_user, mta.group, 0660) |
| control.sock     | queue     | root: mta-ctl (root, root, 0600)              |
| relay.sock       | relay     | queue (mta.queue_user, 0600)                  |
"""

from __future__ import annotations

from common import daemon, ipc, privileges
from common.config import Config
from common.supervisor import Role, run_dir
from mta.queue import spool


def mta_creds(cfg: Config) -> tuple[str, str]:
    return cfg.mta.user, cfg.mta.group


def queue_creds(cfg: Config) -> tuple[str, str]:
    return cfg.mta.queue_user, cfg.mta.queue_group


def relay_creds(cfg: Config) -> tuple[str, str]:
    return cfg.mta.relay_user, cfg.mta.relay_group


def auth_creds(cfg: Config) -> tuple[str, str]:
    return cfg.auth.user, cfg.auth.group


def autoconfig_creds(cfg: Config) -> tuple[str, str]:
    return cfg.autoconfig.user, cfg.autoconfig.group


def build(cfg: Config) -> tuple[list[Role], dict[str, list]]:
    smtp = privileges.resolve(*mta_creds(cfg))
    queue_user = privileges.resolve(*queue_creds(cfg))
    auth = privileges.resolve(*auth_creds(cfg))

    def uid(c: privileges.Creds | None) -> int | None:
        return c.uid if c else None

    def gid(c: privileges.Creds | None) -> int | None:
        return c.gid if c else None
    spool.create_dirs(cfg.paths.spool)
    for d in (cfg.paths.spool, *(cfg.paths.spool / s for s in spool.SUBDIRS)):
        privileges.own(d, uid(queue_user), gid(queue_user), 0o700)
    if queue_user is not None:
        spool.give_to(cfg.paths.spool, queue_user.uid, queue_user.gid)
    root = 0 if privileges.can_drop() else None
    # Entered by children of four users with no group in common: the sockets'
    # owners and modes decide who may connect, and no one may list them.
    run = run_dir(cfg.paths.run / "mta", root, mode=0o711)
    listeners = daemon.bind_listeners({
        "smtp": cfg.mta.smtp,
        "submission": cfg.mta.submission,
        "submissions": cfg.mta.submissions,
    })
    # Each internal socket: served by one role, entered only by the roles that call it.
    lookup = ipc.bind_unix(run / "lookup.sock", 0o660, uid(auth), gid(smtp))
    lookup_queue = ipc.bind_unix(run / "lookup-queue.sock", 0o660, uid(auth), gid(queue_user))
    queue = ipc.bind_unix(run / "queue.sock", 0o660, uid(queue_user), gid(smtp))
    control = ipc.bind_unix(run / "control.sock", 0o600, root, root)
    relay = ipc.bind_unix(run / "relay.sock", 0o600, uid(queue_user), gid(queue_user))
    # Started in this order and stopped in the reverse one: each role only
    # calls roles above it, so none loses its peer while it finishes.
    roles = [
        Role("lookup", "mta.lookup", {"ipc": [lookup], "resolve": [lookup_queue]}, auth_creds),
        Role("relay", "mta.relay.main", {"ipc": [relay]}, relay_creds),
        Role("queue", "mta.queue.main", {"ipc": [queue], "control": [control]}, queue_creds),
        Role("smtp", "mta.smtp", listeners, mta_creds, tls=True),
    ]
    # Switched off by an empty list: no process at all then.
    if cfg.autoconfig.listen:
        web = daemon.bind_listeners({"autoconfig": cfg.autoconfig.listen})
        roles.append(Role("autoconfig", "mta.autoconfig.server", web, autoconfig_creds, tls=True))
        listeners |= web
    return roles, listeners


def main() -> None:
    daemon.main("mtad", build)


if __name__ == "__main__":
    main()
