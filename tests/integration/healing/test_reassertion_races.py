"""A re-assertion of presence (handlers/reassertion.py) racing the joins, lesson switches and
disconnects of the same process: the app served in-process, real python-socketio clients, the
real Redis emptied under them. Whatever the order Redis runs them in, it ends holding exactly the
live connections' last joins: nothing a disconnect cleared or a switch left comes back."""

from __future__ import annotations

import asyncio
import json

import psycopg2
import pytest
import redis

from handlers.connections import Connections
from handlers.reassertion import Reasserter
from store.keys import HELD_KEY
from store.presence import ParticipantJoin
from store.reassertion import REASSERT_BATCH, Reassertion, reassert
from tests.support import SUCCESS
from tests.support.healing import wait_for
from tests.support.joins import LESSON, participant_token, request, teacher_request
from tests.support.lessons import add_lesson

OTHER = "lesson-2"
COUNT = 30
NEWCOMERS = 5


@pytest.fixture
def other_lesson(lesson: str, database: psycopg2.extensions.connection) -> str:
    return add_lesson(database, OTHER, 4)


def join_args(client_id: str, secret: str, lesson_id: str = LESSON) -> dict:
    return request(client_id, lesson_id, participant_token(client_id, secret))


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("batch", [3, REASSERT_BATCH])
async def test_joins_switches_and_disconnects_racing_a_reassertion(
    batch, connect, other_lesson, redis_db: redis.Redis, secret, rollcall, services
):
    clients = [await connect() for _ in range(COUNT)]
    for n, client in enumerate(clients):
        assert await client.join(join_args(f"c{n}", secret)) == SUCCESS
    stay, switch, leave = clients[0::3], clients[1::3], clients[2::3]
    ids = {client.sid: f"c{n}" for n, client in enumerate(clients)}
    stayed = {ids[client.sid]: client.sid for client in stay}
    switched = {ids[client.sid]: client.sid for client in switch}
    left = [ids[client.sid] for client in leave]
    redis_db.flushdb()

    async def newcomer(n: int) -> str:
        client = await connect()
        assert await client.join(join_args(f"new{n}", secret)) == SUCCESS
        return client.sid

    # batch 3: one connection per script run, so that the run spans the others' round trips
    reasserter = Reasserter(services.presence, rollcall.connections, batch)
    result, *rest = await asyncio.gather(
        reasserter.run(),
        *(client.join(join_args(ids[client.sid], secret, OTHER)) for client in switch),
        *(client.close() for client in leave),
        *(newcomer(n) for n in range(NEWCOMERS)),
    )
    assert rest[: len(switch)] == [SUCCESS] * len(switch)
    newcomers = {f"new{n}": sid for n, sid in enumerate(rest[-NEWCOMERS:])}
    connections = rollcall.connections
    await wait_for(
        lambda: len(connections.records()) == COUNT - len(leave) + NEWCOMERS, "the disconnects"
    )
    await connections.wait_idle()

    assert redis_db.hgetall(f"lesson_student_{LESSON}") == {**stayed, **newcomers}
    assert redis_db.hgetall(f"lesson_student_{OTHER}") == switched
    for client_id, sid in {**stayed, **switched, **newcomers}.items():
        assert redis_db.hget(client_id, "sid") == sid
        assert redis_db.ttl(client_id) > 0
    for client_id in left:
        assert redis_db.hget(client_id, "sid") in (None, "")
    roster = redis_db.hgetall(f"rollcall:roster:{LESSON}")
    for client_id, sid in {**stayed, **newcomers}.items():
        assert json.loads(roster[client_id])["sid"] == sid
    for client_id in [*switched, *left]:
        assert client_id not in roster or json.loads(roster[client_id])["sid"] == ""
    assert redis_db.exists(f"lesson_seat_{LESSON}", f"lesson_seat_{OTHER}") == 2
    # the held record names exactly what the live connections hold: each entry and roster record
    held = redis_db.hgetall(HELD_KEY.format(process_id=services.presence.process_id))
    assert sorted(held.values()) == sorted(
        [*stayed.values(), *newcomers.values()] * 2 + [*switched.values()] * 2
    )
    # the stayers were written again, by the re-assertion: their keys were gone
    assert result[0].fields >= 2 * len(stay)
    assert result[1] >= len(stay)


