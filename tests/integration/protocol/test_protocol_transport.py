"""An open WebSocket session's transport (``protocol.sessions.WebSocketTransport``): frames go
from Tornado straight to the session and back, without python-engineio's reader and writer, and
still in order, and the session and its connection end together."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from protocol import Server
from tests.integration.protocol.conftest import AUTH_GREETING, Events
from tests.support.raw_peers import RawWebSocket, WsPeer

GATED = "/gated"


def gate_namespace(sio: Server, events: Events) -> asyncio.Event:
    """A namespace whose connect handler waits for the returned gate, and whose "echo" event
    acknowledges its arguments."""
    gate = asyncio.Event()

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        events.add("gated-connect", sid)
        await gate.wait()

    async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        events.add("echo", sid, args)
        return args

    sio.on("connect", connect, namespace=GATED)
    sio.on("echo", echo, namespace=GATED)
    return gate


async def connected_peer(url: str) -> WsPeer:
    """A WebSocket peer past the Engine.IO handshake and connected to "/" (greeting read)."""
    peer = await WsPeer.open(url)
    assert (await peer.recv()).startswith("0{")
    await peer.send("40")
    assert (await peer.recv()).startswith("40{")
    assert await peer.recv() == AUTH_GREETING
    return peer


@pytest.mark.gen_test
async def test_frames_behind_a_frame_that_waits_are_handled_after_it(
    url: str, sio: Server, events: Events
) -> None:
    """A CONNECT whose handler waits holds back the EVENT the client sent right behind it, as
    python-engineio's reader did: handled first, the EVENT would find the namespace not joined
    and the session would be closed."""
    gate = gate_namespace(sio, events)
    raw = await RawWebSocket.open(url)
    try:
        assert (await raw.recv()).startswith("0{")
        await raw.send(f"40{GATED},", f'42{GATED},1["echo","x"]')  # one write: read together
        await events.wait_for("gated-connect")
        assert [entry[0] for entry in events.log] == ["gated-connect"]

        gate.set()

        assert (await raw.recv()).startswith(f"40{GATED},{{")
        assert await raw.recv() == f'43{GATED},1["x"]'
        assert [entry[0] for entry in events.log] == ["gated-connect", "echo"]
    finally:
        raw.close()


@pytest.mark.gen_test
async def test_a_session_closed_by_the_server_sends_close_then_ends_its_connection(
    url: str, sio: Server, events: Events
) -> None:
    peer = await connected_peer(url)
    _, _, sid, _ = await events.wait_for("connect")

    await sio.disconnect(sid)  # a Socket.IO DISCONNECT: the session stays
    assert await peer.recv() == "41"
    await sio.close_all()  # an Engine.IO CLOSE: the connection ends after it

    assert await peer.closed()
    assert not sio.eio.sockets


@pytest.mark.gen_test
async def test_a_session_whose_client_closes_is_forgotten(
    url: str, sio: Server, events: Events
) -> None:
    peer = await connected_peer(url)

    peer.close()

    assert (await events.wait_for("disconnect"))[3] == "transport close"
    assert not sio.eio.sockets  # forgotten in the same step as the disconnect
    assert sio.eio.connections_from("127.0.0.1") == 0
    assert sio.eio.pending_pings == 0


@pytest.mark.gen_test
async def test_a_frame_over_the_payload_limit_ends_the_session(
    url: str, sio: Server, events: Events
) -> None:
    raw = await RawWebSocket.open(url)
    try:
        assert (await raw.recv()).startswith("0{")
        await raw.send("40")
        assert (await raw.recv()).startswith("40{")
        assert await raw.recv() == AUTH_GREETING
        too_big = json.dumps(["message", "x" * sio.eio.max_http_buffer_size])
        await raw.send("42" + too_big)
        assert (await events.wait_for("disconnect"))[3] == "transport close"
        assert await raw.recv() == ""  # the connection is closed
    finally:
        raw.close()
