"""join_lesson through Node's official socket.io-client, over each transport mode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.integration.node.client import MODES, NodeClient
from tests.support import SUCCESS
from tests.support.joins import (
    LESSON,
    participant_token,
    request,
    snapshot,
    teacher_request,
    teacher_token,
)

TEACHER_KEY = f"lesson_teacher_{LESSON}"
STUDENTS_KEY = f"lesson_student_{LESSON}"


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def node_connect(io_loop, url: str, mode: str) -> Iterator[Callable[[], Awaitable[NodeClient]]]:
    """Factory of node clients connected in `mode` (upgraded to WebSocket in "upgrade")."""
    clients: list[NodeClient] = []

    async def start() -> NodeClient:
        client = await NodeClient.start()
        clients.append(client)
        client.sid = (await client.connect(url, **MODES[mode]))["id"]
        if mode == "upgrade":
            await client.expect("upgrade", transport="websocket")
        return client

    yield start
    for client in clients:
        io_loop.run_sync(client.close)


@pytest.mark.gen_test(timeout=30)
async def test_teacher_join_from_node(node_connect, lesson, redis_db, sio, secret) -> None:
    client = await node_connect()

    assert await client.call("join_lesson", teacher_request("t1", secret)) == [SUCCESS]

    assert redis_db.hgetall(TEACHER_KEY) == {"t1": client.sid}
    assert redis_db.hgetall("t1") == {"lesson_id": LESSON}
    assert LESSON in sio.rooms(client.sid)


@pytest.mark.gen_test(timeout=30)
async def test_a_teacher_join_from_node_without_the_teachers_token_changes_nothing(
    node_connect, lesson, redis_db, sio, secret
) -> None:
    redis_db.hset(TEACHER_KEY, "real-teacher", "sid-of-the-real-teacher")
    before = snapshot(redis_db)
    client = await node_connect()

    for access_token in (None, participant_token("t1", secret), teacher_token("t2", secret)):
        [ack] = await client.call(
            "join_lesson", request(user_id="t1", role="teacher", access_token=access_token)
        )
        assert ack["status"] == "ERROR"
        assert ack["data"]["code"] == "INVALID_TOKEN"

    assert snapshot(redis_db) == before
    assert LESSON not in sio.rooms(client.sid)


@pytest.mark.gen_test(timeout=30)
async def test_participant_join_and_reconnect_from_node(
    node_connect, lesson, redis_db, services, mixpanel_events, secret
) -> None:
    access_token = participant_token("c1", secret)
    first = await node_connect()
    assert await first.call("join_lesson", request(access_token=access_token)) == [SUCCESS]
    assert redis_db.hgetall("c1") == {"sid": first.sid, "client_id": "c1", "role": "student"}

    second = await node_connect()
    assert await second.call("join_lesson", request(access_token=access_token)) == [SUCCESS]

    assert redis_db.hgetall("c1") == {"sid": second.sid, "client_id": "c1", "role": "student"}
    assert redis_db.hgetall(STUDENTS_KEY) == {"c1": second.sid}
    await services.tracker.drain()
    assert [event["event"] for event in mixpanel_events] == ["reconnect"]


@pytest.mark.gen_test(timeout=30)
async def test_an_invalid_join_from_node_gets_an_error_ack(node_connect, lesson, redis_db) -> None:
    client = await node_connect()

    [ack] = await client.call("join_lesson", {"user_id": 7, "lesson_id": LESSON, "role": "x"})

    assert ack["status"] == "ERROR"
    assert ack["data"]["code"] == "INVALID_REQUEST"
    assert redis_db.keys("*") == []
