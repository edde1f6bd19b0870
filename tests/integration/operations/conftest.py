"""Fixtures of the operations tests: the real app with an admin token, lesson rows, and
participants that really join them over python-socketio."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator

import psycopg2
import pytest
import socketio
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from config import Config
from tests.integration.lifecycle.conftest import server_events  # noqa: F401 - a fixture, reused as it is
from tests.support import TEST_TOKEN_SECRET
from tests.support import joins as tokens
from tests.support.lessons import add_lesson

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LESSON = "lesson-ops"
SEAT_COUNT = 4
#: the roll call of the issue: four enrolled students, three seated and one without a seat
ROLL_CALL = "lesson-roll"
ROLL_CALL_SEATS = 4
ENROLLED = {"ana": 1, "ben": 2, "chen": 3, "dana": None}
#: a participant who joins without being enrolled
OUTSIDER = "guest"
WAIT_TIMEOUT = 10.0
POLL_STEP = 0.02


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, admin_token=ADMIN_TOKEN)


@pytest.fixture
def lesson(database: psycopg2.extensions.connection) -> str:
    """A lesson of SEAT_COUNT seats in which student s1 has seat 2."""
    return add_lesson(database, LESSON, SEAT_COUNT, {"s1": 2})


@pytest.fixture
def roll_call(database: psycopg2.extensions.connection) -> str:
    """The lesson ROLL_CALL: ROLL_CALL_SEATS seats and the ENROLLED students."""
    return add_lesson(database, ROLL_CALL, ROLL_CALL_SEATS, ENROLLED)


async def admin_get(url: str, path: str, headers: dict[str, str] | None = BEARER
                    ) -> HTTPResponse:
    """GET `path` as the admin (by default), never raising on an error status."""
    return await AsyncHTTPClient().fetch(
        url + path, headers=headers, raise_error=False, follow_redirects=False
    )


def participant_token(client_id: str, user_id: str | None = None) -> str:
    """A participant's token; with `user_id`, one that vouches for that user."""
    return tokens.participant_token(client_id, TEST_TOKEN_SECRET, user_id=user_id)


def teacher_token(user_id: str) -> str:
    return tokens.teacher_token(user_id, TEST_TOKEN_SECRET)


Connect = Callable[..., Awaitable[socketio.AsyncClient]]


@pytest.fixture
def connect(io_loop, url: str) -> Iterator[Connect]:
    """Factory of connected python-socketio clients; all disconnected at teardown."""
    clients: list[socketio.AsyncClient] = []

    async def open_client(transport: str = "websocket") -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        clients.append(client)
        await client.connect(url, transports=[transport], wait_timeout=WAIT_TIMEOUT)
        return client

    yield open_client
    for client in clients:
        io_loop.run_sync(client.disconnect)


async def join(client: socketio.AsyncClient, **fields: object) -> dict:
    """Emit join_lesson and return its ack."""
    return await client.call("join_lesson", fields, timeout=WAIT_TIMEOUT)


async def join_as(client: socketio.AsyncClient, user_id: str, lesson_id: str,
                  client_id: str | None = None) -> None:
    """Join `lesson_id` as the student `user_id`, with a token of `client_id` (by default
    `c-{user_id}`) that vouches for `user_id`, and check that it succeeded."""
    token = participant_token(client_id or f"c-{user_id}", user_id)
    ack = await join(client, user_id=user_id, lesson_id=lesson_id, role="student",
                     access_token=token)
    assert ack == {"status": "SUCCESS", "data": {}}, ack


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait, at most WAIT_TIMEOUT, for state the server changes with no event to await."""
    try:
        async with asyncio.timeout(WAIT_TIMEOUT):
            while not condition():  # noqa: ASYNC110 - python-engineio signals no removal
                await asyncio.sleep(POLL_STEP)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")
