"""Hostile and broken input at the HTTP, Engine.IO and Socket.IO layers, against the full app.

Every case has one defined outcome (an HTTP status, the connection closed, an ignored packet or
an error ack), and every case ends with the server still healthy: a new client's normal join
succeeds. Sessions that the server closes are gone from its tables, so nothing accumulates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import tornado.httpclient
import tornado.websocket

from config import Config
from protocol import Decoder, ProtocolError
from tests.support.peers import (
    SUCCESS,
    assert_serves_a_join,
    connect,
    emit_join,
    join,
    open_peer,
    session_closed,
    teacher,
    until,
)
from tests.support.raw_peers import PollPeer, WsPeer, fetch

MAX_PAYLOAD = Config.max_payload
WS_MESSAGE_TOO_BIG = 1009
WS_PROTOCOL_ERROR = 1002
PLACEHOLDER = '{"_placeholder":true,"num":0}'
DEEP = 100_000  # far beyond json's recursion limit
FLOOD = 2000
# Parsed by json (which allows about 1000 levels) but too deep for the placeholder walk, whose
# list comprehensions cost two frames a level.
BINARY_DEPTH = 700


def placeholder(num: str) -> str:
    return '{"_placeholder":true,"num":' + num + "}"


# -- HTTP ------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_oversized_polling_body_is_refused_before_it_is_read(url, lesson) -> None:
    """Tornado refuses a body over --max-payload from its Content-Length (400, connection
    closed); the Engine.IO session itself is untouched and still joins."""
    peer = await open_peer(url, "polling")
    await connect(peer)
    response = await fetch(peer.session_url, method="POST", body=b"4" + b"x" * MAX_PAYLOAD)
    assert response.code == 400
    assert await join(peer, teacher()) == SUCCESS
    await assert_serves_a_join(url, "polling")


ODD_QUERIES = [
    "EIO=4&transport=__proto__",
    "EIO=4&transport=constructor",
    "EIO=4&transport=toString",
    "EIO=4&transport=polling&j=abc",
    "EIO=4&transport=polling&sid=no-such-session",
    "EIO=4&transport=polling&sid=%00%ff%fe",
    "EIO=4&EIO=4&transport=polling",
    "EIO=%F0%9F%92%A9&transport=polling",
    "EIO=4&transport=websocket",  # no Upgrade header
    "EIO=4&transport=polling&transport=websocket&" + "x=%ff&" * 1000,
    "EIO[]=4&transport[]=polling",
]


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("query", ODD_QUERIES)
async def test_odd_query_is_400(url, lesson, query: str) -> None:
    response = await fetch(f"{url}?{query}")
    assert response.code == 400
    await assert_serves_a_join(url, "polling")


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_400(url, lesson, method: str) -> None:
    body = None if method == "DELETE" else b"4"
    response = await fetch(url + "?EIO=4&transport=polling", method=method, body=body,
                           allow_nonstandard_methods=True)
    assert response.code == 400
    await assert_serves_a_join(url, "polling")


@pytest.mark.gen_test(timeout=20)
async def test_duplicate_concurrent_polls_close_the_session(url, lesson, sio) -> None:
    peer = await open_peer(url, "polling")
    await connect(peer)
    first = asyncio.ensure_future(peer.poll())
    await until(lambda: peer.sid in sio.eio.polling)
    second = await peer.poll()
    assert second.code == 400
    assert ((await first).code, (await first).body) == (200, b"1")
    assert session_closed(sio.eio, peer)
    await assert_serves_a_join(url, "polling")


@pytest.mark.gen_test(timeout=20)
async def test_invalid_utf8_polling_body_is_400_and_closes(url, lesson, sio) -> None:
    peer = await open_peer(url, "polling")
    await connect(peer)
    response = await fetch(peer.session_url, method="POST", body=b'42["join_lesson","\xff\xfe"]')
    assert response.code == 400
    assert session_closed(sio.eio, peer)
    await assert_serves_a_join(url, "polling")


# -- Engine.IO -------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=20)
async def test_oversized_websocket_frame_closes_with_1009(url, lesson, sio) -> None:
    peer = await open_peer(url, "websocket")
    await connect(peer)
    await peer.send('42["join_lesson","' + "x" * MAX_PAYLOAD + '"]')
    assert await peer.closed()
    assert peer.conn.close_code == WS_MESSAGE_TOO_BIG
    await until(lambda: session_closed(sio.eio, peer))
    await assert_serves_a_join(url, "websocket")


NOT_ENGINEIO = ["x", "9", "", "b!!!!", "4", "4abc", '4"0"', "4" + "[" * DEEP, "3" + "{" * DEEP]


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("frame", NOT_ENGINEIO, ids=lambda f: repr(f[:8]))
async def test_websocket_frame_that_is_not_engineio_closes_with_1002(
    url, lesson, sio, frame: str
) -> None:
    """The reader python-engineio runs would die on these and leave the session half alive,
    its frames piling up unread; the boundary closes it instead, flood or not."""
    peer = await open_peer(url, "websocket")
    await connect(peer)
    await peer.send(frame)
    with contextlib.suppress(tornado.websocket.WebSocketClosedError):
        for _ in range(FLOOD):
            await peer.send('42["join_lesson",{}]')
    assert await peer.closed()
    assert peer.conn.close_code == WS_PROTOCOL_ERROR
    await until(lambda: session_closed(sio.eio, peer))
    await assert_serves_a_join(url, "websocket")


@pytest.mark.gen_test(timeout=20)
async def test_invalid_utf8_websocket_frame_closes(url, lesson, sio) -> None:
    peer = await open_peer(url, "websocket")
    await connect(peer)
    text_frame = 0x1
    peer.conn.protocol._write_frame(True, text_frame, b'42["\xff\xfe"]')  # bypasses encoding
    assert await peer.closed()
    await until(lambda: session_closed(sio.eio, peer))
    await assert_serves_a_join(url, "websocket")


@pytest.mark.gen_test(timeout=30)
async def test_pong_flood_is_ignored(peer, transport, lesson) -> None:
    client = await peer()
    await connect(client)
    if transport == "websocket":
        await client.send(*["3"] * FLOOD)
    else:
        for _ in range(FLOOD // 16):
            await client.send(*["3"] * 16)  # python-engineio's largest payload
    assert await join(client, teacher()) == SUCCESS


# -- Socket.IO -------------------------------------------------------------------------------

CLOSES = {
    "attachments-huge": '45' + "9" * 40 + '-["join_lesson",' + PLACEHOLDER + "]",
    "attachments-over-limit": '411-["join_lesson",' + PLACEHOLDER + "]",
    "attachments-non-numeric": '45x-["join_lesson",' + PLACEHOLDER + "]",
    "attachments-zero": '450-["join_lesson"]',
    "placeholder-splice": '451-["join_lesson",' + placeholder('"splice"') + "]",
    "placeholder-negative": '451-["join_lesson",' + placeholder("-1") + "]",
    "placeholder-float": '451-["join_lesson",' + placeholder("0.0") + "]",
    "placeholder-huge": '451-["join_lesson",' + placeholder("1" + "0" * 30) + "]",
    "placeholder-bool": '451-["join_lesson",' + placeholder("true") + "]",
    "placeholder-out-of-range": '451-["join_lesson",' + placeholder("1") + "]",
    "name-number": '42[1,{}]',
    "name-null": "42[null]",
    "name-object": '42[{"join_lesson":1}]',
    "name-list": '42[["join_lesson"]]',
    "empty-array": "42[]",
    "not-an-array": '42{"join_lesson":{}}',
    **{f"reserved-{name}": f'42["{name}",{{}}]' for name in (
        "connect", "connect_error", "disconnect", "disconnecting", "newListener",
        "removeListener")},
    "binary-namespace-not-joined": '451-/admin,["join_lesson",' + PLACEHOLDER + "]",
    "deep-nesting": '42["join_lesson",' + "[" * DEEP + "]" * DEEP + "]",
    "ack-id-huge": "42" + "9" * 30 + '["join_lesson",{}]',
    "integer-too-long": '42["join_lesson",' + "9" * 5000 + "]",
    "nan": '42["join_lesson",NaN]',
    "connect-twice": "40",
    "connect-error-from-client": '44{"message":"x"}',
    "ack-without-id": "43[1]",
}


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("frame", list(CLOSES.values()), ids=list(CLOSES))
async def test_malformed_socketio_packet_closes(peer, transport, url, lesson, sio, frame) -> None:
    """Refused from the packet's header or JSON alone: nothing is buffered, no handler runs.
    A binary header for a namespace not joined is refused before its attachment is sent."""
    client = await peer()
    await connect(client)
    await client.send(frame)
    assert await client.closed()
    await until(lambda: session_closed(sio.eio, client))
    await assert_serves_a_join(url, transport)


@pytest.mark.gen_test(timeout=20)
async def test_binary_nesting_under_json_limit_closes(peer, transport, url, lesson, sio) -> None:
    """JSON nested under json's own limit parses, then overflows the placeholder walk."""
    client = await peer()
    await connect(client)
    depth = BINARY_DEPTH
    await client.send('451-["join_lesson",' + "[" * depth + PLACEHOLDER + "]" * depth + "]",
                      b"\x01")
    assert await client.closed()
    await assert_serves_a_join(url, transport)


