"""A socket joining another lesson leaves the one it was in; re-joining the same one keeps it."""

from __future__ import annotations

import psycopg2
import pytest

from tests.integration.node.client import NodeClient
from tests.support import SUCCESS
from tests.support.joins import (
    LESSON,
    SEATS,
    keyspace_watch,
    participant_token,
    request,
    teacher_request,
)
from tests.support.lessons import add_lesson
from tests.support.lifecycle import presence

OTHER = "lesson-2"
OTHER_SEATS = 2


def seat_map(seats: int) -> tuple[dict[str, str], bool]:
    return {str(seat): "" for seat in range(1, seats + 1)}, False


BOTH_SEAT_MAPS = {
    f"lesson_seat_{LESSON}": seat_map(SEATS),
    f"lesson_seat_{OTHER}": seat_map(OTHER_SEATS),
}


@pytest.fixture
def other_lesson(lesson: str, database: psycopg2.extensions.connection) -> str:
    return add_lesson(database, OTHER, OTHER_SEATS)


def participant(sid: str, lesson_id: str) -> dict[str, tuple[dict[str, str], bool]]:
    """The keys of participant c1 holding `lesson_id` with `sid`."""
    return {
        "c1": ({"sid": sid, "client_id": "c1", "role": "student"}, True),
        f"lesson_student_{lesson_id}": ({"c1": sid}, False),
    }


@pytest.mark.gen_test(timeout=30)
async def test_participant_switches_lessons(connect, other_lesson, redis_db, secret, sio):
    client = await connect()
    token = participant_token("c1", secret)
    assert await client.join(request(access_token=token)) == SUCCESS
    assert await sio.get_session(client.sid) == {"seat": 7, "client_id": "c1", "role": "student"}

    assert await client.join(request(lesson_id=OTHER, access_token=token)) == SUCCESS

    assert presence(redis_db) == {**BOTH_SEAT_MAPS, **participant(client.sid, OTHER)}
    assert set(sio.rooms(client.sid)) == {client.sid, OTHER}
    # u1 has no seat in the other lesson: the first lesson's seat is not carried over.
    assert await sio.get_session(client.sid) == {"client_id": "c1", "role": "student"}


@pytest.mark.gen_test(timeout=30)
async def test_teacher_switches_lessons(connect, other_lesson, redis_db, sio, secret):
    client = await connect()
    assert await client.join(teacher_request("t1", secret)) == SUCCESS
    redis_db.hset(f"lesson_teacher_{LESSON}", "t2", "sid-of-t2")

    assert await client.join(teacher_request("t1", secret, OTHER)) == SUCCESS

    assert presence(redis_db) == {
        **BOTH_SEAT_MAPS,
        f"lesson_teacher_{LESSON}": ({"t2": "sid-of-t2"}, True),
        f"lesson_teacher_{OTHER}": ({"t1": client.sid}, True),
        "t1": ({"lesson_id": OTHER}, False),
    }
    assert set(sio.rooms(client.sid)) == {client.sid, OTHER}


@pytest.mark.gen_test(timeout=30)
async def test_switch_to_a_missing_lesson_keeps_the_first(connect, lesson, redis_db, secret, sio):
    client = await connect()
    token = participant_token("c1", secret)
    assert await client.join(request(access_token=token)) == SUCCESS
    before = presence(redis_db)

    ack = await client.join(request(lesson_id="no-such-lesson", access_token=token))

    assert ack["data"]["code"] == "LESSON_NOT_FOUND"
    assert presence(redis_db) == before
    assert LESSON in sio.rooms(client.sid)


@pytest.mark.gen_test(timeout=30)
async def test_rejoining_the_same_lesson_never_clears_itself(
    connect, lesson, redis_db, redis_url, secret, keyspace_events
):
    client = await connect()
    token = participant_token("c1", secret)
    assert await client.join(request(access_token=token)) == SUCCESS

    async with keyspace_watch(redis_url) as watch:
        assert await client.join(request(access_token=token)) == SUCCESS
        writes = await watch.settle()

    assert all(op in ("hset", "expire") for _key, op in writes), writes
    assert presence(redis_db) == {
        f"lesson_seat_{LESSON}": seat_map(SEATS),
        **participant(client.sid, LESSON),
    }


@pytest.mark.gen_test(timeout=30)
async def test_node_client_switches_then_disconnects(
    url, other_lesson, redis_db, secret, server_events
):
    client = await NodeClient.start()
    try:
        sid = (await client.connect(url))["id"]  # polling upgraded to WebSocket
        token = participant_token("c1", secret)
        assert await client.call("join_lesson", request(access_token=token)) == [SUCCESS]
        assert await client.call("join_lesson", request(lesson_id=OTHER, access_token=token)) == [
            SUCCESS
        ]
        assert presence(redis_db) == {**BOTH_SEAT_MAPS, **participant(sid, OTHER)}

        await client.send("disconnect")
        record = await server_events.wait_for("disconnect", sid)
    finally:
        await client.close()

    assert (record.lesson_id, record.cleared) == (OTHER, 2)
    assert presence(redis_db) == {
        **BOTH_SEAT_MAPS,
        "c1": ({"sid": "", "client_id": "c1", "role": "student"}, True),
    }


@pytest.mark.gen_test(timeout=30)
async def test_a_switch_hands_the_lesson_to_the_other_app_of_the_same_teacher(
    connect, other_lesson, redis_db, secret
):
    staying, switching = await connect(), await connect()
    assert await staying.join(teacher_request("t1", secret)) == SUCCESS
    assert await switching.join(teacher_request("t1", secret)) == SUCCESS

    assert await switching.join(teacher_request("t1", secret, OTHER)) == SUCCESS

    assert redis_db.hgetall(f"lesson_teacher_{LESSON}") == {"t1": staying.sid}
    assert redis_db.hgetall(f"lesson_teacher_{OTHER}") == {"t1": switching.sid}
