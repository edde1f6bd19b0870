"""Fixtures: a test `protocol.Server` on pytest-tornado's server, and node clients for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import tornado.ioloop
import tornado.web

from protocol import Server
from tests.integration.node.app import ServerState, build_server
from tests.integration.node.client import MODES, NodeClient
from tests.support import served, socketio_app


@pytest.fixture
def state() -> ServerState:
    return ServerState()


@pytest.fixture
def sio(io_loop: tornado.ioloop.IOLoop, state: ServerState) -> Iterator[Server]:
    """The test server; at teardown its sessions are closed and its engine shut down, as a
    server ends, so no task of it outlives the test's loop."""
    yield from served(io_loop, build_server(state))


@pytest.fixture
def app(sio: Server) -> tornado.web.Application:
    """The application pytest-tornado's `http_server` serves."""
    return socketio_app(sio)


@pytest.fixture
def node_client(
    io_loop: tornado.ioloop.IOLoop, http_server: Any
) -> Iterator[Callable[[], Awaitable[NodeClient]]]:
    """Factory of driver processes, all killed at teardown whatever the test did.

    Depends on `http_server` so that the clients go away before the server stops.
    """
    clients: list[NodeClient] = []

    async def start() -> NodeClient:
        client = await NodeClient.start()
        clients.append(client)
        return client

    yield start
    for client in clients:
        io_loop.run_sync(client.close)


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    """Each scenario runs over polling only, WebSocket only, and polling upgraded."""
    return request.param


@pytest.fixture
def connected(
    node_client: Callable[[], Awaitable[NodeClient]], url: str, mode: str
) -> Callable[..., Awaitable[tuple[NodeClient, str]]]:
    """Start a client connected to '/' in `mode`; returns it with its sid.

    In "upgrade" mode it also waits for the upgrade, so the scenario then runs over the
    upgraded WebSocket and every test asserts that the upgrade happened.
    """

    async def connect(auth: Any = None) -> tuple[NodeClient, str]:
        client = await node_client()
        event = await client.connect(url, auth=auth, **MODES[mode])
        opened = await client.expect("open")
        if mode == "upgrade":
            assert opened["transport"] == "polling"
            await client.expect("upgrade", transport="websocket")
        else:
            assert opened["transport"] == event["transport"] == mode
        return client, event["id"]

    return connect
