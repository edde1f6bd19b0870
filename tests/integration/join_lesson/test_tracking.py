"""The Mixpanel tracker: real mixpanel library, a local /track endpoint, never blocking."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
import tornado.httpserver
import tornado.web

import metrics
import tracking
from tests.support.joins import MixpanelSink, free_port
from tracking import Tracker

TOKEN = "t0ken"
# track() only enqueues: it must return in far less than any HTTP request takes.
TRACK_BUDGET = 0.05


class SlowSink(tornado.web.RequestHandler):
    """A /track endpoint that answers only when released."""

    def initialize(self, release: asyncio.Event, arrived: asyncio.Event) -> None:
        self.release, self.arrived = release, arrived

    async def post(self) -> None:
        self.arrived.set()
        await self.release.wait()
        self.write({"status": 1, "error": None})


def serve(handler: type, **kwargs: Any) -> tuple[str, tornado.httpserver.HTTPServer]:
    port = free_port()
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/track", handler, kwargs)]))
    server.listen(port, "127.0.0.1")
    return f"http://127.0.0.1:{port}/track", server


@pytest.mark.gen_test
async def test_events_reach_the_endpoint_with_their_properties():
    events: list[dict[str, Any]] = []
    url, server = serve(MixpanelSink, events=events)
    tracker = Tracker(TOKEN, url)
    try:
        tracker.track("c1", "reconnect", {"lesson_id": "l1", "role": "student"})
        await tracker.drain()
    finally:
        await tracker.close()
        server.stop()
        await server.close_all_connections()

    assert len(events) == 1
    assert events[0]["event"] == "reconnect"
    properties = events[0]["properties"]
    assert (properties["token"], properties["distinct_id"]) == (TOKEN, "c1")
    assert (properties["lesson_id"], properties["role"]) == ("l1", "student")


def dropped_total() -> float:
    return metrics.REGISTRY.get_sample_value("rollcall_mixpanel_dropped_total") or 0.0


@pytest.mark.gen_test
async def test_without_a_token_tracking_is_off():
    """Given an endpoint that would take them, nothing is queued, no worker thread starts, and
    no event arrives."""
    events: list[dict[str, Any]] = []
    url, server = serve(MixpanelSink, events=events)
    threads = set(threading.enumerate())
    tracker = Tracker(None, url)
    try:
        tracker.track("c1", "reconnect", {"lesson_id": "l1", "role": "student"})
        assert tracker.queue_length() == 0
        assert set(threading.enumerate()) == threads
        await tracker.drain()
    finally:
        await tracker.close()
        server.stop()
        await server.close_all_connections()

    assert events == []


@pytest.mark.gen_test(timeout=10)
async def test_a_slow_endpoint_never_blocks_track(caplog):
    release, arrived = asyncio.Event(), asyncio.Event()
    url, server = serve(SlowSink, release=release, arrived=arrived)
    tracker = Tracker(TOKEN, url, request_timeout=0.2, queue_size=1)
    try:
        started = time.monotonic()
        tracker.track("c1", "reconnect", {})
        await arrived.wait()  # the worker is now stuck in the request
        tracker.track("c2", "reconnect", {})  # fills the queue
        dropped_before = dropped_total()
        tracker.track("c3", "reconnect", {})  # c2, the oldest queued event, is dropped
        assert dropped_total() == dropped_before + 1
        assert time.monotonic() - started < TRACK_BUDGET + 0.5  # the wait for `arrived` included
        with caplog.at_level(logging.WARNING, logger=tracking.log.name):
            await tracker.drain()  # the timed-out requests are logged, not raised
    finally:
        release.set()
        await tracker.close()
        server.stop()
        await server.close_all_connections()

    messages = [r.getMessage() for r in caplog.records if r.name == tracking.log.name]
    assert any("dropped" in m for m in messages)
    assert any("did not take" in m for m in messages)


@pytest.mark.gen_test(timeout=10)
async def test_an_unreachable_endpoint_is_logged_not_raised(caplog):
    tracker = Tracker(TOKEN, f"http://127.0.0.1:{free_port()}/track", request_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger=tracking.log.name):
        started = time.monotonic()
        tracker.track("c1", "reconnect", {})
        assert time.monotonic() - started < TRACK_BUDGET
        await tracker.drain()
    await tracker.close()

    assert any("did not take" in r.getMessage() for r in caplog.records)
