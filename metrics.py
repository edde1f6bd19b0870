"""Every Prometheus metric rollcall exports, named once, and the small helpers that feed them.

The metrics live in their own registry (with the process, platform and GC collectors added) so
that `/metrics` shows exactly what docs/operations.md documents, and so that tests building many
applications in one process never register a metric twice. Other modules import the objects
below and update them; nothing else creates a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Iterator, Mapping, Sized
from typing import Protocol

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks import cancel_and_wait

NAMESPACE = "rollcall"
TRANSPORTS = ("polling", "websocket")
#: The `role` label of a join whose request did not validate: the raw role is client-chosen text
#: and would let any client create label values without bound.
UNKNOWN_ROLE = "unknown"
STORE_BACKENDS = ("redis", "postgres")
# A join is one PostgreSQL and one Redis round trip: milliseconds when healthy, up to
# --store-timeout (2 s by default) when a backend hangs.
JOIN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOOP_LAG_INTERVAL = 0.5

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)


class CountsConnections(Protocol):
    """What the connection count needs of a Socket.IO server (`protocol.Server` has it)."""

    def connection_counts(self) -> Mapping[str, int]: ...

    @property
    def output_limit_closes(self) -> int: ...

    @property
    def refused_connections(self) -> int: ...


class ConnectionsCollector(Collector):
    """`rollcall_connections{transport}`, `rollcall_output_limit_closes_total` and
    `rollcall_refused_connections_total`, read from the Socket.IO servers at scrape time.

    Counting the live sessions instead of incrementing and decrementing a gauge on connect and
    disconnect means the number can never drift when a disconnect path is missed; the protocol
    layer keeps its own count of output-limit closes and knows nothing of Prometheus. Servers are
    held weakly, so a test that builds and drops many applications does not keep them alive.
    """

    def __init__(self) -> None:
        self._servers: weakref.WeakSet[CountsConnections] = weakref.WeakSet()

    def track(self, server: CountsConnections) -> None:
        """Count `server`'s connections from now on."""
        self._servers.add(server)

    def counts(self) -> dict[str, int]:
        """Open Engine.IO connections by transport (a polling session upgraded is websocket)."""
        counts = dict.fromkeys(TRANSPORTS, 0)
        for server in list(self._servers):
            for transport, count in server.connection_counts().items():
                counts[transport] += count
        return counts

    def output_limit_closes(self) -> int:
        """Sessions closed because their client left more than --max-session-output unread."""
        return sum(server.output_limit_closes for server in list(self._servers))

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        family = GaugeMetricFamily(
            f"{NAMESPACE}_connections",
            "Open Engine.IO connections, by transport.",
            labels=["transport"],
        )
        for transport, count in self.counts().items():
            family.add_metric([transport], count)
        yield family
        yield CounterMetricFamily(
            f"{NAMESPACE}_output_limit_closes",
            "Engine.IO sessions closed because their client left more than "
            "--max-session-output bytes unread.",
            value=self.output_limit_closes(),
        )
        yield CounterMetricFamily(
            f"{NAMESPACE}_refused_connections",
            "Engine.IO handshakes refused with HTTP 503 because --max-connections were open.",
            value=sum(server.refused_connections for server in list(self._servers)),
        )


CONNECTIONS = ConnectionsCollector()
REGISTRY.register(CONNECTIONS)


class _KeptLeaves(Protocol):
    pending: Sized


class PendingLeavesCollector(Collector):
    """`rollcall_leaves_pending`: leaves kept for a retry (handlers/connections.py), counted at
    scrape time from the live per-process records, held weakly like the connections above."""

    def __init__(self) -> None:
        self._owners: weakref.WeakSet[_KeptLeaves] = weakref.WeakSet()

    def track(self, owner: _KeptLeaves) -> None:
        self._owners.add(owner)

    def count(self) -> int:
        return sum(len(owner.pending) for owner in list(self._owners))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            f"{NAMESPACE}_leaves_pending",
            "Disconnects whose leave could not reach Redis, kept to be retried.",
            value=self.count(),
        )


PENDING_LEAVES = PendingLeavesCollector()
REGISTRY.register(PENDING_LEAVES)

