"""Test helpers for join_lesson: real clients, a local Mixpanel endpoint, Redis snapshots."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import redis
import redis.asyncio as aioredis
import socketio
import tornado.web

from store.keys import ALIVE_KEY, HELD_KEY, PROCESSES_KEY, SWEPT_KEY
from tests.support import free_port  # noqa: F401 - re-exported for the join_lesson tests

ACK_TIMEOUT = 10.0
EVENT_TIMEOUT = 10.0
TRANSPORTS = ("polling", "websocket")
LESSON = "lesson-1"
SEATS = 30
#: what the keys of a process's own records (liveness, held record, swept marker, registry)
#: start with, after the key prefix
PROCESS_RECORDS = tuple(
    template.partition("{")[0] for template in (ALIVE_KEY, HELD_KEY, SWEPT_KEY, PROCESSES_KEY)
)


def token(claims: dict[str, Any], secret: str) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def participant_token(
    client_id: str, secret: str, lifetime: int = 3600, user_id: str | None = None
) -> str:
    """A participant's token; with `user_id`, one that vouches for that user (its `user_id`
    claim), so that its joins as `user_id` are that user's attendance."""
    claims: dict[str, Any] = {"client_id": client_id, "exp": int(time.time()) + lifetime}
    if user_id is not None:
        claims["user_id"] = user_id
    return token(claims, secret)


def teacher_token(user_id: str, secret: str, lifetime: int = 3600) -> str:
    """The teacher's own token: role "teacher", client id `user_id` (join_lesson.md, revision 2)."""
    return token(
        {"client_id": user_id, "role": "teacher", "exp": int(time.time()) + lifetime}, secret
    )


def request(
    user_id: str = "u1",
    lesson_id: str = LESSON,
    access_token: str | None = None,
    role: str = "student",
) -> dict[str, Any]:
    return {"user_id": user_id, "lesson_id": lesson_id, "access_token": access_token, "role": role}


def teacher_request(user_id: str, secret: str, lesson_id: str = LESSON) -> dict[str, Any]:
    """A teacher's join carrying the teacher's own token."""
    return request(user_id, lesson_id, teacher_token(user_id, secret), "teacher")


def is_process_record(key: str) -> bool:
    """Whether `key` is one of a process's own records (liveness, held record), with or without
    a key prefix: written whatever a test does, and checked by tests/integration/healing. The
    rosters, which a join writes, are not among them."""
    return any(record in key for record in PROCESS_RECORDS)


def snapshot(db: redis.Redis) -> dict[str, tuple[str, Any, int]]:
    """Every key of the database but the process records: its type, value and TTL, for comparing
    whole states (tests/integration/healing checks the process records)."""
    state = {}
    for key in db.keys("*"):
        if is_process_record(key):
            continue
        kind = db.type(key)
        value = db.hgetall(key) if kind == "hash" else db.get(key) if kind == "string" else None
        state[key] = (kind, value, db.ttl(key))
    return state


class Client:
    """A python-socketio client connected to the test server over one transport."""

    def __init__(self, url: str, transport: str) -> None:
        self.url = url
        self.transport = transport
        self.sio = socketio.AsyncClient(reconnection=False)

    async def connect(self) -> Client:
        await self.sio.connect(self.url, transports=[self.transport], wait_timeout=ACK_TIMEOUT)
        return self

    @property
    def sid(self) -> str:
        sid = self.sio.get_sid()
        assert sid is not None
        return sid

    async def join(self, *args: Any) -> Any:
        """Emit join_lesson with an ack id and return the ack."""
        return await self.sio.call("join_lesson", args[0] if len(args) == 1 else args,
                                   timeout=ACK_TIMEOUT)

    async def close(self) -> None:
        """Disconnect, and wait until the client's Engine.IO loops have ended: after a drop by
        the server they may still be noticing it (up to a ping interval and timeout), and
        disconnect() alone would not wait for them."""
        read_loop = self.sio.eio.read_loop_task
        await self.sio.disconnect()
        if read_loop is not None:
            async with asyncio.timeout(EVENT_TIMEOUT):
                await read_loop


async def assert_refused(client: Client, sio: Any, args: tuple, code: str) -> None:
    """The join answers ERROR with `code`, and the socket's rooms and session are exactly what
    they were before it: on a new connection, its own room alone and no session data (the
    Redis side is the caller's to compare)."""
    rooms = sorted(sio.rooms(client.sid))
    session = dict(await sio.get_session(client.sid))  # a copy: the join may change the dict
    ack = await client.join(*args)
    assert ack["status"] == "ERROR"
    assert ack["data"]["code"] == code
    assert isinstance(ack["data"]["message"], str)
    assert set(ack) == {"status", "data"}
    assert set(ack["data"]) == {"code", "message"}
    assert sorted(sio.rooms(client.sid)) == rooms
    assert await sio.get_session(client.sid) == session


class MixpanelSink(tornado.web.RequestHandler):
    """Mixpanel's /track endpoint, locally: records each event of the `data` form field."""

    def initialize(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def post(self) -> None:
        form = urllib.parse.parse_qs(self.request.body.decode())
        payload = json.loads(form["data"][0])
        self.events.extend(payload if isinstance(payload, list) else [payload])
        self.write({"status": 1, "error": None})


class KeyspaceWatch:
    """Keyspace notifications of Redis, to await writes made by the server and count them
    (the process records are left out: see is_process_record).

    Notifications arrive in execution order, so after the notification of a sentinel write
    made last, every earlier write has been seen.
    """

    SENTINEL = "test:sentinel"

    def __init__(self, url: str, db: int = 0) -> None:
        self._redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._pubsub = self._redis.pubsub()
        self._prefix = f"__keyspace@{db}__:"
        self.seen: list[tuple[str, str]] = []

    async def start(self) -> None:
        await self._pubsub.psubscribe(self._prefix + "*")
        await self._pubsub.get_message(timeout=EVENT_TIMEOUT)  # the psubscribe confirmation

    async def wait_for(self, key: str, op: str) -> None:
        """Wait for the notification of `op` (e.g. "hset") on `key`."""
        async with asyncio.timeout(EVENT_TIMEOUT):
            while (key, op) not in self.seen:
                await self._next()

    async def settle(self) -> list[tuple[str, str]]:
        """Everything written until now, in order (the sentinel excluded)."""
        await self._redis.set(self.SENTINEL, "1")
        await self.wait_for(self.SENTINEL, "set")
        await self._redis.delete(self.SENTINEL)
        await self.wait_for(self.SENTINEL, "del")
        return [entry for entry in self.seen if entry[0] != self.SENTINEL]

    async def _next(self) -> None:
        message = await self._pubsub.get_message(timeout=EVENT_TIMEOUT)
        if message and message["type"] == "pmessage":
            key = message["channel"][len(self._prefix):]
            if not is_process_record(key):
                self.seen.append((key, message["data"]))

    async def close(self) -> None:
        await self._pubsub.aclose()
        await self._redis.aclose()


@asynccontextmanager
async def keyspace_watch(url: str) -> AsyncIterator[KeyspaceWatch]:
    watch = KeyspaceWatch(url)
    await watch.start()
    try:
        yield watch
    finally:
        await watch.close()
