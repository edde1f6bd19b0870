"""Raw frames over WebSocket and long-polling, compared as exact strings (the official
conformance suite's cases, plus the malformed inputs the spec says must close the connection)."""

from __future__ import annotations

import asyncio
import json

import pytest
import tornado.httpclient
from conftest import Events
from protocol_peers import PollPeer, WsPeer, fetch

from protocol.engine import WS_POLICY_VIOLATION


async def connected(open_peer, namespace: str = "") -> tuple[WsPeer | PollPeer, str]:
    """A peer joined to a namespace (root by default); returns it and its Socket.IO sid."""
    peer = await open_peer()
    await peer.send(f"40{namespace}")
    reply = await peer.recv()
    prefix = f"40{namespace}" if namespace else "40"
    assert reply.startswith(prefix)
    sid = json.loads(reply[len(prefix) :])["sid"]
    assert await peer.recv() == f'42{namespace}["auth",{{}}]'
    return peer, sid


# -- Engine.IO handshake and HTTP errors -----------------------------------------------------


@pytest.mark.gen_test
async def test_polling_handshake_exact_milliseconds(url: str) -> None:
    response = await fetch(url + "?EIO=4&transport=polling")
    assert response.code == 200
    body = response.body.decode()
    assert body.startswith("0")
    handshake = json.loads(body[1:])
    assert set(handshake) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert handshake["upgrades"] == ["websocket"]
    assert handshake["pingInterval"] == 300
    assert handshake["pingTimeout"] == 200
    assert handshake["maxPayload"] == 1000000


@pytest.mark.gen_test
async def test_websocket_handshake_exact_milliseconds(url: str) -> None:
    peer = await WsPeer.open(url)
    handshake = json.loads((await peer.recv())[1:])
    assert handshake["upgrades"] == []
    assert (handshake["pingInterval"], handshake["pingTimeout"]) == (300, 200)
    peer.close()


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "query",
    [
        "transport=polling",
        "EIO=abc&transport=polling",
        "EIO=3&transport=polling",
        "EIO=4",
        "EIO=4&transport=abc",
    ],
)
async def test_bad_query_is_400(url: str, query: str) -> None:
    response = await fetch(f"{url}?{query}")
    assert response.code == 400


@pytest.mark.gen_test
@pytest.mark.parametrize("query", ["transport=websocket", "EIO=4", "EIO=4&transport=abc"])
async def test_bad_query_refuses_websocket(url: str, query: str) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await WsPeer.open(url, query)
    assert info.value.code == 400


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_post_or_put_without_sid_is_400(url: str, method: str) -> None:
    response = await fetch(url + "?EIO=4&transport=polling", method=method, body="1")
    assert response.code == 400


@pytest.mark.gen_test
async def test_polling_heartbeat_and_post_answered_ok(url: str) -> None:
    peer = await PollPeer.open(url)
    for _ in range(3):
        poll = await peer.poll()
        assert (poll.code, poll.body) == (200, b"2")
        response = await peer.post("3")
        assert (response.code, response.body) == (200, b"ok")


@pytest.mark.gen_test
@pytest.mark.parametrize("body", ["", "x", "4hello\x1e", "9", "2", "b!!notbase64", "\x1e"])
async def test_invalid_post_body_is_400_and_closes(url: str, body: str) -> None:
    peer = await PollPeer.open(url)
    response = await fetch(peer.session_url, method="POST", body=body.encode())
    assert response.code == 400
    assert await peer.closed()


@pytest.mark.gen_test
async def test_second_concurrent_get_is_refused_and_closes(url: str) -> None:
    peer = await PollPeer.open(url)
    first = asyncio.ensure_future(fetch(peer.session_url))
    await asyncio.sleep(0.05)  # let the first poll reach the server before the second one
    second = await fetch(peer.session_url)
    assert second.code == 400
    response = await first
    assert (response.code, response.body) == (200, b"1")
    assert (await peer.poll()).code == 400


