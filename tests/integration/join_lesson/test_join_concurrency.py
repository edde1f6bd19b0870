"""Many joins at once: every one lands, and the seat map is created exactly once."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.joins import (
    LESSON,
    SEATS,
    Client,
    keyspace_watch,
    participant_token,
    request,
    teacher_request,
)

CLIENTS = 100
TEACHERS = 2
SEAT_KEY = f"lesson_seat_{LESSON}"
STUDENTS_KEY = f"lesson_student_{LESSON}"
TEACHER_KEY = f"lesson_teacher_{LESSON}"


async def connect_all(url: str, count: int) -> list[Client]:
    return await asyncio.gather(*(Client(url, "websocket").connect() for _ in range(count)))


@pytest.mark.gen_test(timeout=120)
async def test_hundred_clients_join_one_lesson_at_once(
    url, lesson, redis_db, redis_url, secret, keyspace_events, sio, services, mixpanel_events
):
    clients = await connect_all(url, CLIENTS)
    try:
        requests = [
            teacher_request(f"t{i}", secret) if i < TEACHERS
            else request(user_id=f"u{i}", access_token=participant_token(f"c{i}", secret))
            for i in range(CLIENTS)
        ]
        async with keyspace_watch(redis_url) as watch:
            acks = await asyncio.gather(
                *(client.join(req) for client, req in zip(clients, requests, strict=True))
            )
            writes = await watch.settle()

        assert all(ack == {"status": "SUCCESS", "data": {}} for ack in acks)
        # Created once: every HSET on the seat map is one notification, and a map of SEATS
        # fields is written by a single HSET.
        assert writes.count((SEAT_KEY, "hset")) == 1
        assert redis_db.hgetall(SEAT_KEY) == {str(s): "" for s in range(1, SEATS + 1)}
        assert redis_db.hgetall(STUDENTS_KEY) == {
            f"c{i}": clients[i].sid for i in range(TEACHERS, CLIENTS)
        }
        assert redis_db.hgetall(TEACHER_KEY) == {f"t{i}": clients[i].sid for i in range(TEACHERS)}
        for i in range(TEACHERS, CLIENTS):
            assert redis_db.hget(f"c{i}", "sid") == clients[i].sid
        for client in clients:
            assert LESSON in sio.rooms(client.sid)

        # Someone assigns a seat; everyone joins again at once: the seat survives, and the
        # rejoins are one reconnect each.
        redis_db.hset(SEAT_KEY, "5", "u7")
        acks = await asyncio.gather(
            *(client.join(req) for client, req in zip(clients, requests, strict=True))
        )
        assert all(ack["status"] == "SUCCESS" for ack in acks)
        assert redis_db.hget(SEAT_KEY, "5") == "u7"
        await services.tracker.drain()
        reconnects = sorted(event["properties"]["distinct_id"] for event in mixpanel_events)
        assert reconnects == sorted(f"c{i}" for i in range(TEACHERS, CLIENTS))
    finally:
        await asyncio.gather(*(client.close() for client in clients))