JOINS = Counter(
    "joins", "join_lesson requests answered, by role and ack code (SUCCESS or the error code).",
    ["role", "code"], namespace=NAMESPACE, registry=REGISTRY,
)
JOIN_SECONDS = Histogram(
    "join_seconds", "Seconds from receiving join_lesson to its ack.",
    namespace=NAMESPACE, buckets=JOIN_BUCKETS, registry=REGISTRY,
)
STORE_ERRORS = Counter(
    "store_errors", "Redis or PostgreSQL calls that failed or timed out, by backend.",
    ["backend"], namespace=NAMESPACE, registry=REGISTRY,
)
STORE_SECONDS = Histogram(
    "store_seconds", "Seconds each Redis or PostgreSQL call took, failed ones included.",
    ["backend"], namespace=NAMESPACE, buckets=STORE_BUCKETS, registry=REGISTRY,
)
MIXPANEL_QUEUE_LENGTH = Gauge(
    "mixpanel_queue_length", "Mixpanel events waiting to be sent.",
    namespace=NAMESPACE, registry=REGISTRY,
)
MIXPANEL_DROPPED = Counter(
    "mixpanel_dropped", "Mixpanel events dropped: queue full, send failed or timed out.",
    namespace=NAMESPACE, registry=REGISTRY,
)
EVENT_LOOP_LAG = Gauge(
    "event_loop_lag_seconds",
    "How late the last periodic wake-up of the event loop was: time no callback could run.",
    namespace=NAMESPACE, registry=REGISTRY,
)
UNVERIFIED_JOINS = Counter(
    "unverified_joins",
    "Participant joins that succeeded with a token that does not vouch for their user_id: "
    "kept as unverified claims, never as that user's attendance.",
    namespace=NAMESPACE, registry=REGISTRY,
)
GHOSTS_SWEPT = Counter(
    "ghosts_swept",
    "Presence entries of dead processes that still held their sid and were cleared by a sweep.",
    namespace=NAMESPACE, registry=REGISTRY,
)
PROCESSES_SWEPT = Counter(
    "processes_swept", "Dead processes whose held record this process swept.",
    namespace=NAMESPACE, registry=REGISTRY,
)
LEAVES_DROPPED = Counter(
    "leaves_dropped",
    "Leaves that could not reach Redis and were dropped from the full retry queue.",
    namespace=NAMESPACE, registry=REGISTRY,
)
LIVENESS_LAPSES = Counter(
    "liveness_lapses",
    "Heartbeats that found this process's liveness lapsed, by outcome: revived (nobody had "
    "swept it yet) or swept (a survivor had; it dropped its connections and started over).",
    ["outcome"], namespace=NAMESPACE, registry=REGISTRY,
)
LAPSE_OUTCOMES = ("revived", "swept")
ACCEPT_FAILURES = Counter(
    "accept_failures",
    "accept() calls that failed for lack of file descriptors (EMFILE, ENFILE, ...); each pauses "
    "accepting for a short, growing delay (web/accept.py).",
    namespace=NAMESPACE, registry=REGISTRY,
)
REASSERTIONS = Counter(
    "presence_reassertions",
    "Times this process wrote its live connections' presence again because Redis had lost it "
    "(its liveness registration gone, or another Redis server answering).",
    namespace=NAMESPACE, registry=REGISTRY,
)
REASSERTED_KEYS = Counter(
    "presence_reasserted_keys",
    "Presence fields, seat maps and roster records that re-assertions wrote again.",
    namespace=NAMESPACE, registry=REGISTRY,
)
PRIMARY_SWITCHES = Counter(
    "redis_primary_switches",
    "Heartbeats that found another Redis server answering than the one before (its run id "
    "changed): a failover to a replica, or a restart.",
    namespace=NAMESPACE, registry=REGISTRY,
)

# Pre-create the label sets an alert compares against, so that they read 0 rather than being
# absent before the first error; the calls use these children, not a `labels()` lookup each.
_STORE_ERRORS = {backend: STORE_ERRORS.labels(backend) for backend in STORE_BACKENDS}
_STORE_SECONDS = {backend: STORE_SECONDS.labels(backend) for backend in STORE_BACKENDS}
for _outcome in LAPSE_OUTCOMES:
    LIVENESS_LAPSES.labels(_outcome)


def configure() -> None:
    """Process-wide, once, before serving (server.py's setup_process): no `_created` series,
    which would double every counter and histogram for a value no alert uses."""
    disable_created_metrics()


#: JOINS' child of each (role, code) seen: `labels()` checks and joins its arguments under a lock on
#: every call. Both labels come from small fixed sets (see record_join), so this stays small.
_JOIN_COUNTERS: dict[tuple[str, str], Counter] = {}


def record_join(role: str, code: str, seconds: float) -> None:
    """Count one answered join and observe its latency.

    `role` must be a validated role, or UNKNOWN_ROLE when the request did not validate.
    """
    counter = _JOIN_COUNTERS.get((role, code))
    if counter is None:
        counter = _JOIN_COUNTERS[role, code] = JOINS.labels(role, code)
    counter.inc()
    JOIN_SECONDS.observe(seconds)


@contextlib.contextmanager
def store_call(backend: str) -> Iterator[None]:
    """Time one Redis or PostgreSQL call, counting it as an error if it raises.

    A plain (not async) context manager, so it wraps an `await` as well:
    `with metrics.store_call("redis"): await pipe.execute()`.
    """
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        _STORE_ERRORS[backend].inc()
        raise
    finally:
        _STORE_SECONDS[backend].observe(time.perf_counter() - start)


class LoopLagMonitor:
    """Measures event-loop lag: how much later than asked a periodic sleep wakes up.

    A handler that blocks the loop (a synchronous call, a large JSON document) delays every
    connection at once; this shows it as one number.
    """

    def __init__(self, interval: float = LOOP_LAG_INTERVAL) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop measuring and wait for the task to end."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def measure_once(self) -> float:
        """Sleep one interval, record how late the wake-up was, and return it."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(self.interval)
        lag = max(0.0, loop.time() - start - self.interval)
        EVENT_LOOP_LAG.set(lag)
        return lag

    async def _run(self) -> None:
        while True:
            await self.measure_once()
