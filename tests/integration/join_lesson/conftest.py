"""Fixtures of the join_lesson tests: the real app with Mixpanel pointed at a local endpoint,
connected python-socketio clients, and lesson rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg2
import pytest
import redis
import tornado.httpserver
import tornado.web

from config import Config
from tests.support.joins import LESSON, SEATS, Client, MixpanelSink, free_port
from tests.support.lessons import add_lesson

MIXPANEL_TOKEN = "test-mixpanel-token"
# Keyspace notifications for the events the tests await: K keyspace, h hash, g generic, $ string.
KEYSPACE_EVENTS = "Khg$"


@pytest.fixture
def mixpanel_events(io_loop) -> Iterator[list[dict[str, Any]]]:
    """The events the server sent to Mixpanel, as received by a local /track endpoint."""
    events: list[dict[str, Any]] = []
    yield events


@pytest.fixture
def mixpanel_url(io_loop, mixpanel_events: list[dict[str, Any]]) -> Iterator[str]:
    port = free_port()
    server = tornado.httpserver.HTTPServer(
        tornado.web.Application([(r"/track", MixpanelSink, {"events": mixpanel_events})])
    )
    server.listen(port, "127.0.0.1")
    yield f"http://127.0.0.1:{port}/track"
    server.stop()
    io_loop.run_sync(server.close_all_connections)


@pytest.fixture
def config(config: Config, mixpanel_url: str) -> Config:
    return dataclasses.replace(
        config, mixpanel_token=MIXPANEL_TOKEN, mixpanel_events_url=mixpanel_url
    )


@pytest.fixture
def lesson(database: psycopg2.extensions.connection) -> str:
    """A lesson of SEATS seats in which u1 has seat 7."""
    return add_lesson(database, LESSON, SEATS, {"u1": 7})


@pytest.fixture(params=["polling", "websocket"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def connect(io_loop, url: str, transport: str) -> Iterator[Callable[[], Awaitable[Client]]]:
    """Factory of connected clients; all disconnected at teardown."""
    clients: list[Client] = []

    async def open_client() -> Client:
        client = Client(url, transport)
        clients.append(client)
        return await client.connect()

    yield open_client
    for client in clients:
        io_loop.run_sync(client.close)


@pytest.fixture
def keyspace_events(redis_db: redis.Redis) -> Iterator[None]:
    """Turn on Redis keyspace notifications for the test, and back off after it."""
    previous = redis_db.config_get("notify-keyspace-events")["notify-keyspace-events"]
    redis_db.config_set("notify-keyspace-events", KEYSPACE_EVENTS)
    yield
    redis_db.config_set("notify-keyspace-events", previous)
