"""The requests answered by the one process of a daemon that reads the users file.

mtad's lookup process and mdad's auth process serve these over IPC; the
network-facing processes ask them instead of reading credentials.
"""

from __future__ import annotations

import asyncio
from typing import Any

from common import ipc, log
from common.child import ChildContext
from common.passwords import Verifier
from common.senders import owns
from common.users import UserDB, normalize


class UserService:
    def __init__(self, ctx: ChildContext) -> None:
        cfg = ctx.cfg
        self.db = UserDB(cfg.paths.users, cfg.paths.aliases, cfg.domains)
        self.send_as = {normalize(k): v for k, v in cfg.mta.send_as.items()}
        self.verifier = Verifier(ttl=cfg.auth.cache_ttl)
        self.failure_delay = cfg.auth.failure_delay
        self.log = log.get()

    async def auth(self, req: dict[str, Any]) -> dict[str, Any]:
        user = normalize(str(req.get("user", "")))
        password = str(req.get("password", ""))
        record = self.db.get(user)
        if record is None:
            valid = False
        else:
            valid = await self.verifier.verify(user, record.password_hash, password)
        if not valid:
            self.log.info("authentication failed", user=user, service=req.get("service"))
            await asyncio.sleep(self.failure_delay)
        return {"valid": valid, "user": record.address if valid and record else None}

    async def resolve(self, req: dict[str, Any]) -> dict[str, Any]:
        r = self.db.resolve(str(req.get("address", "")))
        return {"kind": r.kind, "targets": list(r.targets)}

    async def sender(self, req: dict[str, Any]) -> dict[str, Any]:
        """May this login use this MAIL FROM (common/senders.py)?"""
        login = normalize(str(req.get("login", "")))
        sender = normalize(str(req.get("sender", "")))
        r = self.db.resolve(sender)
        reaches = r.targets if r.kind == "local" else ()
        return {"allowed": owns(login, sender, reaches, self.send_as.get(login, ()))}

    async def user(self, req: dict[str, Any]) -> dict[str, Any]:
        record = self.db.get(str(req.get("address", "")))
        if record is None:
            return {"exists": False}
        return {"exists": True, "address": record.address, "fields": record.fields}

    def handlers(self) -> dict[str, ipc.Handler]:
        return {"auth": self.auth, "resolve": self.resolve, "user": self.user,
                "sender": self.sender}


async def serve(ctx: ChildContext) -> None:
    service = UserService(ctx)
    (sock,) = ctx.sockets["ipc"]
    server = await ipc.serve(sock, service.handlers())
    log.get().info("ready")
    await ctx.stopping.wait()
    await server.drain()
