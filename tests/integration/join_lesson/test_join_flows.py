"""join_lesson's two flows end to end: python-socketio clients, the real app, Redis, PostgreSQL,
and Mixpanel posting to a local endpoint."""

from __future__ import annotations

import logging

import pytest

from handlers import join_lesson
from logs import TextFormatter
from store.keys import ROSTER_KEY
from store.presence import PRESENCE_TTL
from store.roster import ROSTER_TTL, parse_record
from tests.integration.join_lesson.conftest import MIXPANEL_TOKEN
from tests.support import SUCCESS
from tests.support.joins import (
    LESSON,
    SEATS,
    keyspace_watch,
    participant_token,
    request,
    snapshot,
    teacher_request,
)

SEAT_KEY = f"lesson_seat_{LESSON}"
TEACHER_KEY = f"lesson_teacher_{LESSON}"
STUDENTS_KEY = f"lesson_student_{LESSON}"
ROSTER = ROSTER_KEY.format(lesson_id=LESSON)
EMPTY_SEAT_MAP = {str(seat): "" for seat in range(1, SEATS + 1)}
# A TTL read back a moment after the write: at most a few seconds below the one set.
TTL_SLACK = 5


def assert_fresh_ttl(ttl: int) -> None:
    assert PRESENCE_TTL - TTL_SLACK <= ttl <= PRESENCE_TTL


@pytest.mark.gen_test(timeout=30)
async def test_teacher_join_writes_exactly_the_teacher_keys(
    connect, lesson, redis_db, sio, secret
):
    client = await connect()

    ack = await client.join(teacher_request("t1", secret))

    assert ack == SUCCESS
    state = snapshot(redis_db)
    assert set(state) == {SEAT_KEY, TEACHER_KEY, "t1"}
    assert state[SEAT_KEY] == ("hash", EMPTY_SEAT_MAP, -1)
    kind, value, ttl = state[TEACHER_KEY]
    assert (kind, value) == ("hash", {"t1": client.sid})
    assert_fresh_ttl(ttl)
    assert state["t1"] == ("hash", {"lesson_id": LESSON}, -1)
    assert LESSON in sio.rooms(client.sid)
    assert await sio.get_session(client.sid) == {}


@pytest.mark.gen_test(timeout=30)
async def test_teacher_with_a_seat_gets_it_in_the_session(connect, lesson, sio, secret):
    client = await connect()

    assert await client.join(teacher_request("u1", secret)) == SUCCESS

    assert await sio.get_session(client.sid) == {"seat": 7}


@pytest.mark.gen_test(timeout=30)
async def test_participant_join_writes_exactly_the_participant_keys(
    connect, lesson, redis_db, sio, services, mixpanel_events, secret
):
    client = await connect()

    ack = await client.join(request(access_token=participant_token("c1", secret, user_id="u1")))

    assert ack == SUCCESS
    state = snapshot(redis_db)
    assert set(state) == {SEAT_KEY, "c1", STUDENTS_KEY, ROSTER}
    assert state[SEAT_KEY] == ("hash", EMPTY_SEAT_MAP, -1)
    kind, value, ttl = state["c1"]
    assert (kind, value) == ("hash", {"sid": client.sid, "client_id": "c1", "role": "student"})
    assert_fresh_ttl(ttl)
    assert state[STUDENTS_KEY] == ("hash", {"c1": client.sid}, -1)
    # rollcall's own roster record of the request's user_id, in the same script run
    kind, value, ttl = state[ROSTER]
    assert (kind, list(value)) == ("hash", ["u1"])
    record = parse_record("u1", value["u1"])
    assert record is not None
    assert (record.sid, record.client_id, record.joins) == (client.sid, "c1", 1)
    assert ROSTER_TTL - TTL_SLACK <= ttl <= ROSTER_TTL
    assert LESSON in sio.rooms(client.sid)
    assert await sio.get_session(client.sid) == {"seat": 7, "client_id": "c1", "role": "student"}
    await services.tracker.drain()
    assert mixpanel_events == []


@pytest.mark.gen_test(timeout=30)
async def test_participant_rejoining_on_a_new_connection_is_one_reconnect(
    connect, lesson, redis_db, services, mixpanel_events, secret
):
    access_token = participant_token("c1", secret)
    first = await connect()
    assert await first.join(request(access_token=access_token)) == SUCCESS
    second = await connect()

    assert await second.join(request(access_token=access_token)) == SUCCESS

    assert second.sid != first.sid
    assert redis_db.hgetall("c1") == {"sid": second.sid, "client_id": "c1", "role": "student"}
    assert_fresh_ttl(redis_db.ttl("c1"))
    assert redis_db.hgetall(STUDENTS_KEY) == {"c1": second.sid}
    await services.tracker.drain()
    assert len(mixpanel_events) == 1
    event = mixpanel_events[0]
    assert event["event"] == "reconnect"
    properties = event["properties"]
    assert properties["distinct_id"] == "c1"
    assert properties["token"] == MIXPANEL_TOKEN
    assert (properties["lesson_id"], properties["role"]) == (LESSON, "student")