@pytest.mark.gen_test(timeout=20)
async def test_attachments_never_delivered(peer, transport, url, lesson, sio) -> None:
    """The partial packet waits (its buffers bounded, below); the next text frame closes."""
    client = await peer()
    await connect(client)
    await client.send('452-["join_lesson",' + PLACEHOLDER + "," + placeholder("1") + "]", b"x")
    await client.send('42["join_lesson",{}]')
    assert await client.closed()
    await assert_serves_a_join(url, transport)


@pytest.mark.gen_test(timeout=30)
async def test_attachments_are_bounded_by_max_payload_in_all(
    peer, transport, url, lesson, sio
) -> None:
    """Ten attachments of up to --max-payload each would hold 10 MB per connection; all of one
    packet's attachments together may not exceed --max-payload."""
    client = await peer()
    await connect(client)
    count = 10
    header = '4510-["join_lesson",' + ",".join(placeholder(str(i)) for i in range(count)) + "]"
    quarter = b"\x00" * (MAX_PAYLOAD // 4)
    for frame in (header, *[quarter] * 4):  # one per request: a POST is --max-payload too
        await client.send(frame)
    # exactly the budget: still waiting for the rest
    assert not session_closed(sio.eio, client)
    await client.send(b"\x00")
    assert await client.closed()
    await assert_serves_a_join(url, transport)


def test_decoder_turns_deep_binary_nesting_into_protocol_error() -> None:
    decoder = Decoder()
    depth = BINARY_DEPTH
    assert decoder.feed('51-["x",' + "[" * depth + PLACEHOLDER + "]" * depth + "]") is None
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x01")
    assert decoder.pending_namespace is None


IGNORED = {
    "error-event": '42["error",{}]',
    "error-event-with-ack": '427["error",{}]',
    "unknown-event": '428["no_such_event",1,2]',
    "ack-for-nothing": '439[{"status":"SUCCESS"}]',
}


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize("frame", list(IGNORED.values()), ids=list(IGNORED))
async def test_events_without_handler_are_ignored(peer, lesson, frame: str) -> None:
    """`error` is an ordinary event name in Socket.IO v5 (not reserved); with no handler it is
    ignored like any unknown event, without an ack, and the connection stays."""
    client = await peer()
    await connect(client)
    await client.send(frame)
    await client.send(f'421["join_lesson",{json.dumps(teacher())}]')
    assert await client.recv() == '431[{"status":"SUCCESS","data":{}}]'  # nothing came before


MiB = 1024 * 1024
WRONG_SHAPES = {
    "no-argument": "",
    "string": '"lesson-r"',
    "number": "1",
    "null": "null",
    "true": "true",
    "list": '[{"user_id":"u","lesson_id":"lesson-r","role":"teacher"}]',
    "empty-object": "{}",
    "two-arguments": '{"user_id":"u","lesson_id":"lesson-r","role":"teacher"},{}',
    "binary-argument": None,  # sent as an attachment, below
    **{f"{field}-{label}": json.dumps({**teacher(), field: value}) for field, cases in {
        "user_id": {
            "number": 7, "null": None, "list": ["u"], "object": {"u": 1}, "empty": "",
            "long": "u" * 129, "nul": "u\x00", "900k": "u" * 900_000,
            "big-integer": int("9" * 4000),
        },
        "lesson_id": {"bool": True, "deep": json.loads("[" * 500 + "]" * 500)},
        "role": {"unknown": "admin", "number": 1, "case": "Teacher"},
        "access_token": {"number": 1, "object": {}},
    }.items() for label, value in cases.items()},
    "lone-surrogate": '{"user_id":"\\ud800","lesson_id":"lesson-r","role":"teacher"}',
}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("payload", list(WRONG_SHAPES.values()), ids=list(WRONG_SHAPES))
async def test_join_of_every_wrong_shape_is_invalid_request(
    peer, lesson, redis_db, payload: str | None
) -> None:
    """INVALID_REQUEST, nothing written, and the same connection then joins normally."""
    client = await peer()
    await connect(client)
    if payload is None:
        await client.send('451-1["join_lesson",' + PLACEHOLDER + "]", b"\x00" * 100)
        frame = await client.recv()
        ack = json.loads(frame[len("431"):])[0]
    else:
        ack = await emit_join(client, payload)
    assert ack["status"] == "ERROR"
    assert ack["data"]["code"] == "INVALID_REQUEST"
    assert redis_db.keys("*") == []
    assert await join(client, teacher(), ack_id=2) == SUCCESS


@pytest.mark.gen_test(timeout=20)
async def test_join_with_a_1mb_string_is_over_max_payload(peer, transport, url, lesson) -> None:
    """A 1 MB string does not fit in --max-payload (1 000 000 bytes by default): refused as an
    oversized message, before any parsing (WebSocket closed with 1009, POST answered 400)."""
    client = await peer()
    await connect(client)
    frame = '42["join_lesson",' + json.dumps({**teacher(), "user_id": "u" * MiB}) + "]"
    if transport == "websocket":
        await client.send(frame)
        assert await client.closed()
        assert client.conn.close_code == WS_MESSAGE_TOO_BIG
    else:
        assert (await client.post(frame)).code == 400
    await assert_serves_a_join(url, transport)


@pytest.mark.gen_test(timeout=20)
async def test_closed_sessions_leave_nothing_behind(url, lesson, sio) -> None:
    """After a run of hostile connections neither layer remembers any of them."""
    hostile_sids = []
    for frame in list(CLOSES.values())[:10]:
        for transport in ("websocket", "polling"):
            hostile = await open_peer(url, transport)
            await connect(hostile)
            await hostile.send(frame)
            assert await hostile.closed()
            hostile_sids.append(hostile.sid)
    await until(lambda: not set(hostile_sids) & (
        {sid for sid, socket in sio.eio.sockets.items() if not socket.closed} | set(sio._clients)))
    assert not sio._tasks  # no handler left running
    await assert_serves_a_join(url, "websocket")


@pytest.mark.gen_test(timeout=20)
async def test_a_websocket_refused_at_handshake_is_an_http_error(url) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await WsPeer.open(url, "EIO=4&transport=__proto__")
    assert info.value.code == 400
    assert isinstance(await PollPeer.open(url), PollPeer)
