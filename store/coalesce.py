"""Coalescing of concurrent requests into batches.

A join costs one PostgreSQL query and one Redis round trip; under load most of that cost is the
per-call overhead of the client libraries, not the work in the servers. Joins submitted during
one turn of the event loop are therefore sent together, at the next turn: one query for all of
them, one pipeline for all of them. Each caller still gets its own result or its own exception.

Under load a turn handles many clients' frames, so batches form without waiting; a fixed delay
(1 ms until issue 15) only added itself to every join's latency: measured with the join
benchmark, the server then sat idle waiting for its own batches (76-80% busy at 50 joins in
flight, against 85-90% without the delay, and ~15% fewer joins per second).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: items a batch takes at most. Half the joins a busy server has in flight, rather than all of
#: them: while one batch's scripts run in Redis (~27 us each), the server works on the next
#: batch instead of waiting. Measured with bench/join_bench.py (50 joins in flight, 12 rounds
#: alternating with 64): ~10% more joins a second, the server 95-97% busy against 86-90%;
#: 8 and 16 keep it busy too but cost more per join than they gain (docs/benchmarks.md).
DEFAULT_MAX_SIZE = 32
#: seconds a batch gathers items after its first: 0 runs it at the next loop turn
DEFAULT_MAX_DELAY = 0.0

# Runs one batch: a result or an exception for each item, in the items' order. Raising fails
# every item of the batch with that exception (e.g. the backend is unavailable).
BatchRunner = Callable[[Sequence[T]], Awaitable[Sequence["R | BaseException"]]]


class Coalescer(Generic[T, R]):
    """Collects submitted items and runs them in batches.

    The first item submitted while no batch is gathering starts one: a task that, when it first
    runs (at the next loop turn, or `max_delay` seconds later), takes every item submitted until
    then and runs them. A batch that reaches `max_size` items runs at once, on its own. Batches
    run concurrently: a slow batch does not hold back the next one, so the backend's own
    concurrency (a connection pool) stays usable.

    The gathering batch is its own task from the start, rather than a timer that then starts a
    task: the batch goes out at the first turn after its items came, not a turn later.
    """

    def __init__(
        self,
        run_batch: BatchRunner[T, R],
        max_size: int = DEFAULT_MAX_SIZE,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_delay < 0:
            raise ValueError("max_delay must not be negative")
        self._run_batch = run_batch
        self._max_size = max_size
        self._max_delay = max_delay
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        #: the batch's task that is gathering (will take `_items` when it runs), if any
        self._gatherer: asyncio.Task[None] | None = None
        # Strong references to running batches: the event loop only keeps weak ones.
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Queue `item` for the next batch and wait for its own result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) >= self._max_size:
            self._stop_gathering()
            self._start(self._gathered())
        elif self._gatherer is None:
            self._gatherer = self._start(None)
        return await future

    def _stop_gathering(self) -> None:
        """Cancel the gathering batch's task: it has taken nothing yet, and the caller is
        about to take its items (a full batch, or close)."""
        if self._gatherer is not None:
            self._gatherer.cancel()
            self._gatherer = None

    def _gathered(self) -> tuple[list[T], list[asyncio.Future[R]]]:
        """The items submitted so far, and their futures; the next batch starts empty."""
        batch = self._items, self._futures
        self._items, self._futures = [], []
        return batch

    def _start(
        self, batch: tuple[list[T], list[asyncio.Future[R]]] | None
    ) -> asyncio.Task[None]:
        """Run `batch` in a task of its own (None: the gathering batch, taken when it runs)."""
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _run(self, batch: tuple[list[T], list[asyncio.Future[R]]] | None) -> None:
        if batch is None:
            if self._max_delay:
                await asyncio.sleep(self._max_delay)
            self._gatherer = None
            batch = self._gathered()
        items, futures = batch
        if not items:
            return  # a full batch took them all
        try:
            results = await self._run_batch(items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"batch runner returned {len(results)} results for {len(items)} items"
                )
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(futures, results, strict=True):
            if future.done():  # the caller was cancelled meanwhile
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        """Run what is queued now and wait for every batch in flight."""
        self._stop_gathering()
        if self._items:
            self._start(self._gathered())
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
