"""The Engine.IO boundary over real sockets: every refused WebSocket handshake is an HTTP status
before 101, an upgraded WebSocket always has a session, the upgrade and close races end as the
reference server ends them, and what one client can make the server hold is bounded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from protocol import Server
from tests.integration.protocol.conftest import Events
from tests.support.peers import until
from tests.support.raw_peers import PollPeer, RawWebSocket, WsPeer, fetch

PER_IP = 50
HANDSHAKES = 300
BIG = 900_000  # characters of an echoed argument: under the default 1 MB --max-payload
FOREIGN_ORIGIN = "http://evil.example"
LONG = 60.0  # seconds: longer than any test


@pytest.fixture
def server_options() -> dict[str, Any]:
    """The conformance server with production-like limits: same-origin CORS (the default) and a
    per-address limit; its heartbeat and connect timeout outlast every test, so that no session
    ends (and frees its place) unless a test ends it."""
    return {
        "cors_allowed_origins": None,
        "max_connections_per_ip": PER_IP,
        "connect_timeout": LONG,
        "ping_interval": LONG,
        "ping_timeout": LONG,
    }


async def websocket(url: str, query: str, headers: dict[str, str] | None = None) -> WsPeer:
    request = tornado.httpclient.HTTPRequest(
        url.replace("http", "ws", 1) + "?" + query, headers=headers
    )
    return await WsPeer.connect(request)


async def refused_status(url: str, query: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status a WebSocket handshake is refused with (fails if it is accepted)."""
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await websocket(url, query, headers)
    return info.value.code


def no_session_left(sio: Server) -> bool:
    """No session, no place under the per-address limit, no PING still to come."""
    return (
        not sio.eio.sockets
        and not sio.eio.sessions
        and sio.eio.connections_from("127.0.0.1") == 0
        and sio.eio.pending_pings == 0
    )


# -- refusals are HTTP statuses, before 101 --------------------------------------------------


@pytest.mark.gen_test
async def test_foreign_origin_websocket_is_refused_before_the_upgrade(url: str, sio) -> None:
    status = await refused_status(url, "EIO=4&transport=websocket", {"Origin": FOREIGN_ORIGIN})
    assert status in (400, 403)
    assert no_session_left(sio)
    # the same origin is welcome
    origin = url.split("/socket.io/")[0]
    peer = await websocket(url, "EIO=4&transport=websocket", {"Origin": origin})
    assert (await peer.recv()).startswith("0{")
    peer.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("query", [
    "EIO=4&transport=websocket&j=abc",  # JSONP index python-engineio refuses
    "EIO=4&transport=websocket&sid=unknown",
    "EIO=3&transport=websocket",
    "EIO=4&transport=polling",  # an upgrade request must say transport=websocket
])
async def test_bad_websocket_handshake_is_400_before_the_upgrade(url: str, sio, query) -> None:
    assert await refused_status(url, query) == 400
    assert no_session_left(sio)


@pytest.mark.gen_test
async def test_websocket_transport_without_upgrade_is_400(url: str, sio) -> None:
    response = await fetch(url + "?EIO=4&transport=websocket")
    assert response.code == 400
    assert no_session_left(sio)


@pytest.mark.gen_test
async def test_refused_engineio_connect_closes_the_websocket_and_leaves_nothing(
    url: str, sio
) -> None:
    """python-engineio's connect event runs after the 101 (the Socket.IO layer's never refuses:
    its refusals are CONNECT_ERROR packets); a refusal there closes the WebSocket at once."""
    sio.eio.on("connect", lambda sid, environ: False)  # python-engineio's own refusal path
    peer = await websocket(url, "EIO=4&transport=websocket")
    assert await peer.recv() is None
    await until(lambda: no_session_left(sio))


@pytest.mark.gen_test
async def test_handshake_tornado_refuses_ends_the_session_made_for_it(url: str, sio) -> None:
    raw = await RawWebSocket.open(url, version="7000")  # a WebSocket version nobody speaks
    assert raw.status == 426
    raw.close()
    assert no_session_left(sio)


@pytest.mark.gen_test
async def test_failed_upgrade_closes_the_websocket_and_polling_goes_on(url: str) -> None:
    peer = await PollPeer.open(url)
    ws = await WsPeer.open(url, f"EIO=4&transport=websocket&sid={peer.sid}")
    await ws.send("5")  # UPGRADE without the probe: python-engineio fails the upgrade
    assert await ws.recv() is None  # closed by the server, not left open
    await peer.send("40")
    assert (await peer.recv()).startswith("40{")


# -- the races the reference server wins -----------------------------------------------------


