"""Fixtures: a `protocol.Server` shaped like the official conformance suite's server, served by
pytest-tornado, and raw Engine.IO peers (WebSocket and long-polling) that speak exact frames."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.web

from protocol import ConnectionRefusedError, Server
from tests.support import served, socketio_app
from tests.support.raw_peers import RECV_TIMEOUT, PollPeer, WsPeer

PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2
#: what the test server emits to every socket that connects (its auth echoed; none here)
AUTH_GREETING = '42["auth",{}]'


class Events:
    """What the test server's handlers saw, with a way to await the next one."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    def add(self, *entry: Any) -> None:
        self.log.append(entry)
        self._changed.set()

    async def wait_for(self, name: str) -> tuple[Any, ...]:
        async def seek() -> tuple[Any, ...]:
            while True:
                for entry in self.log:
                    if entry[0] == name:
                        return entry
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(seek(), RECV_TIMEOUT)


def build_server(events: Events, **options: Any) -> Server:
    """The official suite's server: greets with an "auth" event, echoes "message", acks
    "message-with-ack" with its arguments; namespaces "/" and "/custom"."""
    options = {
        "ping_interval": PING_INTERVAL,
        "ping_timeout": PING_TIMEOUT,
        "cors_allowed_origins": "*",
        "connect_timeout": 1.0,
        **options,
    }
    sio = Server(namespaces=["/", "/custom"], **options)
    for namespace in ("/", "/custom"):

        async def connect(sid: str, environ: dict, auth: Any, namespace: str = namespace) -> Any:
            events.add("connect", namespace, sid, auth)
            if auth and auth.get("refuse") == "false":
                return False
            if auth and auth.get("refuse") == "raise":
                raise ConnectionRefusedError("not allowed", {"code": 7})
            await sio.emit("auth", auth or {}, to=sid, namespace=namespace)
            return None

        async def disconnect(sid: str, reason: str, namespace: str = namespace) -> None:
            events.add("disconnect", namespace, sid, reason)

        async def message(sid: str, *args: Any, namespace: str = namespace) -> None:
            await sio.emit("message-back", args, to=sid, namespace=namespace)

        async def message_with_ack(sid: str, *args: Any) -> tuple[Any, ...]:
            return args

        sio.on("connect", connect, namespace=namespace)
        sio.on("disconnect", disconnect, namespace=namespace)
        sio.on("message", message, namespace=namespace)
        sio.on("message-with-ack", message_with_ack, namespace=namespace)
    return sio


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def server_options() -> dict[str, Any]:
    """Options of the test server beyond build_server's; a test module overrides this fixture
    (not `sio`) to change them, so that its server is still closed at teardown."""
    return {}


@pytest.fixture
def sio(io_loop, events: Events, server_options: dict[str, Any]) -> Iterator[Server]:
    """The test server; at teardown its sessions are closed and its engine shut down, as a
    server ends, so no task of it outlives the test's loop."""
    yield from served(io_loop, build_server(events, **server_options))


@pytest.fixture
def app(sio: Server) -> tornado.web.Application:
    return socketio_app(sio)


@pytest.fixture
def url(http_server: Any, http_port: int) -> str:
    return f"http://127.0.0.1:{http_port}/socket.io/"


@pytest.fixture(params=["websocket", "polling"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_peer(url: str, transport: str):
    """Factory of raw peers on the parametrised transport, already past the Engine.IO handshake."""
    peers: list[WsPeer | PollPeer] = []

    async def open_() -> WsPeer | PollPeer:
        if transport == "websocket":
            peer: WsPeer | PollPeer = await WsPeer.open(url)
            handshake = await peer.recv()
            assert isinstance(handshake, str) and handshake.startswith("0{")
        else:
            peer = await PollPeer.open(url)
        peers.append(peer)
        return peer

    yield open_
    for peer in peers:
        peer.close()
