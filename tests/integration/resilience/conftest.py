"""Fixtures of the resilience tests: the full application served exactly as server.py serves it
(make_http_server: body limit, X-Real-IP), a lesson, and raw Engine.IO peers that join it."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator

import psycopg2
import pytest
import tornado.web

from config import Config
from server import make_http_server
from tests.support.lessons import add_lesson
from tests.support.peers import LESSON, SEATS, Peer, open_peer

# The production defaults of the limits are exercised in test_limits.py; elsewhere they would
# only get in the way of traffic made on purpose.
UNLIMITED = 0


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, join_rate=UNLIMITED, max_connections_per_ip=UNLIMITED)


@pytest.fixture
def http_server(io_loop, app: tornado.web.Application, config: Config, _unused_port):
    """pytest-tornado's fixture, with the HTTP server that server.serve() builds."""
    server = make_http_server(app, config)
    server.add_socket(_unused_port[0])
    yield server
    server.stop()
    io_loop.run_sync(server.close_all_connections)


@pytest.fixture
def url(http_server, http_port: int) -> str:
    return f"http://127.0.0.1:{http_port}/socket.io/"


@pytest.fixture
def lesson(database: psycopg2.extensions.connection) -> str:
    """A lesson of SEATS seats."""
    return add_lesson(database, LESSON, SEATS)


@pytest.fixture(params=["websocket", "polling"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def peer(io_loop, url: str, transport: str) -> Iterator[Callable[..., Awaitable[Peer]]]:
    """Factory of raw peers on the parametrised transport, past the Engine.IO handshake."""
    opened: list[Peer] = []

    async def make(**kwargs) -> Peer:
        new = await open_peer(url, transport, **kwargs)
        opened.append(new)
        return new

    yield make
    for each in opened:
        each.close()
