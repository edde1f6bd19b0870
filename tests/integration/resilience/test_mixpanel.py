"""A Mixpanel that hangs, fails or refuses, behind a burst of reconnecting participants.

Joins are answered as fast as ever (tracking is never awaited), the tracking queue stays at its
bound with the oldest events dropped and counted, a warning is logged, and no thread is added.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator

import jwt
import pytest
import tornado.httpserver
import tornado.web

import metrics
import tracking
from config import Config
from tests.support import TEST_TOKEN_SECRET, free_port
from tests.support.peers import LESSON, SUCCESS, connect, join, open_peer
from tracking import Tracker

QUEUE = 3
REQUEST_TIMEOUT = 1.0  # seconds: a join that waited on Mixpanel would take at least this
JOIN_BUDGET = 0.5
CONNECTIONS = 4
JOINS_EACH = 6


class Failing(tornado.web.RequestHandler):
    def post(self) -> None:
        self.set_status(500)
        self.finish("down")


@pytest.fixture(params=["hanging", "failing", "refusing"])
def mixpanel_url(request: pytest.FixtureRequest, io_loop) -> Iterator[str]:
    """A /track endpoint that accepts and never answers, answers 500, or refuses to connect."""
    if request.param == "refusing":
        yield f"http://127.0.0.1:{free_port()}/track"
        return
    if request.param == "failing":
        server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/track", Failing)]))
        port = free_port()
        server.listen(port, "127.0.0.1")
        yield f"http://127.0.0.1:{port}/track"
        server.stop()
        io_loop.run_sync(server.close_all_connections)
        return

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    hanging = io_loop.run_sync(lambda: asyncio.start_server(hold, "127.0.0.1", 0))
    yield f"http://127.0.0.1:{hanging.sockets[0].getsockname()[1]}/track"
    hanging.close()


@pytest.fixture
def config(config: Config, mixpanel_url: str) -> Config:
    return dataclasses.replace(config, mixpanel_token="token", mixpanel_events_url=mixpanel_url)


@pytest.fixture
def services(io_loop, services, config: Config):
    """The server's tracker, with a small queue so that a test can overflow it."""
    original = services.tracker
    services.tracker = Tracker(config.mixpanel_token, config.mixpanel_events_url,
                               request_timeout=REQUEST_TIMEOUT, queue_size=QUEUE)
    io_loop.run_sync(original.close)
    return services


def dropped() -> float:
    return metrics.REGISTRY.get_sample_value("rollcall_mixpanel_dropped_total") or 0.0


def queued() -> float:
    return metrics.REGISTRY.get_sample_value("rollcall_mixpanel_queue_length") or 0.0


@pytest.mark.gen_test(timeout=30)
async def test_a_broken_mixpanel_costs_joins_nothing(url, lesson, redis_db, services, caplog):
    client_ids = [f"c-{n}" for n in range(CONNECTIONS * JOINS_EACH)]
    for client_id in client_ids:  # each join is a reconnect: one Mixpanel event each
        redis_db.hset(client_id, mapping={"sid": "old", "client_id": client_id})
    peers = [await open_peer(url, "websocket") for _ in range(CONNECTIONS)]
    for peer in peers:
        await connect(peer)
    threads = threading.active_count()
    dropped_before = dropped()
    latencies: list[float] = []
    longest_queue = 0.0

    async def joins(k: int) -> None:
        nonlocal longest_queue
        for n in range(JOINS_EACH):
            client_id = client_ids[k * JOINS_EACH + n]
            token = jwt.encode({"client_id": client_id}, TEST_TOKEN_SECRET)
            started = time.monotonic()
            ack = await join(peers[k], {"user_id": client_id, "lesson_id": LESSON,
                                        "access_token": token, "role": "student"}, n)
            latencies.append(time.monotonic() - started)
            longest_queue = max(longest_queue, queued())
            assert ack == SUCCESS

    with caplog.at_level(logging.WARNING, logger=tracking.log.name):
        await asyncio.gather(*(joins(k) for k in range(CONNECTIONS)))
        assert threading.active_count() == threads
        await services.tracker.drain()  # every event sent or given up on: none is kept

    assert max(latencies) < JOIN_BUDGET
    assert longest_queue <= QUEUE
    assert dropped() - dropped_before == len(client_ids)
    assert [t.name for t in threading.enumerate()].count("mixpanel") == 1
    assert any(r.levelno == logging.WARNING for r in caplog.records
               if r.name == tracking.log.name)
    for peer in peers:
        peer.close()
