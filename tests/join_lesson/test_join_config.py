"""join_lesson under other configurations: no token secret, PostgreSQL unreachable, a key prefix."""

from __future__ import annotations

import dataclasses

import pytest

from config import Config

from .helpers import LESSON, free_port, participant_token, request, snapshot

SUCCESS = {"status": "SUCCESS", "data": {}}
PREFIX = "rc:"
# Tokens signed as the platform would, whatever secret (if any) the server under test holds.
PLATFORM_SECRET = "platform-secret-at-least-32-bytes-long"


@pytest.fixture
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def config(config: Config, variant: str) -> Config:
    changes = {
        "no-secret": {"access_token_secret": None},
        "postgres-unreachable": {
            "database_url": f"postgresql://rollcall@127.0.0.1:{free_port()}/rollcall"
        },
        "key-prefix": {"access_token_secret": PLATFORM_SECRET, "key_prefix": PREFIX},
    }
    return dataclasses.replace(config, **changes[variant])


@pytest.mark.parametrize("variant", ["no-secret"], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_no_secret_refuses_every_token(connect, lesson, redis_db, sio, variant):
    client = await connect()

    ack = await client.join(request(access_token=participant_token("c1", PLATFORM_SECRET)))

    assert ack["data"]["code"] == "INVALID_TOKEN"
    assert snapshot(redis_db) == {}
    assert LESSON not in sio.rooms(client.sid)
    # Teachers carry no token: they still join.
    assert await client.join(request(user_id="t1", role="teacher")) == SUCCESS


@pytest.mark.parametrize("variant", ["postgres-unreachable"], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_unreachable_postgres_is_unavailable(connect, lesson, redis_db, sio, variant):
    client = await connect()

    for role in ("teacher", "student"):
        ack = await client.join(request(role=role))
        assert ack["data"]["code"] == "UNAVAILABLE"

    assert snapshot(redis_db) == {}
    assert LESSON not in sio.rooms(client.sid)
    assert await sio.get_session(client.sid) == {}


@pytest.mark.parametrize("variant", ["key-prefix"], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_key_prefix_applies_to_every_key(connect, lesson, redis_db, variant):
    client = await connect()

    assert await client.join(request(access_token=participant_token("c1", PLATFORM_SECRET))) \
        == SUCCESS
    assert await client.join(request(user_id="t1", role="teacher")) == SUCCESS

    assert set(snapshot(redis_db)) == {
        PREFIX + key
        for key in (f"lesson_seat_{LESSON}", f"lesson_teacher_{LESSON}",
                    f"lesson_student_{LESSON}", "t1", "c1")
    }
    assert redis_db.hgetall(PREFIX + "c1")["sid"] == client.sid
    assert redis_db.hgetall(f"{PREFIX}lesson_student_{LESSON}") == {"c1": client.sid}
    # the bookkeeping keys too: this process's held record, and the registry of processes
    assert sorted(key.rpartition(":")[0] for key in redis_db.keys("*rollcall:*")) == [
        PREFIX + "rollcall", PREFIX + "rollcall:held"
    ]
