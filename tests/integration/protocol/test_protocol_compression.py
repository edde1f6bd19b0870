"""WebSocket permessage-deflate: refused by default (each compressing connection would hold zlib
state for its whole life), negotiated with ``websocket_compression``; either way a client that
offers it, as every browser does, connects and talks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import tornado.websocket

from tests.integration.protocol.conftest import Events
from tests.support.raw_peers import RECV_TIMEOUT, RawWebSocket

#: what browsers send
BROWSER_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
EXTENSIONS = "sec-websocket-extensions"


@pytest.fixture(params=[False, True], ids=["default", "compression"])
def compression(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
def server_options(compression: bool) -> dict[str, Any]:
    # the default case passes no option at all, so that it checks the default
    return {"websocket_compression": True} if compression else {}


@pytest.mark.gen_test
async def test_browser_offer_is_negotiated_only_with_compression_on(
    url: str, compression: bool
) -> None:
    raw = await RawWebSocket.open(url, extra_headers=BROWSER_OFFER)
    try:
        assert raw.status == 101
        if compression:
            assert raw.headers[EXTENSIONS].startswith("permessage-deflate")
        else:
            assert EXTENSIONS not in raw.headers
    finally:
        raw.close()


@pytest.mark.gen_test
async def test_client_offering_compression_connects_and_echoes(
    url: str, compression: bool, events: Events
) -> None:
    conn = await tornado.websocket.websocket_connect(
        url.replace("http", "ws") + "?EIO=4&transport=websocket", compression_options={}
    )
    try:
        assert (await _next_frame(conn)).startswith("0{")
        await conn.write_message("40")
        assert (await _next_frame(conn)).startswith("40{")
        assert json.loads((await _next_frame(conn))[2:]) == ["auth", {}]
        text = "roll call " * 2000
        await conn.write_message(f'42["message",{json.dumps(text)}]')
        assert json.loads((await _next_frame(conn))[2:]) == ["message-back", text]
    finally:
        conn.close()


async def _next_frame(conn: tornado.websocket.WebSocketClientConnection) -> str:
    """The next frame that is not a ping (answered)."""
    while (frame := await asyncio.wait_for(conn.read_message(), RECV_TIMEOUT)) == "2":
        await conn.write_message("3")
    return frame
