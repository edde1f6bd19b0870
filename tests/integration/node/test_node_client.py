"""The server as the official socket.io-client (node) sees it, over every transport mode."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from protocol import Server
from tests.integration.node.app import ServerState
from tests.integration.node.client import MODES, NodeClient

Connect = Callable[..., Awaitable[tuple[NodeClient, str]]]
TIMEOUT = 10


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_connect_with_auth(connected: Connect, state: ServerState) -> None:
    _, sid = await connected(auth={"token": "t1", "n": [1, 2]})
    assert state.auth[sid] == {"token": "t1", "n": [1, 2]}


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_connect_without_auth_gives_none(connected: Connect, state: ServerState) -> None:
    _, sid = await connected()
    assert state.auth[sid] is None


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_session_survives_heartbeats(connected: Connect) -> None:
    client, _ = await connected()
    for _ in range(2):
        await client.expect("ping")
    assert await client.call("echo", "still here") == ["still here"]
    assert all(e["type"] != "disconnect" for e in client.log)


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_refused_connect(
    node_client: Callable[[], Awaitable[NodeClient]], url: str, mode: str, state: ServerState
) -> None:
    client = await node_client()
    await client.send("connect", url=url, ns="/", opts=MODES[mode], auth={"refuse": True})
    event = await client.expect("connect", "connect_error")
    assert event == {
        "type": "connect_error",
        "ns": "/",
        "message": "nope",
        "data": {"code": 1},
    }
    assert state.auth == {}


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_unknown_namespace(
    node_client: Callable[[], Awaitable[NodeClient]], url: str, mode: str
) -> None:
    client = await node_client()
    await client.send("connect", url=url, ns="/nope", opts=MODES[mode])
    event = await client.expect("connect", "connect_error")
    assert event["type"] == "connect_error"
    assert event["message"] == "Invalid namespace"


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_client_emit_with_and_without_ack(connected: Connect, state: ServerState) -> None:
    client, sid = await connected()
    assert await client.call("echo", {"a": 1}, "x", [True, None]) == [{"a": 1}, "x", [True, None]]
    assert state.received[sid] == ({"a": 1}, "x", [True, None])

    await client.emit("tell", "hello", 2)
    event = await client.expect("event", name="told")
    assert event["args"] == ["hello", 2]
    assert event["ack"] is False


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_server_call_gets_client_ack(connected: Connect, sio: Server) -> None:
    client, sid = await connected()
    await client.send("reply", event="ask", args=[{"answer": 42}])
    assert await sio.call("ask", {"q": 1}, to=sid, timeout=5) == {"answer": 42}
    event = await client.expect("event", name="ask")
    assert event["args"] == [{"q": 1}]
    assert event["ack"] is True


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_binary_from_client_in_event_and_ack(connected: Connect, state: ServerState) -> None:
    client, sid = await connected()
    blob = bytes(range(256))
    ack = await client.call("echo", {"blob": blob, "n": 1}, b"\x00")
    assert ack == [{"blob": blob, "n": 1}, b"\x00"]
    assert state.received[sid] == ({"blob": blob, "n": 1}, b"\x00")


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_binary_from_server_in_event_and_ack(connected: Connect, sio: Server) -> None:
    client, sid = await connected()
    await client.send("reply", event="ask", args=[b"\xffpong"])
    assert await sio.call("ask", [b"\x00ping", {"k": b""}], to=sid, timeout=5) == b"\xffpong"
    event = await client.expect("event", name="ask")
    assert event["args"] == [[b"\x00ping", {"k": b""}]]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_rooms_and_skip_sid(connected: Connect, sio: Server) -> None:
    (sender, sender_sid), (member, member_sid), (outsider, _) = await asyncio.gather(
        connected(), connected(), connected()
    )
    await sio.enter_room(sender_sid, "lesson")
    await sio.enter_room(member_sid, "lesson")
    assert "lesson" in sio.rooms(member_sid)

    await sio.emit("news", {"text": "hi"}, room="lesson", skip_sid=sender_sid)
    # Packets to one client arrive in order: once `marker` is in, `news` would have been too.
    await sio.emit("marker")
    for client in (sender, member, outsider):
        await client.expect("event", name="marker")
    assert (await member.expect("event", name="news"))["args"] == [{"text": "hi"}]
    for client in (sender, outsider):
        assert all(e.get("name") != "news" for e in client.log)


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_second_namespace(
    connected: Connect, sio: Server, url: str, state: ServerState
) -> None:
    client, main_sid = await connected()
    event = await client.connect(url, ns="/admin", auth={"role": "teacher"})
    admin_sid = event["id"]
    assert admin_sid != main_sid
    assert state.auth[admin_sid] == {"role": "teacher"}
    assert await client.call("whoami", ns="/admin") == [{"ns": "/admin", "sid": admin_sid}]

    await sio.emit("bulletin", "staff only", namespace="/admin")
    # Sent after the bulletin on the same connection, so it arrives after it too.
    await sio.emit("marker")
    await client.expect("event", ns="/", name="marker")
    bulletins = [(e["ns"], e["args"]) for e in client.log if e.get("name") == "bulletin"]
    assert bulletins == [("/admin", ["staff only"])]

    # Leaving one namespace keeps the Engine.IO session and the other namespace up.
    await sio.disconnect(admin_sid, namespace="/admin")
    disconnect = await client.expect("disconnect")
    assert (disconnect["ns"], disconnect["reason"]) == ("/admin", "io server disconnect")
    assert await client.call("echo", "main") == ["main"]


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_server_disconnect_reason(
    connected: Connect, sio: Server, state: ServerState
) -> None:
    client, sid = await connected()
    await sio.disconnect(sid)
    assert (await client.expect("disconnect"))["reason"] == "io server disconnect"
    assert await asyncio.wait_for(state.disconnects.get(), 5) == (sid, "server disconnect")


@pytest.mark.gen_test(timeout=TIMEOUT)
async def test_client_disconnect_reason(connected: Connect, state: ServerState) -> None:
    client, sid = await connected()
    await client.send("disconnect")
    assert (await client.expect("disconnect"))["reason"] == "io client disconnect"
    assert await asyncio.wait_for(state.disconnects.get(), 5) == (sid, "client disconnect")
