"""A `lesson` row whose seat_count is absurd: below 1 the lesson gets no seat map and the join
goes on; above MAX_SEAT_COUNT the join answers INTERNAL before Redis is asked anything, so a
seat_count of 10^9 never has Redis build a billion fields."""

from __future__ import annotations

import logging

import pytest

from handlers import join_lesson
from store.lessons import MAX_SEAT_COUNT
from tests.support import SUCCESS
from tests.support.joins import LESSON, participant_token, request, snapshot, teacher_request
from tests.support.lessons import add_lesson

SEAT_MAP = f"lesson_seat_{LESSON}"
STUDENTS = f"lesson_student_{LESSON}"


def script_runs(redis_db) -> int:
    """How many times Redis has run a script (EVALSHA) since it started."""
    return int(redis_db.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.parametrize("seat_count", [0, -1, -(2**31)])
@pytest.mark.gen_test(timeout=30)
async def test_below_one_seat_the_join_goes_on_without_a_seat_map(
    connect, database, redis_db, secret, seat_count
):
    add_lesson(database, LESSON, seat_count)
    client = await connect()

    ack = await client.join(request(access_token=participant_token("c1", secret)))

    assert ack == SUCCESS
    assert not redis_db.exists(SEAT_MAP)
    assert redis_db.hgetall(STUDENTS) == {"c1": client.sid}


@pytest.mark.gen_test(timeout=30)
async def test_the_cap_itself_is_served_whole(connect, database, redis_db, secret):
    add_lesson(database, LESSON, MAX_SEAT_COUNT)
    client = await connect()

    assert await client.join(request(access_token=participant_token("c1", secret))) == SUCCESS

    assert redis_db.hlen(SEAT_MAP) == MAX_SEAT_COUNT
    assert redis_db.hget(SEAT_MAP, str(MAX_SEAT_COUNT)) == ""


@pytest.mark.parametrize("seat_count", [MAX_SEAT_COUNT + 1, 10**9, 2**31 - 1])
@pytest.mark.parametrize("role", ["student", "teacher"])
@pytest.mark.gen_test(timeout=30)
async def test_above_the_cap_the_join_is_refused_before_redis(
    connect, database, redis_db, secret, sio, caplog, seat_count, role
):
    add_lesson(database, LESSON, seat_count)
    client = await connect()
    runs = script_runs(redis_db)
    if role == "teacher":
        args = teacher_request("t1", secret)
    else:
        args = request(user_id="t1", access_token=participant_token("t1", secret))

    with caplog.at_level(logging.INFO, logger=join_lesson.log.name):
        ack = await client.join(args)

    assert ack["status"] == "ERROR" and ack["data"]["code"] == "INTERNAL"
    assert str(seat_count) in ack["data"]["message"]
    assert script_runs(redis_db) == runs  # Redis was not asked to build anything
    assert snapshot(redis_db) == {}
    assert sio.rooms(client.sid) == [client.sid]
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "join"]
    assert line.outcome == "INTERNAL" and str(seat_count) in line.reason
    # the server is none the worse: a lesson with a sane row joins at once
    add_lesson(database, "sane", 3)
    token = participant_token("c2", secret)
    assert await client.join(request(user_id="c2", lesson_id="sane", access_token=token)) == SUCCESS
