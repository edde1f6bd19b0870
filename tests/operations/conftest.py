"""Fixtures of the operations tests: the real app with an admin token, a lesson row, and
participants that really join it over python-socketio."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator

import psycopg2
import pytest
import socketio

from config import Config
from tests.conftest import TEST_TOKEN_SECRET
from tests.join_lesson import helpers as tokens

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
LESSON = "lesson-ops"
SEAT_COUNT = 4
WAIT_TIMEOUT = 10.0
POLL_STEP = 0.02


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, admin_token=ADMIN_TOKEN)


@pytest.fixture
def url(http_server, http_port: int) -> str:
    """The in-process server (the `app` fixture) listening on a free port."""
    return f"http://127.0.0.1:{http_port}"


@pytest.fixture
def lesson(database: psycopg2.extensions.connection) -> str:
    """A lesson of SEAT_COUNT seats in which student s1 has seat 2."""
    with database.cursor() as cur:
        cur.execute("INSERT INTO lesson (id, seat_count) VALUES (%s, %s)", (LESSON, SEAT_COUNT))
        cur.execute(
            "INSERT INTO student_attend (lesson_id, student_id, seat) VALUES (%s, %s, %s)",
            (LESSON, "s1", 2),
        )
    return LESSON


def participant_token(client_id: str) -> str:
    return tokens.participant_token(client_id, TEST_TOKEN_SECRET)


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


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait, at most WAIT_TIMEOUT, for state the server changes with no event to await."""
    try:
        async with asyncio.timeout(WAIT_TIMEOUT):
            while not condition():  # noqa: ASYNC110 - python-engineio signals no removal
                await asyncio.sleep(POLL_STEP)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")
