"""mdad's parent: binds the LMTP socket (and later IMAP and POP3), starts the roles.

Adding a protocol is one more Role in the table below.
"""

from __future__ import annotations

from common import daemon, ipc
from common.config import Config
from common.supervisor import Role


def build(cfg: Config) -> tuple[list[Role], dict[str, list]]:
    cfg.paths.mail.mkdir(parents=True, exist_ok=True)
    run = cfg.paths.run / "mda"
    # The MTA connects as another user in production: the socket is its only door.
    lmtp = ipc.bind_unix(cfg.lmtp_socket, mode=0o666)
    roles = [
        Role("auth", "mda.auth", {"ipc": [ipc.bind_unix(run / "auth.sock")]}),
        Role("lmtp", "mda.lmtp", {"lmtp": [lmtp]}),
    ]
    return roles, {}


def main() -> None:
    daemon.main("mdad", build)


if __name__ == "__main__":
    main()
