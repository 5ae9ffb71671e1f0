"""The queue's administrative requests, as mta-ctl sends them."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from common import ipc, log
from mta.queue import spool
from mta.queue.envelope import Envelope

if TYPE_CHECKING:
    from mta.queue.main import Queue

# What `queue show` prints of the message: its header, not the whole body.
SHOW_BYTES = 16 * 1024


# What the administrator's `queue bounce` tells the sender (RFC 3463: other, permanent).
ADMIN_BOUNCE = "5.0.0 bounced by the administrator"


def last_error(e: Envelope) -> str:
    """The latest reply that kept a recipient waiting, as `postqueue -p` shows it."""
    for r in e.pending():
        if r.last_reply:
            return r.last_reply
    return ""


def summary(e: Envelope, active: bool = False) -> dict[str, Any]:
    return {"id": e.id, "sender": e.sender, "size": e.size, "created": e.created,
            "next_try": e.next_try, "attempts": e.attempts, "held": e.held,
            "active": active, "last_error": last_error(e),
            "recipients": [vars(r) for r in e.recipients]}


class Control:
    def __init__(self, queue: Queue) -> None:
        self.q = queue
        self.log = log.get()

    def _find(self, req: dict[str, Any]) -> Envelope:
        qid = str(req.get("id", "")).upper()
        env = self.q.envs.get(qid)
        if env is None:
            raise KeyError(f"no message {qid} in the queue")
        return env

    async def list(self, req: dict[str, Any]) -> dict[str, Any]:
        envs = sorted(self.q.envs.values(), key=lambda e: e.created)
        return {"messages": [summary(e, e.id in self.q.inflight) for e in envs]}

    async def show(self, req: dict[str, Any]) -> dict[str, Any]:
        env = self._find(req)
        path = spool.message_path(self.q.root, env.id)

        def head() -> bytes:
            with open(path, "rb") as f:
                return f.read(SHOW_BYTES)
        data = await asyncio.to_thread(head)
        return {**summary(env, env.id in self.q.inflight),
                "message": data.decode("utf-8", "replace")}

    async def flush(self, req: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        ids = [str(req["id"]).upper()] if req.get("id") else list(self.q.envs)
        n = 0
        for qid in ids:
            env = self.q.envs.get(qid)
            if env is None:
                raise KeyError(f"no message {qid} in the queue")
            if qid not in self.q.inflight and not env.held:
                self.q.schedule(env, now)
                n += 1
        return {"flushed": n}

    async def hold(self, req: dict[str, Any]) -> dict[str, Any]:
        env = self._find(req)
        env.held = True
        await asyncio.to_thread(spool.save, self.q.root, env)
        self.log.info("held", queue_id=env.id)
        return {"id": env.id}

    async def release(self, req: dict[str, Any]) -> dict[str, Any]:
        env = self._find(req)
        env.held = False
        await asyncio.to_thread(spool.save, self.q.root, env)
        self.q.schedule(env, time.time())
        self.log.info("released", queue_id=env.id)
        return {"id": env.id}

    async def delete(self, req: dict[str, Any]) -> dict[str, Any]:
        env = self._find(req)
        if env.id in self.q.inflight:
            raise RuntimeError(f"{env.id} is being delivered right now; hold it or try again")
        del self.q.envs[env.id]
        await asyncio.to_thread(spool.remove, self.q.root, env.id)
        self.log.warning("deleted by the administrator", queue_id=env.id,
                         recipients=[r.address for r in env.pending()])
        return {"id": env.id}

    async def bounce(self, req: dict[str, Any]) -> dict[str, Any]:
        env = self._find(req)
        if env.id in self.q.inflight:
            raise RuntimeError(f"{env.id} is being delivered right now; hold it or try again")
        self.log.warning("bounced by the administrator", queue_id=env.id,
                         recipients=[r.address for r in env.pending()])
        failed = await self.q.bounce_now(env, ADMIN_BOUNCE)
        return {"id": env.id, "recipients": failed}

    def handlers(self) -> dict[str, ipc.Handler]:
        return {"list": self.list, "show": self.show, "flush": self.flush, "hold": self.hold,
                "release": self.release, "delete": self.delete, "bounce": self.bounce}