@pytest.mark.gen_test
async def test_close_answers_pending_get_with_noop(url: str) -> None:
    peer = await PollPeer.open(url)
    pending = asyncio.ensure_future(peer.poll())
    await asyncio.sleep(0.05)  # let the poll reach the server before the CLOSE
    await peer.send("1")
    response = await pending
    assert (response.code, response.body) == (200, b"6")
    assert (await peer.poll()).code == 400


@pytest.mark.gen_test
async def test_polling_session_expires_without_pong(url: str, io_loop) -> None:
    peer = await PollPeer.open(url)
    await asyncio.sleep(0.3 + 0.2 + 0.05)  # the heartbeat deadline is the behaviour under test
    assert (await peer.poll()).code == 400


@pytest.mark.gen_test
async def test_upgrade_then_http_refused_and_second_websocket_closed(url: str) -> None:
    peer = await PollPeer.open(url)
    ws = await WsPeer.open(url, f"EIO=4&transport=websocket&sid={peer.sid}")
    await ws.send("2probe")
    assert await ws.recv() == "3probe"
    await ws.send("5")
    await ws.send("40")
    assert (await ws.recv()).startswith("40{")  # upgraded: traffic flows over the WebSocket
    assert (await peer.poll()).code == 400
    # as the reference server does: a second WebSocket for the sid is accepted, then closed
    second = await WsPeer.open(url, f"EIO=4&transport=websocket&sid={peer.sid}")
    assert await second.closed()
    assert second.conn.close_code == WS_POLICY_VIOLATION
    # the upgrade's NOOP must not leak onto the WebSocket
    assert await ws.recv() == '42["auth",{}]'
    await ws.send('42["message","x"]')
    assert await ws.recv() == '42["message-back","x"]'
    ws.close()


# -- Socket.IO connect -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_connect_root_without_auth(open_peer, events: Events) -> None:
    _peer, sid = await connected(open_peer)
    assert len(sid) == 20
    entry = await events.wait_for("connect")
    assert entry == ("connect", "/", sid, None)


@pytest.mark.gen_test
async def test_connect_root_with_auth(open_peer, events: Events) -> None:
    peer = await open_peer()
    await peer.send('40{"token":"123"}')
    reply = await peer.recv()
    assert reply.startswith("40{")
    assert set(json.loads(reply[2:])) == {"sid"}
    assert await peer.recv() == '42["auth",{"token":"123"}]'
    assert (await events.wait_for("connect"))[3] == {"token": "123"}


@pytest.mark.gen_test
@pytest.mark.parametrize("frame", ["40/custom,", "40/custom"])
async def test_connect_custom_namespace(open_peer, frame: str) -> None:
    peer = await open_peer()
    await peer.send(frame)
    reply = await peer.recv()
    assert reply.startswith("40/custom,{")
    assert set(json.loads(reply[len("40/custom,") :])) == {"sid"}
    assert await peer.recv() == '42/custom,["auth",{}]'


@pytest.mark.gen_test
async def test_connect_custom_namespace_with_auth(open_peer) -> None:
    peer = await open_peer()
    await peer.send('40/custom,{"token":"abc"}')
    assert (await peer.recv()).startswith("40/custom,{")
    assert await peer.recv() == '42/custom,["auth",{"token":"abc"}]'


@pytest.mark.gen_test
async def test_unknown_namespace(open_peer) -> None:
    peer = await open_peer()
    await peer.send("40/random")
    assert await peer.recv() == '44/random,{"message":"Invalid namespace"}'
    await peer.send("40")  # the Engine.IO session is still usable
    assert (await peer.recv()).startswith("40{")


@pytest.mark.gen_test
async def test_connect_refused_by_false(open_peer, events: Events) -> None:
    peer = await open_peer()
    await peer.send('40{"refuse":"false"}')
    assert await peer.recv() == '44{"message":"Connection rejected by server"}'
    await peer.send('42["message","x"]')  # never joined: a protocol error
    assert await peer.closed()
    assert [e[0] for e in events.log] == ["connect"]  # no disconnect for a refused socket


