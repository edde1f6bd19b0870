"""The process-wide cap on Engine.IO connections (``max_connections``).

Every open connection costs the process a file descriptor, and the kernel's open-file limit
is a wall: past it ``accept()`` fails and the process can neither answer a new client nor open a
socket to Redis. The cap sits below that wall, so that a storm of devices is answered at once
with HTTP 503 (a WebSocket before its 101) while the connections already held, and the store
pools, keep working.

A place is what the per-address limit counts too: an open session, or a handshake in progress
(the engine's ``reserve`` takes one, its session keeps it, its end gives it back).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

UNLIMITED = 0
#: at most one WARNING about refused handshakes per this many seconds
REPORT_INTERVAL = 10.0

_log = logging.getLogger(__name__)


class Admission:
    """Counts the places taken and refuses a new one once ``limit`` are (UNLIMITED: never).

    Refusals are logged as one WARNING per `report_interval` with their count, not one line
    each: a storm past the limit is thousands of them. The first is logged at once, the rest at
    the end of the interval they fell in."""

    __slots__ = ("_clock", "_interval", "_next_report", "_report_timer", "_unreported", "limit",
                 "refused", "taken")

    def __init__(
        self,
        limit: int = UNLIMITED,
        clock: Callable[[], float] = time.monotonic,
        report_interval: float = REPORT_INTERVAL,
    ) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit
        #: places held: open sessions and handshakes in progress
        self.taken = 0
        #: handshakes refused because every place was taken
        self.refused = 0
        self._clock = clock
        self._interval = report_interval
        self._unreported = 0
        self._next_report = 0.0
        self._report_timer: asyncio.TimerHandle | None = None

    def admit(self) -> bool:
        """Whether a new handshake may take a place; a refusal is counted."""
        if self.limit != UNLIMITED and self.taken >= self.limit:
            self.refused += 1
            self._unreported += 1
            now = self._clock()
            if now >= self._next_report:
                self._report()
            elif self._report_timer is None:  # the rest of this interval's, at its end
                self._report_timer = asyncio.get_running_loop().call_later(
                    self._next_report - now, self._report
                )
            return False
        return True

    def _report(self) -> None:
        self._report_timer = None
        if self._unreported:
            _log.warning("refused %d handshakes with HTTP 503: %d connections open "
                         "(max_connections)", self._unreported, self.taken)
        self._unreported = 0
        self._next_report = self._clock() + self._interval

    def opened(self) -> None:
        """One place more is held."""
        self.taken += 1

    def closed(self) -> None:
        """One place is given back."""
        self.taken -= 1