@pytest.mark.gen_test(timeout=30)
async def test_participant_without_token_only_gets_the_seat_map(connect, lesson, redis_db, sio):
    seated = await connect()
    unseated = await connect()

    assert await seated.join(request(user_id="u1")) == SUCCESS
    assert await unseated.join(request(user_id="u2", access_token=None)) == SUCCESS

    assert snapshot(redis_db) == {SEAT_KEY: ("hash", EMPTY_SEAT_MAP, -1)}
    assert await sio.get_session(seated.sid) == {"seat": 7}
    assert await sio.get_session(unseated.sid) == {}
    assert LESSON in sio.rooms(seated.sid)
    assert LESSON in sio.rooms(unseated.sid)


@pytest.mark.gen_test(timeout=30)
async def test_absent_access_token_is_the_same_as_null(connect, lesson, redis_db, sio):
    client = await connect()

    ack = await client.join({"user_id": "u1", "lesson_id": LESSON, "role": "student"})

    assert ack == SUCCESS
    assert set(snapshot(redis_db)) == {SEAT_KEY}
    assert await sio.get_session(client.sid) == {"seat": 7}


@pytest.mark.gen_test(timeout=30)
async def test_seats_assigned_by_others_survive_later_joins(connect, lesson, redis_db, secret):
    first = await connect()
    assert await first.join(teacher_request("t1", secret)) == SUCCESS
    redis_db.hset(SEAT_KEY, "3", "someone")
    redis_db.hdel(SEAT_KEY, "30")
    second = await connect()

    assert await second.join(request(access_token=participant_token("c1", secret))) == SUCCESS

    expected = {**EMPTY_SEAT_MAP, "3": "someone"}
    del expected["30"]
    assert redis_db.hgetall(SEAT_KEY) == expected


@pytest.mark.gen_test(timeout=30)
async def test_event_without_ack_id_still_runs(
    connect, lesson, redis_db, redis_url, secret, keyspace_events
):
    client = await connect()
    async with keyspace_watch(redis_url) as watch:
        await client.sio.emit("join_lesson", request(access_token=participant_token("c1", secret)))
        await watch.wait_for(STUDENTS_KEY, "hset")

    assert redis_db.hgetall(STUDENTS_KEY) == {"c1": client.sid}


@pytest.mark.gen_test(timeout=30)
async def test_each_join_is_logged_in_one_line_without_the_token(connect, lesson, caplog, secret):
    caplog.set_level(logging.INFO, logger=join_lesson.log.name)
    access_token = participant_token("c1", secret)
    client = await connect()

    assert await client.join(request(access_token=access_token)) == SUCCESS
    assert (await client.join(request(lesson_id="nope")))["status"] == "ERROR"

    records = [r for r in caplog.records if r.name == join_lesson.log.name]
    assert len(records) == 2
    formatter = TextFormatter()
    for record, outcome, lesson_id in zip(
        records, ("SUCCESS", "LESSON_NOT_FOUND"), (LESSON, "nope"), strict=True
    ):
        assert (record.sid, record.role, record.lesson_id, record.outcome) == (
            client.sid,
            "student",
            lesson_id,
            outcome,
        )
        assert record.duration_ms >= 0
        line = formatter.format(record)
        assert "\n" not in line
        assert f"sid={client.sid} role=student lesson_id={lesson_id} outcome={outcome} " in line
        assert access_token not in line


@pytest.mark.gen_test(timeout=30)
async def test_ids_with_line_breaks_and_escapes_are_logged_on_one_line(connect, lesson, caplog):
    caplog.set_level(logging.INFO, logger=join_lesson.log.name)
    forged = "2026-11-27 10:00:00,000 INFO handlers.join_lesson: join_lesson outcome=SUCCESS"
    client = await connect()

    ack = await client.join(
        request(user_id=f"u\n{forged}\x1b[2J", lesson_id=f"l\n{forged}\x1b[31m")
    )

    assert ack["data"]["code"] == "LESSON_NOT_FOUND"
    [record] = [r for r in caplog.records if r.name == join_lesson.log.name]
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert f'lesson_id="l\\n{forged}\\x1b[31m" outcome=LESSON_NOT_FOUND ' in line