@pytest.mark.gen_test
async def test_connect_refused_by_exception_with_data(open_peer) -> None:
    peer = await open_peer()
    await peer.send('40/custom,{"refuse":"raise"}')
    assert await peer.recv() == '44/custom,{"message":"not allowed","data":{"code":7}}'


@pytest.mark.gen_test
async def test_connect_reply_precedes_handler_emits(open_peer, sio) -> None:
    # the fixture's connect handler emits "auth" before returning; connected() checks the order
    _peer, sid = await connected(open_peer)
    assert sio.rooms(sid) == [sid]


# -- disconnect ------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_disconnect_custom_namespace_keeps_main(open_peer, events: Events) -> None:
    peer, _ = await connected(open_peer)
    await peer.send("40/custom")
    assert (await peer.recv()).startswith("40/custom,")
    assert await peer.recv() == '42/custom,["auth",{}]'
    await peer.send("41/custom,")
    await peer.send('42["message","message to main namespace"]')
    assert await peer.recv() == '42["message-back","message to main namespace"]'
    entry = await events.wait_for("disconnect")
    assert entry[1] == "/custom" and entry[3] == "client disconnect"


@pytest.mark.gen_test
async def test_server_disconnect_sends_packet(open_peer, sio, events: Events) -> None:
    peer, sid = await connected(open_peer, "/custom,")
    await sio.disconnect(sid, namespace="/custom")
    assert await peer.recv() == "41/custom,"
    assert (await events.wait_for("disconnect"))[2:] == (sid, "server disconnect")


# -- events and acks -------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_plain_event(open_peer) -> None:
    peer, _ = await connected(open_peer)
    await peer.send('42["message",1,"2",{"3":[true]}]')
    assert await peer.recv() == '42["message-back",1,"2",{"3":[true]}]'


@pytest.mark.gen_test
async def test_event_with_ack(open_peer) -> None:
    peer, _ = await connected(open_peer)
    await peer.send('42456["message-with-ack",1,"2",{"3":[false]}]')
    assert await peer.recv() == '43456[1,"2",{"3":[false]}]'