@pytest.mark.gen_test(timeout=30)
async def test_a_reassertion_writes_nothing_over_a_newer_join_elsewhere(
    connect, lesson, redis_db: redis.Redis, secret, rollcall, services
):
    teacher = await connect()
    assert await teacher.join(teacher_request("t1", secret)) == SUCCESS
    client = await connect()
    assert await client.join(join_args("c1", secret)) == SUCCESS
    redis_db.flushdb()
    # meanwhile, both joined again on another process: newer joins, other sids
    redis_db.hset(f"lesson_teacher_{LESSON}", "t1", "elsewhere-t")
    redis_db.hset(f"lesson_student_{LESSON}", "c1", "elsewhere-c")
    redis_db.hset("c1", mapping={"sid": "elsewhere-c", "client_id": "c1", "role": "student"})

    result, connections, runs = await Reasserter(services.presence, rollcall.connections).run()

    assert redis_db.hgetall(f"lesson_teacher_{LESSON}") == {"t1": "elsewhere-t"}
    assert redis_db.hgetall(f"lesson_student_{LESSON}") == {"c1": "elsewhere-c"}
    assert redis_db.hget("c1", "sid") == "elsewhere-c"
    assert not redis_db.exists("t1")  # the teacher's {user_id} key goes with its field
    # the roster record was missing: present again, held by this process's sid
    roster = json.loads(redis_db.hget(f"rollcall:roster:{LESSON}", "c1"))
    assert roster["sid"] == client.sid and roster["joins"] == 1
    assert (connections, runs) == (2, 1)
    assert (result.fields, result.rosters, result.seat_maps, result.held) == (0, 1, 1, 1)


@pytest.mark.gen_test(timeout=30)
async def test_a_reassertion_sends_no_mixpanel_event(
    connect, lesson, redis_db: redis.Redis, secret, rollcall, services, mixpanel_events
):
    client = await connect()
    assert await client.join(join_args("c1", secret)) == SUCCESS  # a first join: no event
    redis_db.flushdb()
    result, connections, _ = await Reasserter(services.presence, rollcall.connections).run()
    assert (connections, result.fields) == (1, 2)

    # c1 joins again: its {client_id} key exists (re-asserted), so this one is a reconnect; the
    # queue is sent in order, so once it arrived, any event of the re-assertion would have too
    assert await client.join(join_args("c1", secret)) == SUCCESS
    await services.tracker.drain()
    assert [event["event"] for event in mixpanel_events] == ["reconnect"]


@pytest.mark.gen_test(timeout=30)
async def test_a_reassertion_writes_at_most_500_items_per_script_run(
    redis_db: redis.Redis, services
):
    """400 participants (no sockets: records as the join handler leaves them) in three runs of
    at most REASSERT_BATCH items, each connection's two entries and its lesson's seat map."""
    connections = Connections(services.presence)
    for n in range(400):
        sid = f"sid{n}"
        await connections.connect(sid, {}, None)
        record = connections.get(sid)
        join = ParticipantJoin(f"lesson{n % 7}", 3, sid, f"client{n}", "student", f"user{n}")
        record.held = frozenset(join.entries)
        connections.joined(record, join, ())

    result, count, runs = await Reasserter(services.presence, connections).run()

    assert (count, runs) == (400, 3)  # 166 + 166 + 68 connections, 3 items each at most
    assert (result.fields, result.rosters, result.seat_maps) == (800, 400, 7)
    assert sum(redis_db.hlen(f"lesson_student_lesson{n}") for n in range(7)) == 400
    too_many = [Reassertion(join, join.entries)] * (REASSERT_BATCH // 3 + 1)
    with pytest.raises(ValueError, match="at most 500"):
        await reassert(services.presence, too_many)


@pytest.mark.gen_test(timeout=30)
async def test_an_unverified_claim_is_reasserted_like_a_roster_record(
    connect, lesson, redis_db: redis.Redis, secret, rollcall, services
):
    client = await connect()
    token = participant_token("c9", secret)  # vouches for c9, not for the user it joins as
    assert await client.join(request("someone-else", LESSON, token)) == SUCCESS
    claims = f"rollcall:unverified:{LESSON}"
    [field] = redis_db.hkeys(claims)
    redis_db.flushdb()

    result, connections, _ = await Reasserter(services.presence, rollcall.connections).run()

    assert json.loads(redis_db.hget(claims, field))["sid"] == client.sid
    assert redis_db.hget(f"lesson_student_{LESSON}", "c9") == client.sid
    assert not redis_db.exists(f"rollcall:roster:{LESSON}")
    assert (connections, result.rosters, result.held) == (1, 1, 2)
