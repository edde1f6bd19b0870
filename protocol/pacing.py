"""Work that comes in bursts, run a slice per loop iteration so that the loop keeps polling.

A school leaving at once is ~19 000 connections ending within a fraction of a second. Tornado
notices all of those ends in one poll, and each session's close (python-engineio's bookkeeping,
then the disconnect handler up to its Redis call) ran at once: two loop iterations of over a
second each, while a /healthz probe and every held connection's PONG waited (docs/benchmarks.md,
the teardown). A ``Pacer`` runs what is queued on it in arrival order, at most ``per_turn`` calls
an iteration, so the same work is spread over many short iterations. Nothing is dropped or
reordered; a call only waits for the calls queued before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

_log = logging.getLogger(__name__)

#: calls run per loop iteration: a session's close is ~60 µs, so ~4 ms of an iteration
PER_TURN = 64


class Pacer:
    """A FIFO of calls, drained ``per_turn`` at a time, one slice per loop iteration."""

    __slots__ = ("_calls", "_scheduled", "per_turn")

    def __init__(self, per_turn: int = PER_TURN) -> None:
        if per_turn < 1:
            raise ValueError(f"per_turn must be at least 1, not {per_turn}")
        self.per_turn = per_turn
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._scheduled = False

    def __len__(self) -> int:
        """Calls queued and not yet run."""
        return len(self._calls)

    def call(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` in a later loop iteration, after every call queued before it."""
        self._calls.append((func, args))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def flush(self) -> None:
        """Run every queued call now (a shutdown, which must not leave any behind)."""
        self._run(len(self._calls))

    def _turn(self) -> None:
        self._scheduled = False
        self._run(self.per_turn)
        if self._calls:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _run(self, count: int) -> None:
        calls = self._calls
        for _ in range(min(count, len(calls))):
            func, args = calls.popleft()
            try:
                func(*args)
            except Exception:
                _log.exception("paced call %r failed", func)
