"""Presence heals itself: this process's heartbeat, the retry of leaves that could not reach
Redis, and the sweep of what dead processes held (docs/redis-keys.md, "Lifecycle").

One task, every `--liveness-interval` seconds:

1. renew this process's liveness key (TTL `--liveness-ttl`, store/liveness.py). If a survivor
   has swept this process meanwhile (it was frozen, or cut off from Redis, for longer than the
   TTL), everything it held has been cleared: it drops every connection (its clients reconnect
   and join again, the newest join owning the presence) and starts over under a new id. It writes
   nothing back: its join script refuses from the moment of the claim.
2. retry the leaves kept while Redis was unreachable (handlers/connections.py);
3. find the registered processes whose liveness key has lapsed, claim each, and sweep it.

A join refused because this process was swept wakes the task at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import metrics
from handlers.connections import Connections
from store.errors import StoreUnavailable
from store.liveness import Claim, ClaimLost, Liveness, Renewal
from store.presence import SWEPT_TTL
from tasks import cancel_and_wait

log = logging.getLogger(__name__)


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
        """One heartbeat: renew (or start over), retry kept leaves, sweep dead processes."""
        try:
            if not await self._renew():
                return
            await self._connections.retry_pending()
            for dead in await self._liveness.dead_processes():
                if self._renewal_due() and not await self._renew():
                    return  # sweeping many dead processes must not let this one lapse
                await self._sweep(dead)
        except StoreUnavailable as exc:
            if not self._unreachable:
                log.warning("heartbeat: %s; retrying every %g s", exc, self._interval)
            self._unreachable = True
        except Exception:
            log.exception("heartbeat failed")

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
                "liveness of process %s had lapsed (a stall or a Redis restart); nobody swept "
                "it, so it carries on",
                self._liveness.process_id,
            )
        if self._unreachable:
            log.info("heartbeat: Redis answers again")
            self._unreachable = False
        self._renewed = asyncio.get_running_loop().time()
        return True

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
