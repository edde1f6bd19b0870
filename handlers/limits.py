"""The per-connection limit on join_lesson: a token bucket per connection (`--join-rate`,
`--join-burst`).

Every join costs a PostgreSQL query and a Redis script run. A client that retries in a tight loop,
by bug or on purpose, must cost the databases nothing more than its fair share: past the limit it
is answered RATE_LIMITED before any I/O, and before the request is even validated.

The handler keys the buckets by Engine.IO session id, not by Socket.IO sid: a client can leave and
re-join the namespace (`41` then `40`) on the same session as often as it likes, and each time
gets a new sid, which must not come with a full bucket.

A bucket that has refilled is the same as no bucket, so full buckets are forgotten on a periodic
sweep: memory follows the connections that joined within the last burst / rate seconds, and the
limiter never needs to hear about disconnects.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from handlers.errors import RateLimited

UNLIMITED = 0.0


class JoinRateLimiter:
    """Allows each key (a connection) `burst` joins at once, then `rate` joins per second; rate 0
    is unlimited."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        #: key -> (tokens left, when they were counted); only buckets that are not full
        self._buckets: dict[str, tuple[float, float]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        """The number of buckets remembered (the limiter's memory)."""
        return len(self._buckets)

    def take(self, key: str) -> None:
        """Count one join of `key`, or raise RateLimited (saying when to retry) without counting."""
        if self.rate == UNLIMITED:
            return
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < 1:
            raise RateLimited(
                f"too many join_lesson requests; retry in {(1 - tokens) / self.rate:.1f} s"
            )
        self._buckets[key] = (tokens - 1, now)
        if now >= self._next_sweep:
            self._sweep(now)

    def _tokens(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.burst)
        tokens, counted = bucket
        return min(float(self.burst), tokens + (now - counted) * self.rate)

    def _sweep(self, now: float) -> None:
        """Forget the buckets that have refilled; runs at most once per refill time."""
        self._next_sweep = now + self.burst / self.rate
        full = [key for key in self._buckets if self._tokens(key, now) >= self.burst]
        for key in full:
            del self._buckets[key]