@pytest.mark.gen_test
async def test_poll_after_the_upgrade_frame_is_refused(url: str) -> None:
    peer = await PollPeer.open(url)
    ws = await WsPeer.open(url, f"EIO=4&transport=websocket&sid={peer.sid}")
    await ws.send("2probe", "5")  # the answer to the probe is not awaited
    assert (await peer.poll()).code == 400
    assert await ws.recv() == "3probe"
    await ws.send("40")
    assert (await ws.recv()).startswith("40{")
    ws.close()


@pytest.mark.gen_test
async def test_poll_during_the_probe_gets_a_noop(url: str) -> None:
    peer = await PollPeer.open(url)
    ws = await WsPeer.open(url, f"EIO=4&transport=websocket&sid={peer.sid}")
    await ws.send("2probe")
    assert await ws.recv() == "3probe"
    response = await peer.poll()
    assert (response.code, response.body) == (200, b"6")
    ws.close()


@pytest.mark.gen_test
async def test_close_by_post_answers_the_racing_poll_with_a_noop(url: str) -> None:
    peer = await PollPeer.open(url)
    await peer.send("1")  # no poll pending: the one sent with it arrives just after
    response = await peer.poll()
    assert (response.code, response.body) == (200, b"6")
    assert (await peer.poll()).code == 400


# -- a session's tasks end with it -----------------------------------------------------------


@pytest.mark.gen_test
async def test_a_sessions_next_ping_ends_with_the_session(
    open_peer, events: Events, sio: Server
) -> None:
    peer = await open_peer()
    await peer.send("40")
    assert (await peer.recv()).startswith("40{")
    assert sio.eio.pending_pings == 1  # due in ping_interval, longer than the test
    await peer.send("1")  # the client closes the session
    await events.wait_for("disconnect")
    assert sio.eio.pending_pings == 0


# -- the per-address limit admits and counts in one step -------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_concurrent_handshakes_over_the_limit_yield_exactly_the_limit(url: str,
                                                                            sio) -> None:
    async def handshake() -> WsPeer:
        peer = await WsPeer.open(url)
        assert (await peer.recv()).startswith("0{")
        return peer

    results = await asyncio.gather(*(handshake() for _ in range(HANDSHAKES)),
                                   return_exceptions=True)
    peers = [r for r in results if isinstance(r, WsPeer)]
    refused = [r for r in results if isinstance(r, tornado.httpclient.HTTPClientError)]
    assert len(peers) == PER_IP
    assert len(refused) == HANDSHAKES - PER_IP
    assert {r.code for r in refused} == {429}
    assert sio.eio.connections_from("127.0.0.1") == PER_IP == len(sio.eio.sockets)
    for peer in peers:
        peer.close()


# -- per-session output ----------------------------------------------------------------------


def echoes_to_overflow(sio: Server) -> int:
    """How many BIG echoes queue more than the session's output limit."""
    return sio.eio.max_session_output // BIG + 1


@pytest.mark.gen_test(timeout=20)
async def test_polling_client_that_never_polls_is_closed(url: str, sio, events: Events) -> None:
    peer = await PollPeer.open(url)
    await peer.send("40")
    queue = sio.eio.sockets[peer.sid].queue
    posts = 0
    while not queue.overflowed and posts < 2 * echoes_to_overflow(sio):
        await peer.send(json.dumps(["message", "x" * BIG]).join(("42", "")))
        posts += 1
        assert queue.size <= sio.eio.max_session_output
    assert posts == echoes_to_overflow(sio)
    assert (await events.wait_for("disconnect"))[3] == "transport error"
    assert sio.eio.output_limit_closes == 1
    assert (await peer.poll()).code == 400


@pytest.mark.gen_test(timeout=20)
async def test_websocket_client_that_never_reads_is_closed(url: str, sio, events: Events) -> None:
    raw = await RawWebSocket.open(url, receive_buffer=4096)
    assert raw.status == 101
    await raw.send("40")
    await events.wait_for("connect")
    message = json.dumps(["message", "x" * BIG]).join(("42", ""))
    disconnected = asyncio.ensure_future(events.wait_for("disconnect"))
    for _ in range(4 * echoes_to_overflow(sio)):  # the sockets' buffers take some first
        if disconnected.done():
            break
        try:
            await raw.send(message)
        except OSError:  # the server dropped the connection
            break
    assert (await disconnected)[3] in ("transport error", "transport close")
    assert sio.eio.output_limit_closes == 1
    raw.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_client_that_reads_gets_every_big_echo(open_peer, sio) -> None:
    peer = await open_peer()
    await peer.send("40")
    assert (await peer.recv()).startswith("40{")
    assert await peer.recv() == '42["auth",{}]'
    for n in range(2 * echoes_to_overflow(sio)):
        await peer.send(json.dumps(["message", n, "x" * BIG]).join(("42", "")))
        reply = json.loads((await peer.recv())[2:])
        assert reply[:2] == ["message-back", n]
    assert sio.eio.output_limit_closes == 0
