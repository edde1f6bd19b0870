"""Issue 8: rollcall processes sharing a Redis channel in python-socketio's AsyncRedisManager
format. Real server.py subprocesses, a process served in the test's loop (to call its `sio`), real
python-socketio and Node socket.io-client clients, and python-socketio's own write-only manager."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import signal

import pytest
import redis.asyncio as aioredis
import socketio

from protocol.redis_transport import DEFAULT_CHANNEL
from server import SHUTDOWN_TIMEOUT
from tests.integration.node.client import NodeClient
from tests.support.joins import EVENT_TIMEOUT, LESSON, participant_token, request
from tests.support.scaleout import (
    SENTINEL,
    SUCCESS,
    Listener,
    Subscriptions,
    in_process,
    queue_config,
    subprocess_server,
)

#: set if anything ever unpickles a _Trap
SPRUNG: list[bool] = []


def _spring() -> None:
    SPRUNG.append(True)


class _Trap:
    """Unpickling this calls _spring(): a relay that unpickled would be seen doing it."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _spring, ()


OUT_OF_RANGE_PLACEHOLDER = {
    "method": "emit",
    "event": "x",
    "binary": True,
    "room": LESSON,
    "data": [[{"_placeholder": True, "num": 3}], "AA=="],
}
POLLING = ["polling"]
TRAFFIC = 40  # numbered emits in the kill test
KILL_AFTER = 10  # the subprocess is killed once this many have arrived


async def node_join(
    node: NodeClient, url: str, client_id: str, secret: str, transports: list[str] = POLLING
) -> str:
    """Connect the Node client (over polling unless told), join the lesson, return its sid."""
    event = await node.connect(url, transports=transports)
    token = participant_token(client_id, secret)
    assert await node.call("join_lesson", request(user_id=client_id, access_token=token)) == [
        SUCCESS
    ]
    return event["id"]


@pytest.mark.gen_test(timeout=60)
async def test_room_and_sid_emits_room_changes_and_disconnects_cross_processes(
    config, services, redis_url, secret, lesson, write_only
):
    config = queue_config(config, redis_url)
    node = await NodeClient.start()
    async with in_process(config, services) as (url_a, a), subprocess_server(config) as (url_b, _):
        here = Listener(url_a, "websocket")
        there = Listener(url_b, "websocket")
        try:
            for client, client_id in ((here, "c1"), (there, "c2")):
                await client.connect()
                await client.join_as(client_id, secret)
            node_sid = await node_join(node, url_b, "c3", secret)

            # a room emit from one process reaches the lesson on both
            await a.sio.emit("lesson_started", {"lesson_id": LESSON}, room=LESSON)
            for client in (here, there):
                assert await client.next() == ("lesson_started", [{"lesson_id": LESSON}])
            event = await node.expect("event", name="lesson_started")
            assert event["args"] == [{"lesson_id": LESSON}]

            # python-socketio's write-only manager, several arguments with bytes among them
            await write_only.emit("slide", ("s1", b"\x00\xff"), room=LESSON)
            for client in (here, there):
                assert await client.next() == ("slide", ["s1", b"\x00\xff"])
            assert (await node.expect("event", name="slide"))["args"] == ["s1", b"\x00\xff"]

            # a sid on the other process, and skip_sid across processes
            await a.sio.emit("private", "for c2", to=there.sid)
            await a.sio.emit("others", None, room=LESSON, skip_sid=there.sid)
            await write_only.emit(SENTINEL, 1, room=LESSON)
            assert await there.next() == ("private", ["for c2"])
            assert await there.next() == (SENTINEL, [1])  # "others" skipped it
            assert await here.next() == ("others", [])  # never "private"
            assert await here.next() == (SENTINEL, [1])
            await node.expect("event", name="others")

            # room changes for a sid of the other process, then a room emit
            await a.sio.enter_room(node_sid, "breakout")
            await a.sio.emit("breakout_open", "b1", room="breakout")
            assert (await node.expect("event", name="breakout_open"))["args"] == ["b1"]
            await a.sio.leave_room(node_sid, "breakout")
            await a.sio.enter_room(there.sid, "breakout")
            await a.sio.close_room("breakout")
            await a.sio.emit("breakout_closed", None, room="breakout")
            await write_only.emit(SENTINEL, 2, room=LESSON)
            assert await there.next() == (SENTINEL, [2])  # its room was closed
            await node.expect("event", name=SENTINEL, args=[2])
            assert not [e for e in node.log if e.get("name") == "breakout_closed"]

            # a disconnect of a sid on the other process
            await a.sio.disconnect(there.sid)
            async with asyncio.timeout(EVENT_TIMEOUT):
                await there.disconnected.wait()
        finally:
            await node.close()
            for client in (here, there):
                await client.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_process_killed_mid_traffic_does_not_disturb_the_other(
    config, services, redis_url, secret, lesson, write_only
):
    config = queue_config(config, redis_url)
    node = await NodeClient.start()
    async with in_process(config, services) as (url_a, a), subprocess_server(config) as (url_b, b):
        here = Listener(url_a, "polling")
        try:
            await here.connect()
            await here.join_as("c1", secret)
            await node_join(node, url_b, "c2", secret)
            for n in range(TRAFFIC):
                await write_only.emit("tick", n, room=LESSON)
                if n == KILL_AFTER:
                    await node.expect("event", name="tick", args=[KILL_AFTER])
                    b.proc.kill()
                    await b.proc.wait()
            assert [await here.next() for _ in range(TRAFFIC)] == [
                ("tick", [n]) for n in range(TRAFFIC)
            ]
            await node.expect("disconnect")
            await a.sio.emit("after", None, room=LESSON)
            assert await here.next() == ("after", [])
        finally:
            await node.close()
            await here.close()