@pytest.mark.gen_test
async def test_binary_event(open_peer) -> None:
    peer, _ = await connected(open_peer)
    await peer.send(
        '452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    )
    assert (
        await peer.recv()
        == '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    )
    assert await peer.recv() == b"\x01\x02\x03"
    assert await peer.recv() == b"\x04\x05\x06"


@pytest.mark.gen_test
async def test_binary_event_with_ack(open_peer) -> None:
    peer, _ = await connected(open_peer)
    await peer.send(
        '452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    )
    assert (
        await peer.recv() == '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    )
    assert await peer.recv() == b"\x01\x02\x03"
    assert await peer.recv() == b"\x04\x05\x06"


@pytest.mark.gen_test
async def test_server_call_gets_client_ack(open_peer, sio, io_loop) -> None:
    peer, sid = await connected(open_peer, "/custom,")
    call = asyncio.ensure_future(sio.call("question", {"q": 1}, to=sid, namespace="/custom"))
    assert await peer.recv() == '42/custom,0["question",{"q":1}]'
    await peer.send('43/custom,0["answer",2]')
    assert await call == ("answer", 2)


@pytest.mark.gen_test
async def test_server_call_times_out(open_peer, sio) -> None:
    _, sid = await connected(open_peer)
    with pytest.raises(TimeoutError):
        await sio.call("question", to=sid, timeout=0.05)


# -- malformed input closes the connection ---------------------------------------------------

MALFORMED_AFTER_CONNECT = [
    "42{}",  # payload not an array
    '42abc["message-with-ack",1]',  # invalid ack id
    "42[]",  # empty array
    "42[1]",  # event name not a string
    '42["disconnect"]',  # reserved name
    '42["newListener"]',
    '42/custom,["message"]',  # namespace not joined
    "40",  # CONNECT twice
    '4511-["message"]',  # too many attachments
    '451-["message",{"_placeholder":true,"num":1}]',  # placeholder out of range
    '451-["message",{"_placeholder":true,"num":"0"}]',  # placeholder num not an int
    '451-["message",{"_placeholder":true,"num":true}]',
    "44{}",  # CONNECT_ERROR from a client
    "43[1]",  # ACK without id
]


@pytest.mark.gen_test
@pytest.mark.parametrize("frame", MALFORMED_AFTER_CONNECT)
async def test_malformed_packet_closes(open_peer, frame: str, events: Events) -> None:
    peer, sid = await connected(open_peer)
    await peer.send(frame)
    assert await peer.closed()
    assert (await events.wait_for("disconnect"))[2:] == (sid, "parse error")


@pytest.mark.gen_test
@pytest.mark.parametrize("frame", ['42["message"]', "41", '42["message"'])
async def test_first_packet_not_connect_closes(open_peer, frame: str) -> None:
    peer = await open_peer()
    await peer.send(frame)
    assert await peer.closed()


# Not Engine.IO packets python-engineio can take: refused before it parses them (an unknown type
# would kill its WebSocket reader; a non-digit MESSAGE payload would be JSON-decoded by it).
NOT_ENGINEIO = ["4abc", '4"0"', "4[" * 2000, "4", "x", "9", "2[1]", "3{}"]


@pytest.mark.gen_test
@pytest.mark.parametrize("frame", NOT_ENGINEIO)
async def test_frame_that_is_not_engineio_closes(open_peer, transport: str, frame: str,
                                                 events: Events) -> None:
    peer, _ = await connected(open_peer)
    if transport == "websocket":
        await peer.send(frame)
    else:
        response = await peer.post(frame)
        assert (response.code, response.body) == (400, b"Invalid payload")
    assert await peer.closed()
    reason = "transport close" if transport == "websocket" else "transport error"
    assert (await events.wait_for("disconnect"))[3] == reason


@pytest.mark.gen_test
async def test_binary_without_header_closes(open_peer) -> None:
    peer, _ = await connected(open_peer)
    await peer.send(b"\x01")
    assert await peer.closed()


@pytest.mark.gen_test
async def test_text_while_awaiting_attachment_closes(open_peer) -> None:
    peer, _ = await connected(open_peer)
    await peer.send('451-["message",{"_placeholder":true,"num":0}]', '42["message","x"]')
    assert await peer.closed()


@pytest.mark.gen_test
async def test_connect_timeout_closes(url: str, sio) -> None:
    sio.connect_timeout = 0.05
    peer = await WsPeer.open(url)
    assert (await peer.recv()).startswith("0{")
    assert await peer.closed()


@pytest.mark.gen_test
async def test_connect_timeout_spares_joined_clients(url: str, sio) -> None:
    sio.connect_timeout = 0.05
    peer = await WsPeer.open(url)
    await peer.recv()
    await peer.send("40")
    assert (await peer.recv()).startswith("40{")
    assert await peer.recv() == '42["auth",{}]'
    await asyncio.sleep(0.15)  # well past connect_timeout: the behaviour under test is a timer
    await peer.send('42["message","still here"]')
    assert await peer.recv() == '42["message-back","still here"]'
    peer.close()


@pytest.mark.gen_test
async def test_handler_exception_is_logged_and_connection_survives(open_peer, sio, caplog) -> None:
    @sio.on("boom")
    async def boom(sid: str) -> None:
        raise RuntimeError("kaboom")

    peer, _ = await connected(open_peer)
    await peer.send('421["boom"]')
    await peer.send('42["message","after"]')
    assert await peer.recv() == '42["message-back","after"]'
    assert any("kaboom" in (r.exc_text or "") or r.exc_info for r in caplog.records)
