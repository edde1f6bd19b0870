"""The messages rollcall publishes are python-socketio's, byte for byte where it matters: read
back from the real channel next to what python-socketio's own manager publishes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from protocol import Server
from protocol.redis_transport import DEFAULT_CHANNEL, RedisTransport
from protocol.relay import RelayManager
from tests.support.joins import EVENT_TIMEOUT, LESSON
from tests.support.scaleout import Listener, in_process, queue_config

#: how long one get_message() waits before the bounded loop around it asks again
POLL = 1.0


class Channel:
    """A subscriber on the real channel: what every process would receive."""

    def __init__(self, pubsub: aioredis.client.PubSub) -> None:
        self.pubsub = pubsub

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:
                message = await self.pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=POLL
                )
                if message is not None:
                    return json.loads(message["data"])


@asynccontextmanager
async def channel(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, Channel]]:
    redis = aioredis.Redis.from_url(redis_url)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(DEFAULT_CHANNEL)
        try:
            yield redis, Channel(pubsub)
        finally:
            await redis.aclose()


def without_host(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if key != "host_id"}


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize(
    ("data", "room", "skip_sid"),
    [
        ({"lesson_id": LESSON}, LESSON, None),
        (None, None, "sid-1"),
        (("text", b"\x00\xff", {"nested": [b"\x01"]}), "sid-2", ["sid-3", "sid-4"]),
    ],
)
async def test_emit_messages_match_python_socketios(
    redis_url, write_only, data, room, skip_sid
) -> None:
    ours = RelayManager(RedisTransport(redis_url))
    sio = Server(client_manager=ours)
    try:
        async with channel(redis_url) as (_, received):
            await write_only.emit("ev", data, room=room, skip_sid=skip_sid)
            theirs = await received.next()
            await sio.emit("ev", data, room=room, skip_sid=skip_sid)
            mine = await received.next()
    finally:
        await ours.stop()
    assert without_host(mine) == without_host(theirs)
    assert mine["host_id"] == ours.host_id


@pytest.mark.gen_test(timeout=30)
async def test_an_ack_asked_by_another_process_is_answered_over_the_channel(
    config, services, redis_url, secret, lesson
) -> None:
    config = queue_config(config, redis_url)
    async with in_process(config, services) as (url, _), channel(redis_url) as (redis, received):
        here = Listener(url, "websocket")
        here.sio.on("ask", lambda question: f"answer to {question}")
        try:
            await here.connect()
            await here.join_as("c1", secret)
            asked = {
                "method": "emit", "event": "ask", "data": ["q"], "binary": False,
                "namespace": "/", "room": here.sid, "skip_sid": None,
                "callback": [here.sid, "/", 7], "host_id": "another-process",
            }  # fmt: skip
            await redis.publish(DEFAULT_CHANNEL, json.dumps(asked))
            assert (await received.next())["method"] == "emit"  # our own, read back
            assert await received.next() == {
                "method": "callback", "host_id": "another-process", "sid": here.sid,
                "namespace": "/", "id": 7, "args": ["answer to q"],
            }  # fmt: skip
        finally:
            await here.close()