@pytest.mark.gen_test(timeout=60)
async def test_invalid_messages_are_ignored_and_never_unpickled(
    config, services, redis_url, secret, lesson, write_only, caplog
):
    config = queue_config(config, redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    async with in_process(config, services) as (url, _):
        here = Listener(url, "websocket")
        try:
            await here.connect()
            await here.join_as("c1", secret)
            # python-socketio 4's pickle format (a payload that would run code), then bad shapes
            bad = [
                pickle.dumps(_Trap()),
                b"not json",
                b"[1, 2]",
                json.dumps({"method": "emit", "event": "x", "data": "no list", "room": LESSON}),
                json.dumps(OUT_OF_RANGE_PLACEHOLDER),
            ]
            with caplog.at_level(logging.WARNING, logger="protocol.relay"):
                for raw in bad:
                    await redis.publish(DEFAULT_CHANNEL, raw)
                await write_only.emit(SENTINEL, "after", room=LESSON)
                assert await here.next() == (SENTINEL, ["after"])
            ignored = [r for r in caplog.records if "ignoring" in r.getMessage()]
            assert len(ignored) == len(bad)
            assert not SPRUNG
        finally:
            await redis.aclose()
            await here.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_listener_resubscribes_after_redis_comes_back(
    config, services, redis_url, secret, lesson, write_only, redis_outage
):
    config = queue_config(config, redis_url)
    subscriptions = Subscriptions()
    logger = logging.getLogger("protocol.redis_transport")
    logger.addHandler(subscriptions)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        async with in_process(config, services) as (url, a):
            here = Listener(url, "websocket")
            try:
                await here.connect()
                await here.join_as("c1", secret)
                await subscriptions.reach(1)
                await asyncio.to_thread(redis_outage.begin)
                # while Redis is away, this process's own sockets still get its emits
                await a.sio.emit("local", None, room=LESSON)
                assert await here.next() == ("local", [])
                await asyncio.to_thread(redis_outage.end)
                await subscriptions.reach(2)
                await write_only.emit("relayed", None, room=LESSON)
                assert await here.next() == ("relayed", [])
            finally:
                await here.close()
    finally:
        logger.removeHandler(subscriptions)
        logger.setLevel(previous)


def test_default_channel_is_python_socketios() -> None:
    assert socketio.AsyncRedisManager(write_only=True).channel == DEFAULT_CHANNEL


@pytest.mark.gen_test(timeout=30)
async def test_sigterm_stops_the_listener_and_exits_0_in_time(config, redis_url) -> None:
    async with subprocess_server(queue_config(config, redis_url)) as (_, server):
        server.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(SHUTDOWN_TIMEOUT):
            assert await server.proc.wait() == 0
