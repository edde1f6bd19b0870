"""The stores against the real PostgreSQL and Redis: batched lookups and batched join scripts."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from store.coalesce import DEFAULT_MAX_SIZE
from store.errors import StoreUnavailable
from store.lessons import Enrolment, LessonSeat, LessonStore
from store.presence import (
    MAX_CONNECTIONS,
    JoinOutcome,
    ParticipantJoin,
    PresenceStore,
    SeatsOnly,
    TeacherJoin,
)

TIMEOUT = 1.0
#: the burst test's store timeout: its 6 464 joins wait for connections within it
BURST_TIMEOUT = 60.0


@pytest.fixture
def lessons(io_loop, database, database_url):
    with database.cursor() as cur:
        cur.execute("INSERT INTO lesson VALUES ('a', 3), ('b', 2)")
        cur.execute("INSERT INTO student_attend VALUES ('a', 'u1', 1), ('a', 'u2', NULL), "
                    "('b', 'u1', 2)")
    store = io_loop.run_sync(lambda: LessonStore.open(database_url, TIMEOUT))
    yield store
    io_loop.run_sync(store.close)


@pytest.fixture
def presence(io_loop, redis_db, redis_url):
    store = PresenceStore.open(redis_url, TIMEOUT)
    yield store
    io_loop.run_sync(store.close)


@pytest.mark.gen_test
async def test_lookup_many_answers_each_pair_in_order(lessons):
    pairs = [("a", "u1"), ("a", "u2"), ("a", "u3"), ("missing", "u1"), ("b", "u1"), ("a", "u1")]

    assert await lessons.lookup_many(pairs) == [
        LessonSeat(3, 1), LessonSeat(3, None), LessonSeat(3, None), None, LessonSeat(2, 2),
        LessonSeat(3, 1),
    ]


@pytest.mark.gen_test
async def test_concurrent_lookups_each_get_their_own_answer(lessons):
    results = await asyncio.gather(
        lessons.lookup("a", "u1"), lessons.lookup("b", "u1"), lessons.lookup("x", "u1")
    )

    assert results == [LessonSeat(3, 1), LessonSeat(2, 2), None]


@pytest.mark.gen_test
async def test_enrolment_is_every_student_attend_row_of_the_lesson(lessons, database):
    with database.cursor() as cur:
        cur.execute("INSERT INTO lesson VALUES ('empty', 5)")

    assert await lessons.enrolment("a") == Enrolment(3, {"u1": 1, "u2": None})
    assert await lessons.enrolment("empty") == Enrolment(5, {})
    assert await lessons.enrolment("missing") is None


@pytest.mark.gen_test
async def test_one_bad_join_in_a_pipeline_does_not_fail_the_others(presence, redis_db):
    redis_db.set("t-bad", "a string")

    results = await presence.join_many([
        TeacherJoin("l", 2, "sid-1", "t-good"),
        TeacherJoin("l2", 2, "sid-2", "t-bad"),
        ParticipantJoin("l", 2, "sid-3", "c1", "student", "u1"),
    ])

    assert results[0] == JoinOutcome(seat_map_created=True, reconnect=False)
    assert isinstance(results[1], ResponseError) and "WRONGTYPE" in str(results[1])
    assert results[2] == JoinOutcome(seat_map_created=False, reconnect=False)
    assert not redis_db.exists("lesson_seat_l2", "lesson_teacher_l2")
    assert redis_db.get("t-bad") == "a string"
    assert redis_db.hgetall("c1") == {"sid": "sid-3", "client_id": "c1", "role": "student"}


@pytest.mark.gen_test
async def test_the_script_is_reloaded_after_a_script_flush(presence, redis_db):
    assert await presence.join(SeatsOnly("l", 1)) == JoinOutcome(True, False)
    redis_db.script_flush()

    outcome = await presence.join(ParticipantJoin("l", 1, "sid", "c1", "student", "u1"))

    assert outcome == JoinOutcome(seat_map_created=False, reconnect=False)
    assert redis_db.hget("c1", "sid") == "sid"


@pytest.mark.gen_test
async def test_a_large_seat_map_is_created_whole(presence, redis_db):
    seats = 2500  # more than one HSET chunk

    await presence.join(SeatsOnly("big", seats))

    assert redis_db.hlen("lesson_seat_big") == seats
    assert redis_db.hget("lesson_seat_big", str(seats)) == ""


@pytest.mark.gen_test
async def test_a_lesson_without_seats_gets_no_seat_map(presence, redis_db):
    assert await presence.join(SeatsOnly("none", 0)) == JoinOutcome(False, False)

    assert not redis_db.exists("lesson_seat_none")


@pytest.mark.gen_test(timeout=20)
async def test_an_outage_fails_every_join_of_the_batch_quickly(presence, redis_outage):
    await asyncio.to_thread(redis_outage.begin)
    started = asyncio.get_running_loop().time()

    results = await asyncio.gather(
        presence.join(SeatsOnly("l", 1)),
        presence.join(TeacherJoin("l", 1, "sid", "t1")),
        return_exceptions=True,
    )

    assert all(isinstance(result, StoreUnavailable) for result in results)
    assert asyncio.get_running_loop().time() - started < TIMEOUT


@pytest.mark.gen_test(timeout=90)
async def test_a_burst_past_the_pool_waits_for_connections_instead_of_failing(
    redis_db, redis_url
):
    """A whole school joining (or closing) at once puts more batches in flight than the client
    may hold connections; redis-py refuses a call past its pool's limit at once ("Too many
    connections"), so without a wait every batch past it failed. The store's timeout is
    generous here: the waits count in it, and this test is about the refusal, not the speed."""
    presence = PresenceStore.open(redis_url, BURST_TIMEOUT)
    burst = (MAX_CONNECTIONS + 1) * DEFAULT_MAX_SIZE
    joins = [
        ParticipantJoin("burst", 0, f"sid-{i}", f"c{i}", "student", f"u{i}") for i in range(burst)
    ]

    try:
        outcomes = await asyncio.gather(*(presence.join(join) for join in joins))
    finally:
        await presence.close()

    assert outcomes == [JoinOutcome(seat_map_created=False, reconnect=False)] * burst
    assert redis_db.hlen("lesson_student_burst") == burst


@pytest.mark.gen_test(timeout=20)
async def test_the_health_ping_does_not_wait_behind_calls_holding_every_connection(presence):
    """/healthz pings Redis: it must say whether Redis answers, not how long the queue of calls
    is (a whole school leaving at once queued thousands of leaves in front of it). The calls
    in flight are counted, which heap.Collector waits for."""
    release = asyncio.Event()
    all_held = asyncio.Event()
    held = 0

    async def hold() -> None:
        nonlocal held
        async with presence.available():
            held += 1
            if held == MAX_CONNECTIONS:
                all_held.set()
            await release.wait()

    calls = [asyncio.create_task(hold()) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        await all_held.wait()
        assert presence.in_flight == MAX_CONNECTIONS + 5  # 5 of them waiting for a connection
        await presence.ping()  # would time out in available() behind them
    finally:
        release.set()
        await asyncio.gather(*calls)
    assert presence.in_flight == 0


@pytest.mark.gen_test(timeout=20)
async def test_queries_in_flight_are_counted(lessons):
    """What heap.Collector waits for before a full collection."""
    query = asyncio.ensure_future(lessons.ping())
    await asyncio.sleep(0)  # its first step: it waits for a connection, then for the answer
    assert lessons.in_flight == 1
    await query
    assert lessons.in_flight == 0
