"""join_lesson under other configurations: no token secret, tokenless teachers, PostgreSQL
unreachable, a key prefix."""

from __future__ import annotations

import dataclasses

import pytest

from config import TEACHER_AUTH_NONE, Config
from tests.support import SUCCESS
from tests.support.joins import (
    LESSON,
    free_port,
    participant_token,
    request,
    snapshot,
    teacher_request,
)

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
        "no-secret-tokenless-teachers": {
            "access_token_secret": None, "teacher_auth": TEACHER_AUTH_NONE
        },
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
    # A teacher's token cannot be verified either.
    ack = await client.join(teacher_request("t1", PLATFORM_SECRET))
    assert ack["data"]["code"] == "INVALID_TOKEN"
    assert snapshot(redis_db) == {}
    assert LESSON not in sio.rooms(client.sid)


@pytest.mark.parametrize("variant", ["no-secret-tokenless-teachers"], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_tokenless_teachers_join_without_a_secret(connect, lesson, redis_db, variant):
    """--teacher-auth none: the design document's flow, a teacher's join carries no token."""
    client = await connect()

    assert await client.join(request(user_id="t1", role="teacher")) == SUCCESS

    assert redis_db.hgetall(f"lesson_teacher_{LESSON}") == {"t1": client.sid}
    assert redis_db.hgetall("t1") == {"lesson_id": LESSON}


@pytest.mark.parametrize("variant", ["postgres-unreachable"], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_unreachable_postgres_is_unavailable(
    connect, lesson, redis_db, sio, variant, secret
):
    client = await connect()

    for join in (teacher_request("t1", secret), request()):
        ack = await client.join(join)
        assert ack["data"]["code"] == "UNAVAILABLE"

    assert snapshot(redis_db) == {}
    assert LESSON not in sio.rooms(client.sid)
    assert await sio.get_session(client.sid) == {}


@pytest.mark.parametrize("variant", ["key-prefix"], indirect=True)
@pytest.mark.gen_test(timeout=30)
async def test_key_prefix_applies_to_every_key(connect, lesson, redis_db, variant):
    client = await connect()

    token = participant_token("c1", PLATFORM_SECRET, user_id="u1")
    assert await client.join(request(access_token=token)) == SUCCESS
    assert await client.join(teacher_request("t1", PLATFORM_SECRET)) == SUCCESS

    assert set(snapshot(redis_db)) == {
        PREFIX + key
        for key in (f"lesson_seat_{LESSON}", f"lesson_teacher_{LESSON}",
                    f"lesson_student_{LESSON}", "t1", "c1", f"rollcall:roster:{LESSON}")
    }
    assert redis_db.hgetall(PREFIX + "c1")["sid"] == client.sid
    assert redis_db.hgetall(f"{PREFIX}lesson_student_{LESSON}") == {"c1": client.sid}
    # the bookkeeping keys too: this process's held record, the registry of processes, and the
    # lesson's roster
    assert sorted(key.rpartition(":")[0] for key in redis_db.keys("*rollcall:*")) == [
        PREFIX + "rollcall", PREFIX + "rollcall:held", PREFIX + "rollcall:roster"
    ]
