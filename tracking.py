"""Mixpanel tracking, kept off the event loop.

The mixpanel library is synchronous: each event is a blocking HTTP request. Events are therefore
queued (bounded: when Mixpanel is slow or down, the oldest events are dropped, not piled up)
and sent by one worker thread with a request timeout. Tracking never delays or changes an ack.
Without a Mixpanel token the tracker is off.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

import mixpanel

import metrics

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
REQUEST_TIMEOUT = 2.0  # seconds, each of connect and read
RETRY_LIMIT = 1  # mixpanel retries 5xx and connection errors (https endpoints only)
CLOSE_TIMEOUT = 5.0  # seconds close() waits for queued events before abandoning them

_STOP = object()


class Tracker:
    """Sends Mixpanel events from a worker thread; a no-op without a token."""

    def __init__(
        self,
        token: str | None,
        events_url: str | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.enabled = token is not None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        if token is None:
            return
        consumer = mixpanel.Consumer(
            events_url=events_url, request_timeout=request_timeout, retry_limit=RETRY_LIMIT
        )
        self._mixpanel = mixpanel.Mixpanel(token, consumer=consumer)
        self._thread = threading.Thread(target=self._work, name="mixpanel", daemon=True)
        self._thread.start()

    def queue_length(self) -> int:
        """Events waiting to be sent (what `rollcall_mixpanel_queue_length` shows)."""
        return self._queue.qsize()

    def track(self, distinct_id: str, event: str, properties: dict[str, Any]) -> None:
        """Queue an event without blocking; when the queue is full the oldest event is dropped
        (counted and logged), so a slow Mixpanel delays nothing and memory stays bounded."""
        if not self.enabled:
            return
        item = (distinct_id, event, properties)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        try:
            dropped = self._queue.get_nowait()
        except queue.Empty:
            return  # the worker took one meanwhile: there is room now
        self._queue.task_done()
        metrics.MIXPANEL_DROPPED.inc()
        log.warning("mixpanel queue full; dropped the oldest event %s", dropped[1])

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                distinct_id, event, properties = item
                self._mixpanel.track(distinct_id, event, properties)
            except mixpanel.MixpanelException as exc:
                metrics.MIXPANEL_DROPPED.inc()
                log.warning("mixpanel did not take event %s: %s", item[1], exc)
            except Exception:
                metrics.MIXPANEL_DROPPED.inc()
                log.exception("mixpanel event %s failed", item[1])
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every event queued so far has been sent or given up on."""
        if self.enabled:
            await asyncio.to_thread(self._queue.join)

    async def close(self) -> None:
        """Send what is queued and stop the worker, waiting at most CLOSE_TIMEOUT in all (the
        shutdown of server.py has a deadline; events still queued then are abandoned)."""
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        self.enabled = False
        deadline = time.monotonic() + CLOSE_TIMEOUT
        try:
            await asyncio.to_thread(self._queue.put, _STOP, True, CLOSE_TIMEOUT)
        except queue.Full:
            log.warning("mixpanel is not keeping up; abandoning %d events", self._queue.qsize())
            return
        await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("mixpanel is not keeping up; abandoning %d events", self._queue.qsize())
