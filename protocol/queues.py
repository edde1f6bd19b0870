"""A lean unbounded FIFO with asyncio.Queue's interface, for the queues every session holds.

python-engineio gives each session an asyncio.Queue for its output, and its Tornado handler one
more for the WebSocket frames received. An empty asyncio.Queue allocates three deques and an
Event with a fourth (~3 KB); an idle WebSocket holds two of them for its whole life. This queue
allocates its buffer and waiter lists only while they hold something (docs/benchmarks.md,
issue 15's heap profile). Same semantics as asyncio.Queue without maxsize: put never waits,
get waits in FIFO order of the getters, task_done/join count unfinished items.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


def _wake_first(waiters: list[asyncio.Future[None]] | None) -> None:
    """Wake the first waiter not yet done (cancelled ones are skipped and dropped)."""
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            return


class LeanQueue:
    """An unbounded asyncio queue that costs ~100 bytes while empty and nobody waits on it."""

    __slots__ = ("_getters", "_items", "_joiners", "_unfinished")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self._joiners: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def _put(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)

    def _get(self) -> Any:
        items = self._items
        assert items  # callers check empty() first
        item = items.popleft()
        if not items:
            self._items = None
        return item

    def put_nowait(self, item: Any) -> None:
        self._put(item)
        self._unfinished += 1
        _wake_first(self._getters)
        if not self._getters:
            self._getters = None

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if self.empty():
            raise asyncio.QueueEmpty
        return self._get()

    async def get(self) -> Any:
        while self.empty():
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                getters = self._getters
                if getters is not None and getter in getters:
                    getters.remove(getter)
                if not self.empty() and not getter.cancelled():
                    _wake_first(self._getters)  # pass the wake-up on to the next getter
                raise
        return self._get()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished and self._joiners is not None:
            joiners, self._joiners = self._joiners, None
            for joiner in joiners:
                if not joiner.done():
                    joiner.set_result(None)

    async def join(self) -> None:
        if self._unfinished:
            joiner = asyncio.get_running_loop().create_future()
            if self._joiners is None:
                self._joiners = []
            self._joiners.append(joiner)
            await joiner
