"""Presence heals itself: this process's heartbeat, the retry of leaves that could not reach
Redis, and the sweep of what dead processes held (docs/redis-keys.md, "Lifecycle").

One task, every `--liveness-interval` seconds:

1. renew this process's liveness key (TTL `--liveness-ttl`, store/liveness.py). If a survivor
   has swept this process meanwhile (it was frozen, or cut off from Redis, for longer than the
   TTL), everything it held has been cleared: it drops every connection (its clients reconnect
   and join again, the newest join owning the presence) and starts over under a new id. It writes
   nothing back: its join script refuses from the moment of the claim.
2. notice whether Redis lost what this process wrote: its liveness registration is gone (renew
   found it lapsed: a FLUSHALL, a restart without persistence), or another Redis server answers
   (its run id changed: a failover, a restart). If so, re-assert the presence of every live
   connection (handlers/reassertion.py), and sweep nobody for one liveness TTL: the other live
   processes need up to their heartbeat interval to register again, and must not look dead;
3. retry the leaves kept while Redis was unreachable (handlers/connections.py);
4. find the registered processes whose liveness key has lapsed, claim each, and sweep it.

A join refused because this process was swept wakes the task at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import ConnectionError as RedisConnectionError

import metrics
from handlers.connections import Connections
from handlers.reassertion import Reasserter
from store.errors import StoreUnavailable
from store.liveness import Claim, ClaimLost, Liveness, Renewal
from store.presence import SWEPT_TTL
from tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: why presence is re-asserted (the `reason` of its log line)
LOSS_REGISTRATION = "registration_lost"
LOSS_SERVER = "server_changed"


class Sweeper:
    """Runs the heartbeat and the sweep of one process; server.py starts it, stops it, and
    retires the process's records at a graceful stop."""

    def __init__(
        self,
        liveness: Liveness,
        connections: Connections,
        drop_connections: Callable[[], Awaitable[None]],
        interval: float,
    ) -> None:
        self._liveness = liveness
        self._connections = connections
        self._drop_connections = drop_connections
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        #: loop time of the last renewal that reached Redis (None before the first)
        self._renewed: float | None = None
        self._unreachable = False
        self._reasserter = Reasserter(liveness.presence, connections)
        #: the run id of the Redis server the last heartbeat reached (None before the first)
        self._run_id: str | None = None
        #: False once Redis refused INFO: the run id is not asked again
        self._ask_run_id = True
        #: why presence must be re-asserted (None: it need not); kept until a re-assertion ends
        self._loss: str | None = None
        #: loop time before which nobody is swept (after a loss: see the module's docstring)
        self._sweep_after = 0.0

    async def start(self) -> None:
        """Register this process (if Redis answers: it may be down at start), sweep the dead
        ones found, then keep doing so every interval."""
        await self.tick()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the task; a sweep it was running is resumed by any live process later."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def retire(self) -> None:
        """At a graceful stop, after every connection's leave ran: retry the kept leaves, then
        remove this process's records, clearing what it still holds. If Redis does not answer,
        its liveness key lapses and a survivor sweeps it instead."""
        try:
            await self._connections.retry_pending()
            result = await self._liveness.retire()
        except StoreUnavailable as exc:
            log.warning("process records not removed (%s); a survivor will sweep them", exc)
            return
        log.info(
            "retired",
            extra={
                "event": "retire",
                "process_id": result.process_id,
                "ghosts": result.ghosts,
                "cleared": result.fields,
            },
        )

    async def _run(self) -> None:
        swept = self._liveness.swept
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await swept.wait()
            await self.tick()

    async def tick(self) -> None:
        """One heartbeat: renew (or start over), re-assert presence if Redis lost it, retry kept
        leaves, sweep dead processes."""
        try:
            try:
                await self._beat()
            except StoreUnavailable as exc:
                if not isinstance(exc.__cause__, RedisConnectionError):
                    raise
                # A pooled connection that Redis had closed (it restarted, or failed over): so
                # may every idle one have been. Drop them, and beat once more on new ones.
                await self._liveness.presence.drop_idle_connections()
                await self._beat()
        except StoreUnavailable as exc:
            if not self._unreachable:
                log.warning("heartbeat: %s; retrying every %g s", exc, self._interval)
            self._unreachable = True
        except Exception:
            log.exception("heartbeat failed")

    async def _beat(self) -> None:
        if not await self._renew():
            return
        await self._check_server()
        if self._loss is not None:
            await self._reassert()
        await self._connections.retry_pending()
        if asyncio.get_running_loop().time() < self._sweep_after:
            return
        for dead in await self._liveness.dead_processes():
            if self._renewal_due() and not await self._renew():
                return  # sweeping many dead processes must not let this one lapse
            await self._sweep(dead)

    def _renewal_due(self) -> bool:
        renewed = self._renewed
        return renewed is None or asyncio.get_running_loop().time() - renewed >= self._interval

    async def _renew(self) -> bool:
        """Renew this process's liveness, starting over first if it was swept; whether it is
        registered now."""
        now = asyncio.get_running_loop().time()
        if self._liveness.swept.is_set() or (
            self._renewed is not None and now - self._renewed > SWEPT_TTL
        ):
            await self._start_over()
        renewal = await self._liveness.renew()
        if renewal is Renewal.SWEPT:
            await self._start_over()
            renewal = await self._liveness.renew()
            if renewal is Renewal.SWEPT:  # a fresh random id: only if the keys were tampered with
                return False
        if renewal is Renewal.REVIVED and self._renewed is not None:
            metrics.LIVENESS_LAPSES.labels("revived").inc()
            log.warning(
                "liveness of process %s had lapsed (a stall, or Redis lost it); nobody swept "
                "it, so it carries on and re-asserts its presence",
                self._liveness.process_id,
            )
            self._notice_loss(LOSS_REGISTRATION)
        if self._unreachable:
            log.info("heartbeat: Redis answers again")
            self._unreachable = False
        self._renewed = asyncio.get_running_loop().time()
        return True

    async def _check_server(self) -> None:
        """Notice another Redis server answering than at the last heartbeat (a failover or a
        restart), which may have lost what this process wrote."""
        if not self._ask_run_id:
            return
        run_id = await self._liveness.server_run_id()
        if run_id is None:
            self._ask_run_id = False
            log.warning(
                "Redis refuses INFO server: a restart or failover is noticed only when it lost "
                "this process's liveness registration"
            )
            return
        previous, self._run_id = self._run_id, run_id
        if previous is None or previous == run_id:
            return
        metrics.PRIMARY_SWITCHES.inc()
        log.info(
            "another Redis server answers (run id %s, was %s): a failover or a restart",
            run_id,
            previous,
            extra={"event": "redis_switch", "run_id": run_id, "previous_run_id": previous},
        )
        self._notice_loss(LOSS_SERVER)

    def _notice_loss(self, reason: str) -> None:
        self._loss = self._loss or reason
        self._sweep_after = asyncio.get_running_loop().time() + self._liveness.ttl

    async def _reassert(self) -> None:
        """Write the presence of every live connection again; a round that does not finish
        within one interval (or meets Redis down) is run again at the next heartbeat."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._interval):
                result, connections, runs = await self._reasserter.run()
        except TimeoutError:
            log.warning(
                "re-assertion unfinished after %g s; again at the next heartbeat", self._interval
            )
            return
        reason, self._loss = self._loss, None
        metrics.REASSERTIONS.inc()
        metrics.REASSERTED_KEYS.inc(result.keys)
        log.info(
            "presence re-asserted",
            extra={
                "event": "reassert",
                "reason": reason,
                "process_id": self._liveness.process_id,
                "connections": connections,
                "rewritten": result.keys,
                "fields": result.fields,
                "seat_maps": result.seat_maps,
                "rosters": result.rosters,
                "held": result.held,
                "round_trips": runs,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    async def _start_over(self) -> None:
        """This process was declared dead and swept: drop every connection (their leaves run
        under the swept id, which hands nothing over), then take a new id."""
        old = self._liveness.process_id
        metrics.LIVENESS_LAPSES.labels("swept").inc()
        log.warning(
            "process %s was swept by a survivor (it stalled past its liveness TTL); dropping "
            "its connections and starting over",
            old,
        )
        await self._drop_connections()
        new = self._liveness.start_over()
        self._renewed = None
        log.warning("process %s starts over as %s", old, new)

    async def _sweep(self, dead: str) -> None:
        """Claim and sweep one dead process. Only Redis not answering stops the heartbeat's
        round: anything else (bookkeeping keys someone overwrote) is logged, and the other dead
        processes are still swept."""
        started = time.perf_counter()
        try:
            if await self._liveness.claim(dead) is not Claim.CLAIMED:
                return  # alive again, or another live process sweeps it
            result = await self._liveness.sweep(dead)
        except ClaimLost:
            log.info("sweep of %s taken over by another process", dead)
            return
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("sweep of %s failed", dead)
            return
        metrics.PROCESSES_SWEPT.inc()
        metrics.GHOSTS_SWEPT.inc(result.ghosts)
        log.info(
            "swept dead process",
            extra={
                "event": "sweep",
                "process_id": dead,
                "entries": result.entries,
                "ghosts": result.ghosts,
                "cleared": result.fields,
                "rosters": result.rosters,
                "malformed": result.malformed,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
