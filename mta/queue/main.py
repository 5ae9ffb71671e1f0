"""mtad's queue process: commits messages, schedules deliveries, retries.

The smtp process asks it to `commit` a message it has written to
incoming/; the queue then hands each due message to the relay process and
records every recipient's answer in the envelope before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from typing import Any

from common import child, ipc, log
from common.child import ChildContext
from mta.queue import scheduler, spool
from mta.queue.control import Control
from mta.queue.envelope import LMTP, SMTP, Envelope

# How long one hand-over to the relay may take before it counts as failed.
RELAY_TIMEOUT = 900.0
STOP_GRACE = 10.0


class Queue:
    def __init__(self, ctx: ChildContext) -> None:
        cfg = ctx.cfg
        self.cfg = cfg
        self.root = cfg.paths.spool
        self.stopping = ctx.stopping
        self.relay = ipc.Client(cfg.paths.run / "mta" / "relay.sock", timeout=RELAY_TIMEOUT)
        self.envs: dict[str, Envelope] = {}
        self.heap: list[tuple[float, str]] = []
        self.inflight: set[str] = set()
        self.tasks: set[asyncio.Task] = set()
        self.wake = asyncio.Event()
        self.slots = asyncio.Semaphore(cfg.mta.delivery_concurrency)
        self.log = log.get()

    def schedule(self, env: Envelope, when: float) -> None:
        env.next_try = when
        self.envs[env.id] = env
        heapq.heappush(self.heap, (when, env.id))
        self.wake.set()

    def load(self) -> None:
        envelopes, notes = spool.load(self.root)
        for note in notes:
            self.log.warning("spool clean-up", note=note)
        for env in envelopes:
            self.schedule(env, env.next_try)  # a held one is skipped when due
            self.log.info("picked up from spool", queue_id=env.id, next_try=env.next_try)

    # -- requests ------------------------------------------------------------

    async def op_commit(self, req: dict[str, Any]) -> dict[str, Any]:
        qid = str(req.get("id", ""))
        if not spool.valid_id(qid):
            raise ValueError(f"bad queue id {qid!r}")
        env = await asyncio.to_thread(spool.commit, self.root, qid)
        self.log.info(
            "queued", queue_id=qid, sender=env.sender, size=env.size,
            nrcpt=len(env.recipients), client=env.client, auth_user=env.auth_user,
        )
        self.schedule(env, time.time())
        return {}

    # -- delivery ------------------------------------------------------------

    async def _hand_over(self, env: Envelope, route: str) -> dict[str, str]:
        rcpts = [r.address for r in env.pending(route)]
        if not rcpts:
            return {}
        try:
            reply = await self.relay.call(
                "deliver", id=env.id, route=route, sender=env.sender, recipients=rcpts,
                body_8bit=env.body_8bit, smtputf8=env.smtputf8,
            )
            return {a: str(t) for a, t in reply["replies"].items()}
        except (ipc.IPCError, KeyError) as e:
            return {a: f"451 4.4.0 relay process unavailable: {e}" for a in rcpts}

    async def deliver(self, env: Envelope) -> None:
        replies: dict[str, str] = {}
        for route in (LMTP, SMTP):
            replies.update(await self._hand_over(env, route))
        for address, state, reply in scheduler.apply_replies(env, replies):
            self.log.info("delivery", queue_id=env.id, rcpt=address, state=state, reply=reply)
        now = time.time()
        if env.done:
            await asyncio.to_thread(spool.remove, self.root, env.id)
            del self.envs[env.id]
            self.log.info("removed", queue_id=env.id, **scheduler.summary(env))
            return
        if not scheduler.reschedule(env, now, self.cfg.mta.retry_schedule,
                                    self.cfg.mta.queue_lifetime):
            for r in env.recipients:
                self.log.warning("expired", queue_id=env.id, rcpt=r.address, reply=r.last_reply)
            await asyncio.to_thread(spool.remove, self.root, env.id)
            del self.envs[env.id]
            return
        await asyncio.to_thread(spool.save, self.root, env)
        self.log.info("deferred", queue_id=env.id, attempts=env.attempts,
                      retry_in_s=round(env.next_try - now, 1))
        self.schedule(env, env.next_try)

    async def _run_one(self, env: Envelope) -> None:
        try:
            await self.deliver(env)
        except Exception:
            self.log.exception("delivery round failed", queue_id=env.id)
            if env.id in self.envs:
                self.schedule(env, time.time() + scheduler.next_delay(
                    env.attempts + 1, self.cfg.mta.retry_schedule))
        finally:
            self.inflight.discard(env.id)
            self.slots.release()

    async def run(self) -> None:
        while not self.stopping.is_set():
            now = time.time()
            while self.heap and self.heap[0][0] <= now:
                when, qid = heapq.heappop(self.heap)
                env = self.envs.get(qid)
                if env is None or qid in self.inflight or env.next_try != when or env.held:
                    continue  # a stale entry (rescheduled or gone), or held by the admin
                await self.slots.acquire()
                self.inflight.add(qid)
                task = asyncio.create_task(self._run_one(env))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            timeout = max(0.0, self.heap[0][0] - time.time()) if self.heap else None
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)


async def main(ctx: ChildContext) -> None:
    q = Queue(ctx)
    spool.create_dirs(q.root)
    # A queue process orphaned by a killed parent may still be finishing its
    # deliveries: two schedulers on one spool would deliver twice.
    lock = await spool.lock_exclusive(q.root, timeout=STOP_GRACE * 3)
    q.load()
    (sock,) = ctx.sockets["ipc"]
    server = await ipc.serve(sock, {"commit": q.op_commit, **Control(q).handlers()})
    runner = asyncio.create_task(q.run())
    stop = asyncio.create_task(ctx.stopping.wait())
    log.get().info("ready", queued=len(q.envs))
    await asyncio.wait([runner, stop], return_when=asyncio.FIRST_COMPLETED)
    q.wake.set()
    await server.drain()
    if q.tasks:
        # Replies already received are recorded by the tasks; what is still
        # in flight stays pending in its envelope and is tried after restart.
        await asyncio.wait(q.tasks, timeout=STOP_GRACE)
    runner.cancel()
    lock.close()


if __name__ == "__main__":
    child.run("mtad", "queue", main)
