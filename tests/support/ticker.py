"""Loop iterations, counted: what a test of work spread over iterations measures by."""

from __future__ import annotations

import asyncio


class Ticker:
    """Counts loop iterations: one callback, re-scheduled with call_soon, runs once in each."""

    def __init__(self) -> None:
        self.now = 0
        self._handle: asyncio.Handle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.now += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        assert self._handle is not None
        self._handle.cancel()
