"""mtad's parent: binds the SMTP ports and the internal sockets, starts the roles."""

from __future__ import annotations

from common import daemon, ipc
from common.config import Config
from common.supervisor import Role
from mta.queue import spool


def build(cfg: Config) -> tuple[list[Role], dict[str, list]]:
    spool.create_dirs(cfg.paths.spool)
    run = cfg.paths.run / "mta"
    listeners = daemon.bind_listeners({
        "smtp": cfg.mta.smtp,
        "submission": cfg.mta.submission,
        "submissions": cfg.mta.submissions,
    })
    roles = [
        Role("lookup", "mta.lookup", {"ipc": [ipc.bind_unix(run / "lookup.sock")]}),
        Role("queue", "mta.queue.main", {"ipc": [ipc.bind_unix(run / "queue.sock")]}),
        Role("relay", "mta.relay.main", {"ipc": [ipc.bind_unix(run / "relay.sock")]}),
        Role("smtp", "mta.smtp", listeners),
    ]
    return roles, listeners


def main() -> None:
    daemon.main("mtad", build)


if __name__ == "__main__":
    main()
