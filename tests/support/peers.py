"""Raw Engine.IO peers (tests/support/raw_peers.py) speaking join_lesson to the full app,
and the check every resilience case ends with: a fresh client still gets a normal join."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import tornado.httpclient
import tornado.websocket

from tests.support import SUCCESS, TEST_TOKEN_SECRET
from tests.support.joins import teacher_token
from tests.support.raw_peers import RECV_TIMEOUT, PollPeer, WsPeer, fetch

LESSON = "lesson-r"
SEATS = 4
CHECK_STEP = 0.01

Peer = WsPeer | PollPeer


async def open_peer(url: str, transport: str, headers: dict[str, str] | None = None) -> Peer:
    """A peer past the Engine.IO handshake; HTTPClientError if the handshake is refused."""
    if transport == "websocket":
        request = tornado.httpclient.HTTPRequest(
            url.replace("http", "ws", 1) + "?EIO=4&transport=websocket", headers=headers
        )
        peer: Peer = await WsPeer.connect(request)
        handshake = await peer.recv()
        assert isinstance(handshake, str) and handshake.startswith("0{"), handshake
        peer.sid = json.loads(handshake[1:])["sid"]  # the Engine.IO sid, as PollPeer has it
        return peer
    response = await fetch(url + "?EIO=4&transport=polling", headers=headers)
    if response.code != 200:
        raise tornado.httpclient.HTTPClientError(response.code, response=response)
    text = response.body.decode()
    return PollPeer(url, json.loads(text[1:])["sid"], text)


def session_closed(eio: Any, peer: Peer) -> bool:
    """Whether the server has ended the peer's Engine.IO session."""
    socket = eio.sockets.get(peer.sid)
    return socket is None or socket.closed


async def until(condition: Callable[[], bool]) -> None:
    """Wait up to RECV_TIMEOUT for a condition on server state that no event announces
    (checked every CHECK_STEP)."""
    for _ in range(round(RECV_TIMEOUT / CHECK_STEP)):
        if condition():
            return
        await asyncio.sleep(CHECK_STEP)
    raise TimeoutError("the server never reached the expected state")


async def connect(peer: Peer) -> str:
    """Join the root namespace; returns the Socket.IO sid."""
    await peer.send("40")
    reply = await peer.recv()
    assert isinstance(reply, str) and reply.startswith("40{"), reply
    return json.loads(reply[2:])["sid"]


def teacher(user_id: str | None = None, lesson_id: str = LESSON) -> dict[str, Any]:
    """A teacher's join request with the teacher's own token, by default under a fresh user id."""
    user_id = user_id or f"t-{uuid.uuid4().hex[:12]}"
    return {
        "user_id": user_id,
        "lesson_id": lesson_id,
        "access_token": teacher_token(user_id, TEST_TOKEN_SECRET),
        "role": "teacher",
    }


async def emit_join(peer: Peer, payload: str, ack_id: int = 1) -> Any:
    """Send join_lesson with a raw JSON argument list tail (`payload` follows the event name)
    and return the ack's first argument."""
    await peer.send(f'42{ack_id}["join_lesson"{"," if payload else ""}{payload}]')
    head = f"43{ack_id}["
    while True:
        frame = await peer.recv()
        assert isinstance(frame, str), f"connection ended while waiting for ack {ack_id}"
        if frame.startswith(head):
            return json.loads(frame[len(head) - 1 :])[0]


async def join(peer: Peer, request: Any, ack_id: int = 1) -> Any:
    """join_lesson with one JSON argument; returns the ack."""
    return await emit_join(peer, json.dumps(request), ack_id)


async def assert_serves_a_join(url: str, transport: str) -> None:
    """The server is healthy: a new client connects and a normal join succeeds."""
    peer = await open_peer(url, transport)
    try:
        await connect(peer)
        assert await join(peer, teacher()) == SUCCESS
    finally:
        peer.close()
