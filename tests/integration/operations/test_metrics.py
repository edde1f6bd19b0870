"""/metrics and the metric objects: values move as connections, joins and store calls happen."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient

import metrics
from tests.integration.operations.conftest import (
    Connect,
    eventually,
    join,
    participant_token,
    teacher_token,
)
from tests.support.raw_peers import PollPeer

EXPORTED = (
    "rollcall_connections",
    "rollcall_output_limit_closes",
    "rollcall_joins",
    "rollcall_join_seconds",
    "rollcall_store_errors",
    "rollcall_store_seconds",
    "rollcall_mixpanel_queue_length",
    "rollcall_mixpanel_dropped",
    "rollcall_event_loop_lag_seconds",
    "rollcall_ghosts_swept",
    "rollcall_processes_swept",
    "rollcall_leaves_pending",
    "rollcall_leaves_dropped",
    "rollcall_liveness_lapses",
    "rollcall_unverified_joins",
    "process_resident_memory_bytes",
)
OPENMETRICS = "application/openmetrics-text"
BLOCK_SECONDS = 0.2


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_record_join_counts_by_role_and_code_and_observes_latency() -> None:
    before = sample("rollcall_joins_total", role="student", code="LESSON_NOT_FOUND")
    count = sample("rollcall_join_seconds_count")
    metrics.record_join("student", "LESSON_NOT_FOUND", 0.004)
    assert sample("rollcall_joins_total", role="student", code="LESSON_NOT_FOUND") == before + 1
    assert sample("rollcall_join_seconds_count") == count + 1


def test_store_call_times_every_call_and_counts_failures() -> None:
    errors = sample("rollcall_store_errors_total", backend="postgres")
    calls = sample("rollcall_store_seconds_count", backend="postgres")
    with metrics.store_call("postgres"):
        pass
    with pytest.raises(ConnectionError), metrics.store_call("postgres"):
        raise ConnectionError("refused")
    assert sample("rollcall_store_seconds_count", backend="postgres") == calls + 2
    assert sample("rollcall_store_errors_total", backend="postgres") == errors + 1


@pytest.mark.gen_test(timeout=10)
async def test_loop_lag_is_the_time_the_loop_was_blocked() -> None:
    monitor = metrics.LoopLagMonitor(interval=0.01)
    measuring = asyncio.ensure_future(monitor.measure_once())
    await asyncio.sleep(0)  # let the measurement start its sleep
    time.sleep(BLOCK_SECONDS)  # noqa: ASYNC251 - a blocked loop is what is measured
    lag = await measuring
    assert lag >= BLOCK_SECONDS - 0.02
    assert sample("rollcall_event_loop_lag_seconds") == lag


@pytest.mark.gen_test(timeout=10)
async def test_loop_lag_monitor_starts_once_and_stops() -> None:
    monitor = metrics.LoopLagMonitor(interval=0.01)
    monitor.start()
    task = monitor._task
    monitor.start()
    assert monitor._task is task
    await monitor.stop()
    assert task is not None and task.cancelled()


async def scrape(url: str, accept: str = "") -> tuple[str, str]:
    response = await AsyncHTTPClient().fetch(url + "/metrics", headers={"Accept": accept})
    return response.headers["Content-Type"], response.body.decode()


@pytest.mark.gen_test(timeout=10)
async def test_metrics_endpoint_exports_every_documented_metric(url: str) -> None:
    content_type, body = await scrape(url)
    assert content_type.startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(body)}
    assert set(EXPORTED) <= names


@pytest.mark.gen_test(timeout=10)
async def test_metrics_endpoint_has_no_created_series(url: str) -> None:
    """server.setup_process turns prometheus_client's `_created` series off, process-wide."""
    _, body = await scrape(url)
    samples = [s.name for f in text_string_to_metric_families(body) for s in f.samples]
    assert "rollcall_store_errors_total" in samples
    assert not [name for name in samples if name.endswith("_created")]


@pytest.mark.gen_test(timeout=10)
async def test_metrics_endpoint_speaks_openmetrics_when_asked(url: str) -> None:
    content_type, body = await scrape(url, accept=OPENMETRICS + "; version=1.0.0")
    assert content_type.startswith(OPENMETRICS)
    assert body.endswith("# EOF\n")


def scraped_connections(body: str) -> dict[str, float]:
    for family in text_string_to_metric_families(body):
        if family.name == "rollcall_connections":
            return {s.labels["transport"]: s.value for s in family.samples}
    raise AssertionError("rollcall_connections missing")


@pytest.mark.gen_test(timeout=20)
async def test_connections_are_counted_by_transport(url: str, sio, connect: Connect) -> None:
    # this app's sockets alone: servers of earlier tests may still be collected globally
    collector = metrics.ConnectionsCollector()
    collector.track(sio)
    assert collector.counts() == {"polling": 0, "websocket": 0}
    polling = await connect("polling")
    websocket = await connect("websocket")
    assert collector.counts() == {"polling": 1, "websocket": 1}
    _, body = await scrape(url)
    assert scraped_connections(body) == {
        transport: float(count) for transport, count in metrics.CONNECTIONS.counts().items()
    }
    await websocket.disconnect()
    await eventually(lambda: collector.counts() == {"polling": 1, "websocket": 0}, "ws gone")
    await polling.disconnect()
    await eventually(lambda: collector.counts() == {"polling": 0, "websocket": 0}, "poll gone")


def scraped_output_limit_closes(body: str) -> float:
    for family in text_string_to_metric_families(body):
        if family.name == "rollcall_output_limit_closes":
            return family.samples[0].value
    raise AssertionError("rollcall_output_limit_closes missing")


@pytest.mark.gen_test(timeout=20)
async def test_sessions_closed_for_unread_output_are_counted(url: str, sio) -> None:
    collector = metrics.ConnectionsCollector()
    collector.track(sio.eio)
    shout = "x" * 1000
    sio.eio.max_session_output = 4 * len(shout)  # a client that never polls passes it soon

    @sio.on("shout")
    async def answer(sid: str) -> None:
        await sio.emit("shouted", shout, to=sid)

    peer = await PollPeer.open(url + "/socket.io/")
    await peer.send("40")
    socket = sio.eio.sockets[peer.sid]
    for _ in range(2 * 4):
        await peer.send('42["shout"]')
        if socket.queue.overflowed:
            break
    await eventually(lambda: socket.closed, "the session closed")
    assert collector.output_limit_closes() == 1
    _, body = await scrape(url)
    assert scraped_output_limit_closes(body) == metrics.CONNECTIONS.output_limit_closes() >= 1


@pytest.mark.gen_test(timeout=20)
async def test_joins_are_counted_by_role_and_code(url: str, lesson: str, connect: Connect) -> None:
    ok = sample("rollcall_joins_total", role="student", code="SUCCESS")
    missing = sample("rollcall_joins_total", role="teacher", code="LESSON_NOT_FOUND")
    latencies = sample("rollcall_join_seconds_count")
    client = await connect()
    ack = await join(client, user_id="s1", lesson_id=lesson, role="student",
                     access_token=participant_token("c1"))
    assert ack["status"] == "SUCCESS"
    ack = await join(client, user_id="t1", lesson_id="no-such-lesson", role="teacher",
                     access_token=teacher_token("t1"))
    assert ack["data"]["code"] == "LESSON_NOT_FOUND"
    assert sample("rollcall_joins_total", role="student", code="SUCCESS") == ok + 1
    assert sample("rollcall_joins_total", role="teacher", code="LESSON_NOT_FOUND") == missing + 1
    assert sample("rollcall_join_seconds_count") == latencies + 2
