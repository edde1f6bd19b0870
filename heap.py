"""When the garbage collector runs, for a process whose heap is mostly its open connections.

CPython collects its older generations as the heap grows: a middle collection every ten young
ones, a full one whenever a quarter more objects have survived since the last. A storm of new
connections is exactly such growth, and none of it is garbage. In `bench/storm.py` (19,000
devices joining one process) that meant two full collections of ~0.9 s each, over ~1.6 million
objects, and twenty middle ones of 0.2-0.3 s: they were the storm's p99 (1.7 s), and ~15% of its
CPU per device.

So, once start-up is done, what survives a collection is frozen: moved, as start-up's own
heap is, where no collection walks it again. Freezing costs nothing (two lists spliced). What a
frozen object later becomes garbage of is left to a full collection, which runs on a schedule
instead of on growth:
  - when the sessions closed since the last one reach a quarter of those open (at least
    MIN_CLOSES), once the loop is calm and no store call is in flight (MAX_WAIT at most): a
    closed connection leaves its reference cycles (~27 objects: Tornado's handler, request,
    stream and HTTP connection, rollcall's transport and session) as garbage;
  - every FULL_COLLECTION_INTERVAL if anything was frozen since the last one, for garbage of
    other kinds (a query's cursor caught in flight by a young collection).
A full collection unfreezes everything, collects, and freezes what survived; it takes as long
as CPython's own (55-80 ms per 1,000 open connections on the 2-core bench machine) and logs a
line. Garbage without cycles is freed by reference counting at once, as always.

Young collections themselves pause during a burst of new connections (BURST_OPENS_PER_SECOND or
more sessions opened since the last check): what a burst allocates is mostly the connections it
opens, which each young collection scanned once only to freeze it, and found no garbage among
(issue 26's storm: ~8% of the server's CPU per device). While the burst lasts, each check freezes
what was allocated since the last, unscanned; a cycle that became garbage meanwhile waits for
the next full collection, as one among older objects always has. The first calm check freezes
the burst's last allocations and resumes young collections.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: allocations between two collections of the youngest generation (Python's default: 700);
#: under a burst each join in flight holds dozens of containers, and 700 ran ~100 young
#: collections a second
YOUNG_THRESHOLD = 10_000
#: a full collection at the latest this many seconds after the last, if anything was frozen since
FULL_COLLECTION_INTERVAL = 900.0
#: closed sessions that alone call for a full collection, however few are open
MIN_CLOSES = 1_000
#: ... or this share of the sessions open, if more
CLOSED_SHARE = 0.25
#: seconds late the check's timer may fire on a loop calm enough for a full collection
CALM_LATENESS = 0.05
#: seconds a due full collection waits for the loop to calm, at most
MAX_WAIT = 30.0
#: seconds between two looks at whether a full collection is due
CHECK_INTERVAL = 1.0
#: sessions opened per second that pause young collections: each new connection keeps ~80
#: objects that a young collection scans once for nothing (~60 µs a connection with 19,000
#: open), so below this rate they cost under 1% of a core and stay on
BURST_OPENS_PER_SECOND = 100


class Collector:
    """Freezes what survives automatic collections and schedules full ones (see the module's
    docstring). `sessions_closed` counts the sessions closed so far, `sessions_open` those open
    now; `busy` says whether a store call is in flight, which a full collection waits for."""

    def __init__(
        self,
        sessions_closed: Callable[[], int],
        sessions_open: Callable[[], int],
        interval: float = FULL_COLLECTION_INTERVAL,
        min_closes: int = MIN_CLOSES,
        check_interval: float = CHECK_INTERVAL,
        max_wait: float = MAX_WAIT,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._closed = sessions_closed
        self._open = sessions_open
        self._interval = interval
        self._min_closes = min_closes
        self._check_interval = check_interval
        self._max_wait = max_wait
        self._busy = busy
        #: when a full collection came due but waited for a wave of closes to calm
        self._waiting_since: float | None = None
        self._closed_at_last = 0
        #: sessions closed by the previous check
        self._seen = 0
        self._last = 0.0
        self._frozen_since_last = False
        #: sessions opened so far by the previous check (open now plus closed so far)
        self._opened = 0
        #: whether young collections are paused for a burst
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Freeze what start-up built, raise the young threshold, and keep the schedule from now
        on (call once start-up is done, on the running loop)."""
        gc.collect()
        self._seen = self._closed()
        self._opened = self._seen + self._open()
        self._settle(self._seen)
        gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        gc.callbacks.append(self._after_collection)
        self._schedule()

    def stop(self) -> None:
        """Stop freezing and scheduling; collections are CPython's own again."""
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._paused:
            gc.enable()
            self._paused = False

    def pace(self) -> bool:
        """Pause young collections while sessions open in a burst, resume them once it is over
        (see the module's docstring); returns whether they are paused. The schedule calls this
        every check interval, before `check`."""
        opened, self._opened = self._opened, self._closed() + self._open()
        burst = self._opened - opened >= BURST_OPENS_PER_SECOND * self._check_interval
        if burst or self._paused:
            self._freeze_new()  # the burst's allocations since the last check, unscanned
        if burst and not self._paused:
            gc.disable()
        elif self._paused and not burst:
            gc.enable()
        self._paused = burst
        return burst

    def check(self, lateness: float = 0.0) -> bool:
        """Run a full collection if one is due; returns whether it ran. The schedule calls this
        every check interval, with how late its timer fired.

        Sessions count once they closed before the previous check, so that their connections
        are gone, and their cycles garbage, when it runs. While the loop is busy (the timer
        fired over CALM_LATENESS late: a wave of closes at the end of the hour) or a store call
        is in flight (the leaves it sends), it waits, at most MAX_WAIT seconds: a full
        collection stops the process, and a store call already slow would then time out.
        """
        seen, self._seen = self._seen, self._closed()
        closed = seen - self._closed_at_last
        if closed < max(self._min_closes, CLOSED_SHARE * self._open()) and not (
            self._frozen_since_last and time.monotonic() - self._last >= self._interval
        ):
            self._waiting_since = None
            return False
        if lateness > CALM_LATENESS or self._busy():
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            if time.monotonic() - self._waiting_since < self._max_wait:
                return False
        self.collect(seen)
        return True

    def collect(self, closed: int | None = None) -> None:
        """A full collection of everything, frozen or not; what survives is frozen again.
        `closed`: the count of closed sessions it accounts for (default: all so far)."""
        closed = self._closed() if closed is None else closed
        since = closed - self._closed_at_last
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        self._settle(closed)
        log.info(
            "full garbage collection: %.0f ms, %d objects freed, %d kept, %d sessions closed "
            "since the last",
            (time.perf_counter() - started) * 1000, freed, gc.get_freeze_count(), since,
        )

    def _settle(self, closed: int) -> None:
        gc.freeze()
        self._closed_at_last = closed
        self._waiting_since = None
        self._last = time.monotonic()
        self._frozen_since_last = False

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector once it is done with its lists; freeze() only splices them
        # and zeroes the generations' counts, so no middle or full collection comes due.
        if phase == "stop":
            self._freeze_new()

    def _freeze_new(self) -> None:
        """Freeze what is not yet frozen; only a full collection walks it from now on."""
        gc.freeze()
        self._frozen_since_last = True

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + self._check_interval, self._check)

    def _check(self) -> None:
        assert self._timer is not None
        self.pace()
        self.check(asyncio.get_running_loop().time() - self._timer.when())
        self._schedule()
