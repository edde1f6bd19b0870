"""The Socket.IO layer's own bounds over real sockets: CONNECT packets per Engine.IO session,
what a CONNECT_ERROR names back, and the Engine.IO sid behind a Socket.IO sid."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol import Server
from protocol.socketio_server import DEFAULT_MAX_CONNECTS, MAX_ECHOED_NAMESPACE
from tests.support.raw_peers import PollPeer

MAX_CONNECTS = 3
BIG = 900_000  # characters: under the default 1 MB --max-payload


@pytest.fixture
def server_options() -> dict[str, Any]:
    """The conformance server with a small CONNECT budget."""
    return {"max_connects": MAX_CONNECTS}


# -- CONNECT packets and what a CONNECT_ERROR echoes -----------------------------------------


@pytest.mark.gen_test
async def test_connects_past_the_budget_close_the_session(open_peer) -> None:
    assert Server().max_connects == DEFAULT_MAX_CONNECTS
    peer = await open_peer()
    for _ in range(MAX_CONNECTS):
        await peer.send("40")
        assert (await peer.recv()).startswith("40{")
        assert await peer.recv() == '42["auth",{}]'
        await peer.send("41")
    await peer.send("40")
    assert await peer.closed()


@pytest.mark.gen_test
async def test_refused_connects_count_too(open_peer) -> None:
    peer = await open_peer()
    for _ in range(MAX_CONNECTS):
        await peer.send("40/nowhere")
        assert await peer.recv() == '44/nowhere,{"message":"Invalid namespace"}'
    await peer.send("40/nowhere")
    assert await peer.closed()


@pytest.mark.gen_test
async def test_connect_error_names_back_only_a_short_namespace(open_peer) -> None:
    peer = await open_peer()
    longest = "/" + "n" * (MAX_ECHOED_NAMESPACE - 1)
    await peer.send("40" + longest)
    assert await peer.recv() == f'44{longest},{{"message":"Invalid namespace"}}'
    await peer.send("40" + longest + "n")
    assert await peer.closed()


@pytest.mark.gen_test
async def test_huge_unknown_namespace_is_not_echoed(url: str) -> None:
    peer = await PollPeer.open(url)
    await peer.send("40/" + "n" * BIG)
    assert await peer.closed()  # which fails on any frame but a NOOP before the close


# -- engine_sid ------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_engine_sid_survives_namespace_reconnects(url: str, sio) -> None:
    peer = await PollPeer.open(url)
    sids = []
    for _ in range(2):
        await peer.send("40")
        reply = await peer.recv()
        sids.append(json.loads(reply[2:])["sid"])
        assert await peer.recv() == '42["auth",{}]'
        await peer.send("41")
    await peer.send("40/custom,")
    custom = json.loads((await peer.recv())[len("40/custom,"):])["sid"]
    assert sids[0] != sids[1]
    assert sio.engine_sid(custom, "/custom") == peer.sid
    assert sio.engine_sid(custom) is None  # not a socket of "/"
    assert sio.engine_sid(sids[1]) is None  # disconnected
    assert sio.engine_sid("unknown") is None


