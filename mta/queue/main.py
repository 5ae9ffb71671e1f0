"""mtad's queue process: commits messages, schedules deliveries, retries, bounces.

The smtp process hands messages in over queue.sock (intake.py: open,
commit, discard, nothing else); the administrator's requests come over
control.sock, which only root may enter (control.py). The queue hands each
due message to the relay process as a read-only descriptor, its local
recipients in one hand-over and the others one per domain, all at once, and
records every recipient's answer in the envelope before anything else.
Failures that are final, and the end of the queue lifetime, make a DSN to
the sender (bounce.py); a message leaves the spool only once its DSN is
queued, so a DSN that meets a full disk is tried again, not lost.
While the MDA does not answer, local mail waits for it and goes in order
of arrival once it is back (routes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import time

from common import child, ipc, log
from common.child import ChildContext
from mta.queue import scheduler, spool
from mta.queue.bounce import Bounces
from mta.queue.control import Control
from mta.queue.envelope import DELIVERED, FAILED, LMTP, SMTP, Envelope
from mta.queue.intake import Intake
from mta.queue.limits import DomainSlots
from mta.queue.routes import LmtpRoute

# How long one hand-over to the relay may take before it counts as failed:
# LMTP to our own MDA, and SMTP, which may try several slow MX hosts.
RELAY_TIMEOUT = 900.0
SMTP_TIMEOUT = 3600.0
# Messages being delivered at once (Postfix's active queue); the real limits
# are per route and per destination domain, below.
ACTIVE_LIMIT = 10000
STOP_GRACE = 10.0
# How soon a DSN that could not be written (a full disk) is tried again, at most.
DSN_RETRY = 60.0


class Queue:
    def __init__(self, ctx: ChildContext) -> None:
        cfg = ctx.cfg
        self.cfg = cfg
        self.root = cfg.paths.spool
        self.stopping = ctx.stopping
        run = cfg.paths.run / "mta"
        self.relay = ipc.Client(run / "relay.sock", timeout=RELAY_TIMEOUT)
        self.bounces = Bounces(cfg, ipc.Client(run / "lookup-queue.sock", timeout=30))
        self.envs: dict[str, Envelope] = {}
        self.heap: list[tuple[float, str]] = []
        self.inflight: set[str] = set()
        self.tasks: set[asyncio.Task] = set()
        self.wake = asyncio.Event()
        self.active = asyncio.Semaphore(ACTIVE_LIMIT)
        self.lmtp_slots = asyncio.Semaphore(cfg.mta.delivery_concurrency)
        self.smtp_slots = asyncio.Semaphore(cfg.relay.max_connections)
        self.domains = DomainSlots(cfg.relay.max_connections_per_domain)
        self.log = log.get()
        self.route = LmtpRoute(self._probe, self._release, self._overdue, self.log)

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

    async def committed(self, env: Envelope) -> None:
        if env.id in self.envs:
            return  # sent again after a reload; this process loaded it from the spool
        self.log.info(
            "queued", queue_id=env.id, sender=env.sender, size=env.size,
            nrcpt=len(env.recipients), client=env.client, auth_user=env.auth_user,
        )
        self.schedule(env, time.time())

    # -- the LMTP route (routes.py) -----------------------------------------------

    async def _probe(self) -> str | None:
        reply = await self.relay.call("probe", timeout=120)
        return None if reply.get("up") else str(reply.get("error"))

    def _release(self, backlog: list[Envelope]) -> None:
        """Due at once, in the order given: the heap would order equal times by queue id."""
        now = time.time()
        for i, env in enumerate(backlog):
            if env.id in self.envs:  # not deleted by the administrator meanwhile
                self.schedule(env, now + i * 1e-6)

    def _overdue(self, env: Envelope) -> bool:
        """Late enough to expire, or to warn its sender, even while it waits for the MDA."""
        now = time.time()
        return (now - env.created >= self.cfg.mta.queue_lifetime
                or scheduler.delay_warning_due(env, now, self.cfg.relay.delay_warning))

    def _waits_for_mda(self, env: Envelope) -> bool:
        return (self.route.down and bool(env.pending(LMTP)) and not env.pending(SMTP)
                and not self._overdue(env))

    # -- delivery ------------------------------------------------------------

    async def _hand_over(self, env: Envelope, route: str, domain: str | None,
                         rcpts: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        timeout = RELAY_TIMEOUT if route == LMTP else SMTP_TIMEOUT
        try:
            # The relay reads the message from this descriptor: it has no right to the spool.
            fd = await asyncio.to_thread(spool.open_message, self.root, env.id)
        except OSError as e:
            return {a: f"451 4.3.0 message file unreadable: {e}" for a in rcpts}, {}
        try:
            reply, _ = await self.relay.call_fds(
                "deliver", fds=[fd], timeout=timeout, id=env.id, route=route, domain=domain,
                sender=env.sender, recipients=rcpts, body_8bit=env.body_8bit,
                smtputf8=env.smtputf8, sign=route != LMTP and env.ours_to_sign,
            )
            replies = {a: str(t) for a, t in reply["replies"].items()}
            return replies, {a: str(h) for a, h in reply.get("remote", {}).items()}
        except (ipc.IPCError, KeyError, AttributeError) as e:
            return {a: f"451 4.4.0 relay process unavailable: {e}" for a in rcpts}, {}
        finally:
            os.close(fd)

    async def _group(self, env: Envelope, route: str, domain: str | None, rcpts: list[str],
                     record: asyncio.Lock) -> None:
        """Hand one route's (or one domain's) recipients over; record the answers at once."""
        if route == LMTP:
            async with self.lmtp_slots:
                if self.route.down:
                    return  # not tried: they stay pending without an attempt
                replies, remote = await self._hand_over(env, route, None, rcpts)
            self.route.saw(replies)
        else:
            assert domain is not None
            async with self.domains.slot(domain), self.smtp_slots:
                replies, remote = await self._hand_over(env, route, domain, rcpts)
        async with record:
            changes = scheduler.apply_replies(env, replies, remote)
            for address, state, reply in changes:
                self.log.info("delivery", queue_id=env.id, rcpt=address, state=state,
                              reply=reply, route=route, host=remote.get(address))
            if any(state == DELIVERED for _, state, _ in changes) and not env.done:
                # Delivered is final: a crash now must not deliver it again.
                await asyncio.to_thread(spool.save, self.root, env)

    async def deliver(self, env: Envelope) -> None:
        pending_before = {r.address for r in env.pending()}
        groups: list[tuple[str, str | None, list[str]]] = []
        local = [r.address for r in env.pending(LMTP)]
        if local:
            groups.append((LMTP, None, local))
        by_domain: dict[str, list[str]] = {}
        for r in env.pending(SMTP):
            by_domain.setdefault(r.address.rpartition("@")[2].lower(), []).append(r.address)
        groups += [(SMTP, d, rcpts) for d, rcpts in by_domain.items()]
        record = asyncio.Lock()
        await asyncio.gather(*(self._group(env, *g, record) for g in groups))
        failed_now = [r for r in env.recipients
                      if r.state == FAILED and r.address in pending_before]
        now = time.time()
        if not env.done and self._waits_for_mda(env):
            env.unreported += [r.address for r in failed_now if r.address not in env.unreported]
            await self._report_failed(env)
            await asyncio.to_thread(spool.save, self.root, env)
            self.route.park(env)
            return
        if not env.done and not scheduler.reschedule(env, now, self.cfg.mta.retry_schedule,
                                                     self.cfg.mta.queue_lifetime):
            failed_now = [r for r in env.recipients
                          if r.state == FAILED and r.address in pending_before]
            for r in failed_now:
                if r.last_reply.startswith("4.4.7"):
                    self.log.warning("expired", queue_id=env.id, rcpt=r.address,
                                     reply=r.last_reply)
        # Noted before the DSN is tried: what is not reported yet keeps the message.
        env.unreported += [r.address for r in failed_now if r.address not in env.unreported]
        reported = await self._report_failed(env)
        if env.done:
            if reported:
                await self._remove(env)
            else:
                await self._keep_for_dsn(env)
            return
        if scheduler.delay_warning_due(env, now, self.cfg.relay.delay_warning) and \
                await self._tell(self.bounces.delayed, env, env.pending()):
            env.delay_warned = True
        await asyncio.to_thread(spool.save, self.root, env)
        self.log.info("deferred", queue_id=env.id, attempts=env.attempts,
                      retry_in_s=round(env.next_try - now, 1))
        self.schedule(env, env.next_try)

    async def _tell(self, make, env: Envelope, recipients: list) -> bool:
        """Queue a DSN (make: Bounces.failed or .delayed) and schedule it at once;
        False when it could not be written (the spool's disk is full)."""
        try:
            dsn = await make(env, recipients)
        except OSError as e:
            self.log.warning("DSN not written; tried again later", queue_id=env.id,
                             rcpts=[r.address for r in recipients], error=str(e))
            return False
        if dsn is not None:
            self.schedule(dsn, time.time())
        return True

    async def _report_failed(self, env: Envelope) -> bool:
        """The DSN for env.unreported; True once nothing is left to report."""
        if not env.unreported:
            return True
        waiting = set(env.unreported)
        if not await self._tell(self.bounces.failed, env,
                                [r for r in env.recipients if r.address in waiting]):
            return False
        env.unreported = []
        return True

    async def _keep_for_dsn(self, env: Envelope) -> None:
        """Every recipient is done, but a DSN is still owed: keep the message until it is made."""
        env.next_try = time.time() + min(DSN_RETRY, self.cfg.mta.retry_schedule[0])
        try:
            await asyncio.to_thread(spool.save, self.root, env)
        except OSError as e:  # the same full disk: the copy in memory is tried again
            self.log.warning("envelope not saved", queue_id=env.id, error=str(e))
        self.schedule(env, env.next_try)

    async def _remove(self, env: Envelope) -> None:
        await asyncio.to_thread(spool.remove, self.root, env.id)
        self.envs.pop(env.id, None)
        self.log.info("removed", queue_id=env.id, **scheduler.summary(env))

    async def bounce_now(self, env: Envelope, reason: str) -> list[str]:
        """Fail every pending recipient with reason, tell the sender, drop the message."""
        failed = env.pending()
        for r in failed:
            r.state, r.last_reply, r.remote_mta = FAILED, reason, ""
            self.log.info("delivery", queue_id=env.id, rcpt=r.address, state=FAILED,
                          reply=reason)
        env.unreported += [r.address for r in failed if r.address not in env.unreported]
        if await self._report_failed(env):
            await self._remove(env)
        else:
            await self._keep_for_dsn(env)
        self.wake.set()
        return [r.address for r in failed]

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
            self.active.release()

    async def run(self) -> None:
        while not self.stopping.is_set():
            now = time.time()
            while self.heap and self.heap[0][0] <= now:
                when, qid = heapq.heappop(self.heap)
                env = self.envs.get(qid)
                if env is None or qid in self.inflight or env.next_try != when or env.held:
                    continue  # a stale entry (rescheduled or gone), or held by the admin
                if self._waits_for_mda(env):
                    self.route.park(env)
                    continue
                await self.active.acquire()
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
    intake = Intake(q.cfg, q.committed)
    # queue.sock, which smtp may enter, offers only the intake; the
    # administrator's requests come over control.sock (root's alone).
    (sock,) = ctx.sockets["ipc"]
    (control_sock,) = ctx.sockets["control"]
    server = await ipc.serve(sock, intake.handlers())
    control = await ipc.serve(control_sock, Control(q).handlers())
    cleaner = asyncio.create_task(intake.clean_now_and_then())
    runner = asyncio.create_task(q.run())
    stop = asyncio.create_task(ctx.stopping.wait())
    log.get().info("ready", queued=len(q.envs))
    await asyncio.wait([runner, stop], return_when=asyncio.FIRST_COMPLETED)
    q.wake.set()
    cleaner.cancel()
    await control.drain()
    await server.drain()
    if q.tasks:
        # Replies already received are recorded by the tasks; what is still
        # in flight stays pending in its envelope and is tried after restart.
        await asyncio.wait(q.tasks, timeout=STOP_GRACE)
    runner.cancel()
    await q.route.close()
    lock.close()


if __name__ == "__main__":
    child.run("mtad", "queue", main)
