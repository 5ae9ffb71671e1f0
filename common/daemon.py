"""What both daemons' parents share: read the config, bind, supervise."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from common import config, log, privileges, tls
from common.config import Config, parse_listen
from common.supervisor import Role, Supervisor, bind_tcp


def parse_args(daemon: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=daemon, description=f"mailpair {daemon}")
    p.add_argument("-c", "--config", default=config.DEFAULT_PATH, help="TOML configuration file")
    p.add_argument("--check", action="store_true", help="check the configuration and exit")
    return p.parse_args()


def bind_listeners(items: dict[str, list[str]]) -> dict[str, list]:
    """Bind every configured address; port 0 picks a free port (tests use it)."""
    out = {}
    for name, addrs in items.items():
        out[name] = [bind_tcp(*parse_listen(a)) for a in addrs]
    return out


def bound(socks: dict[str, list]) -> dict[str, list[tuple[str, int]]]:
    return {name: [s.getsockname()[:2] for s in lst] for name, lst in socks.items()}


def load(path: str) -> tuple[Config, bytes]:
    """Configuration and TLS material, as at start and at each reload."""
    cfg = config.load(path)
    return cfg, tls.prepare(cfg.tls, cfg.hostname)


Builder = Callable[[Config], tuple[list[Role], dict[str, list]]]


def main(daemon: str, build: Builder) -> None:
    args = parse_args(daemon)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as e:
        print(f"{daemon}: {e}", file=sys.stderr)
        sys.exit(78)
    if args.check:
        print(f"{daemon}: {cfg.source}: configuration is valid")
        return
    log.setup(cfg.log.format, cfg.log.level, daemon=daemon, role="parent")
    logger = log.get()
    try:
        cfg.paths.run.mkdir(parents=True, exist_ok=True)
        _, pem = load(args.config)
        roles, listeners = build(cfg)
        for role in roles:  # a missing system user stops start-up, not a child later
            if role.creds:
                privileges.resolve(*role.creds(cfg))
    except (OSError, ValueError, privileges.PrivilegeError, config.ConfigError) as e:
        logger.error("cannot start", error=str(e))
        print(f"{daemon}: cannot start: {e}", file=sys.stderr)
        sys.exit(1)
    if not privileges.can_drop():
        logger.info("not started as root: every process keeps this user")
    sup = Supervisor(daemon, cfg, roles, load, pem)
    sys.exit(asyncio.run(sup.run(bound(listeners))))
