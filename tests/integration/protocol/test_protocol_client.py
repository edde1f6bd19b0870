"""python-socketio's AsyncClient against the server, over polling, WebSocket, and an upgrade."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from tests.integration.protocol.conftest import Events

TRANSPORTS = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "upgrade": ["polling", "websocket"],
}


@pytest.fixture(params=sorted(TRANSPORTS))
def client_transports(request: pytest.FixtureRequest) -> list[str]:
    return TRANSPORTS[request.param]


@pytest.fixture
def client(io_loop):
    clients: list[socketio.AsyncClient] = []

    def make() -> socketio.AsyncClient:
        c = socketio.AsyncClient(reconnection=False)
        clients.append(c)
        return c

    yield make
    for c in clients:
        if c.connected:
            io_loop.run_sync(c.disconnect)


async def connect(c: socketio.AsyncClient, url: str, transports: list[str], **kwargs: Any) -> None:
    await c.connect(url.removesuffix("socket.io/"), transports=transports, **kwargs)
    if transports == ["polling", "websocket"]:
        for _ in range(100):  # the upgrade completes in the background
            if c.eio.current_transport == "websocket":
                break
            await asyncio.sleep(0.01)
        assert c.eio.current_transport == "websocket"


@pytest.mark.gen_test
async def test_connect_with_auth_and_ack_both_ways(
    url: str, client, client_transports: list[str], sio, events: Events
) -> None:
    c = client()
    greeted: asyncio.Future = asyncio.get_running_loop().create_future()
    c.on("auth", lambda data: greeted.set_result(data))

    @c.on("question")
    def question(value: int) -> tuple[str, int]:
        return "answer", value * 2

    await connect(c, url, client_transports, auth={"token": "t1"})
    assert await asyncio.wait_for(greeted, 2) == {"token": "t1"}
    _, _, sid, auth = await events.wait_for("connect")
    assert auth == {"token": "t1"}
    assert c.get_sid("/") == sid
    assert sid != c.eio.sid  # the Socket.IO sid is not the Engine.IO one

    assert await c.call("message-with-ack", (1, "2", {"3": [False]}), timeout=2) == (
        1,
        "2",
        {"3": [False]},
    )
    assert await sio.call("question", 21, to=sid, timeout=2) == ("answer", 42)


@pytest.mark.gen_test
async def test_refused_connect(url: str, client, client_transports: list[str]) -> None:
    c = client()
    errors: list[Any] = []
    c.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(c, url, client_transports, auth={"refuse": "raise"})
    assert errors == [{"message": "not allowed", "data": {"code": 7}}]


@pytest.mark.gen_test
async def test_binary_both_ways(url: str, client, client_transports: list[str], sio) -> None:
    c = client()
    received: asyncio.Queue = asyncio.Queue()
    c.on("message-back", lambda *args: received.put_nowait(args))
    await connect(c, url, client_transports)
    await c.emit("message", (b"\x00\x01", {"nested": b"\xff"}))
    assert await asyncio.wait_for(received.get(), 2) == (b"\x00\x01", {"nested": b"\xff"})
    assert await c.call("message-with-ack", b"\x07", timeout=2) == b"\x07"
    sid = c.get_sid("/")
    await sio.emit("message-back", {"blob": b"\x10\x20"}, to=sid)
    assert await asyncio.wait_for(received.get(), 2) == ({"blob": b"\x10\x20"},)


@pytest.mark.gen_test
async def test_rooms_and_skip_sid(url: str, client, client_transports: list[str], sio) -> None:
    inboxes = []
    clients = []
    for _ in range(3):
        c = client()
        inbox: asyncio.Queue = asyncio.Queue()
        c.on("news", lambda data, inbox=inbox: inbox.put_nowait(data))
        await connect(c, url, client_transports)
        clients.append(c)
        inboxes.append(inbox)
    a, b, outsider = (c.get_sid("/") for c in clients)
    for sid in (a, b):
        await sio.enter_room(sid, "lesson-1")
    assert sorted(sio.rooms(a)) == sorted([a, "lesson-1"])

    await sio.emit("news", "to room", room="lesson-1", skip_sid=a)
    await sio.emit("news", "to all")
    assert await asyncio.wait_for(inboxes[0].get(), 2) == "to all"
    assert await asyncio.wait_for(inboxes[1].get(), 2) == "to room"
    assert await asyncio.wait_for(inboxes[1].get(), 2) == "to all"
    assert await asyncio.wait_for(inboxes[2].get(), 2) == "to all"

    await sio.leave_room(b, "lesson-1")
    await sio.emit("news", "a only", to="lesson-1")
    await sio.close_room("lesson-1")
    await sio.emit("news", "nobody", room="lesson-1")
    await sio.emit("news", "direct", to=outsider)
    assert await asyncio.wait_for(inboxes[0].get(), 2) == "a only"
    assert await asyncio.wait_for(inboxes[2].get(), 2) == "direct"
    assert inboxes[0].empty() and inboxes[1].empty()
    assert sio.rooms(a) == [a]


@pytest.mark.gen_test
async def test_second_namespace_and_sessions(
    url: str, client, client_transports: list[str], sio, events: Events
) -> None:
    c = client()
    custom: asyncio.Queue = asyncio.Queue()
    c.on("message-back", lambda *args: custom.put_nowait(args), namespace="/custom")
    await c.connect(
        url.removesuffix("socket.io/"), transports=client_transports, namespaces=["/", "/custom"]
    )
    root_sid, custom_sid = c.get_sid("/"), c.get_sid("/custom")
    assert root_sid != custom_sid
    await c.emit("message", "hi", namespace="/custom")
    assert await asyncio.wait_for(custom.get(), 2) == ("hi",)

    async with sio.session(custom_sid) as session:
        session["user"] = "ada"
    assert await sio.get_session(custom_sid) == {"user": "ada"}
    assert await sio.get_session(root_sid) == {}

    await c.disconnect()
    reasons = set()
    for _ in range(2):
        entry = await events.wait_for("disconnect")
        events.log.remove(entry)
        reasons.add((entry[1], entry[3]))
    assert {ns for ns, _ in reasons} == {"/", "/custom"}
