"""Every error code of join_lesson, each leaving Redis, the room and the session untouched."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import jwt
import pytest

from config import Config
from handlers import join_lesson
from tests.support import SUCCESS, TEST_TOKEN_SECRET
from tests.support.joins import (
    LESSON,
    assert_refused,
    participant_token,
    request,
    snapshot,
    teacher_request,
    teacher_token,
    token,
)

MiB = 1024 * 1024
# A seat someone else assigned before the failed join: it must be exactly as it was afterwards.
PRIOR_STATE = {f"lesson_seat_{LESSON}": {"1": "someone"}, "unrelated": {"f": "v"}}


@pytest.fixture
def config(config: Config) -> Config:
    """Room for a 1 MiB string inside one packet, so it reaches the handler."""
    return dataclasses.replace(config, max_payload=2 * MiB)


@pytest.fixture
def prior_state(redis_db) -> dict:
    for key, mapping in PRIOR_STATE.items():
        redis_db.hset(key, mapping=mapping)
    return snapshot(redis_db)


INVALID_SHAPES = [
    pytest.param(("not an object",), id="string"),
    pytest.param(([request()],), id="list"),
    pytest.param((42,), id="number"),
    pytest.param((None,), id="null"),
    pytest.param((True,), id="bool"),
    pytest.param((request(), request()), id="two-arguments"),
    pytest.param(({},), id="empty-object"),
    *[
        pytest.param(({k: v for k, v in request().items() if k != field},), id=f"no-{field}")
        for field in ("user_id", "lesson_id", "role")
    ],
    *[
        pytest.param(({**request(), field: value},), id=f"{field}-{label}")
        for field in ("user_id", "lesson_id")
        for label, value in (
            ("int", 1), ("null", None), ("list", ["u1"]), ("object", {"id": "u1"}),
            ("bool", False), ("empty", ""), ("129-chars", "x" * 129), ("1MiB", "x" * MiB),
            ("nul", "u\x001"),
        )
    ],
    pytest.param(({**request(), "access_token": 12},), id="token-int"),
    pytest.param(({**request(), "access_token": ["t"]},), id="token-list"),
    pytest.param(({**request(), "access_token": {"t": 1}},), id="token-object"),
    pytest.param(({**request(), "access_token": "x" * MiB, "role": 5},), id="role-int"),
    pytest.param(({**request(), "role": None},), id="role-null"),
    pytest.param(({**request(), "role": "admin"},), id="role-unknown"),
    pytest.param(({**request(), "role": "Teacher"},), id="role-case"),
    pytest.param(({**request(), "role": ""},), id="role-empty"),
]


@pytest.mark.parametrize("args", INVALID_SHAPES)
@pytest.mark.gen_test(timeout=30)
async def test_invalid_request(connect, lesson, redis_db, prior_state, sio, args):
    client = await connect()

    await assert_refused(client, sio, args, "INVALID_REQUEST")

    assert snapshot(redis_db) == prior_state


@pytest.mark.gen_test(timeout=30)
async def test_event_without_arguments_is_invalid(connect, lesson, redis_db, prior_state, sio):
    client = await connect()

    ack = await client.sio.call("join_lesson", timeout=10)

    assert ack["data"]["code"] == "INVALID_REQUEST"
    assert snapshot(redis_db) == prior_state


@pytest.mark.parametrize("role", ["teacher", "student"])
@pytest.mark.gen_test(timeout=30)
async def test_lesson_not_found(connect, lesson, redis_db, prior_state, sio, secret, role):
    client = await connect()
    token = teacher_token("t1", secret) if role == "teacher" else participant_token("c1", secret)
    args = (request(user_id="t1", lesson_id="no-such-lesson", role=role, access_token=token),)

    await assert_refused(client, sio, args, "LESSON_NOT_FOUND")

    assert snapshot(redis_db) == prior_state


def forged_tokens(secret: str) -> dict[str, str]:
    now = int(time.time())
    return {
        "other-secret": participant_token("c1", "another-secret-of-at-least-32-bytes!!"),
        "expired": token({"client_id": "c1", "exp": now - 10}, secret),
        "no-client-claim": token({"exp": now + 60, "name": "c1"}, secret),
        "empty-client-claims": token({"client_id": "", "sub": ""}, secret),
        "unsigned": jwt.encode({"client_id": "c1"}, None, algorithm="none"),
        "hs512": jwt.encode({"client_id": "c1"}, secret, algorithm="HS512"),
        "tampered": participant_token("c1", secret)[:-2] + "xx",
        "garbage": "not-a-jwt",
        "empty": "",
    }


@pytest.mark.parametrize("kind", list(forged_tokens(TEST_TOKEN_SECRET)))
@pytest.mark.gen_test(timeout=30)
async def test_invalid_token(connect, lesson, redis_db, prior_state, sio, secret, kind):
    client = await connect()
    args = (request(access_token=forged_tokens(secret)[kind]),)

    await assert_refused(client, sio, args, "INVALID_TOKEN")

    assert snapshot(redis_db) == prior_state


@pytest.mark.gen_test(timeout=30)
async def test_token_is_checked_before_the_lesson(connect, redis_db, prior_state, sio):
    client = await connect()
    args = (request(lesson_id="no-such-lesson", access_token="not-a-jwt"),)

    await assert_refused(client, sio, args, "INVALID_TOKEN")


async def assert_nothing_written_since(client, prior_state: dict, redis_db) -> None:
    """Redis holds exactly `prior_state`, once a join that writes nothing (no token, into a
    lesson whose seat map exists) has gone through the server: a write the refused join left
    pending (a retry, a late script) is sent before it, so it would show."""
    assert await client.join(request(user_id="nobody")) == SUCCESS
    assert snapshot(redis_db) == prior_state


@pytest.mark.gen_test(timeout=30)
async def test_unavailable_when_redis_is_down(
    connect, lesson, redis_db, prior_state, redis_outage, sio, secret
):
    client = await connect()
    # Off the loop: blocking it would stall the short test heartbeats and drop the connection.
    # The outage keeps the data, so that what the join might write shows against prior_state.
    await asyncio.to_thread(redis_outage.begin, True)
    started = time.monotonic()

    await assert_refused(client, sio, (request(access_token=participant_token("c1", secret)),),
                         "UNAVAILABLE")

    assert time.monotonic() - started < 1.0
    await asyncio.to_thread(redis_outage.end)
    assert snapshot(redis_db) == prior_state
    await assert_nothing_written_since(client, prior_state, redis_db)


@pytest.mark.gen_test(timeout=30)
async def test_unavailable_when_postgres_does_not_answer_in_time(
    connect, lesson, database, redis_db, prior_state, sio, config, secret
):
    """A participant with a token: a join that went on regardless would write presence keys
    (a join without one writes nothing into a lesson whose seat map exists)."""
    client = await connect()
    database.autocommit = False
    with database.cursor() as cur:
        cur.execute("LOCK TABLE lesson IN ACCESS EXCLUSIVE MODE")
    started = time.monotonic()
    try:
        await assert_refused(
            client, sio, (request(access_token=participant_token("c1", secret)),), "UNAVAILABLE"
        )
    finally:
        database.rollback()
        database.autocommit = True

    elapsed = time.monotonic() - started
    assert config.store_timeout <= elapsed < config.store_timeout + 1.0
    await assert_nothing_written_since(client, prior_state, redis_db)


@pytest.mark.gen_test(timeout=30)
async def test_internal_when_a_key_has_another_type(
    connect, lesson, redis_db, sio, caplog, secret
):
    """Someone else stored the teacher's `{user_id}` key as a string: the script refuses before
    writing anything, and the client only learns that it was internal."""
    redis_db.set("t1", "not a hash")
    before = snapshot(redis_db)
    client = await connect()

    with caplog.at_level(logging.ERROR, logger=join_lesson.log.name):
        await assert_refused(client, sio, (teacher_request("t1", secret),), "INTERNAL")

    ack = await client.join(teacher_request("t1", secret))
    assert ack["data"]["message"] == "internal error"
    assert snapshot(redis_db) == before
    errors = [
        r for r in caplog.records if r.name == join_lesson.log.name and r.levelno == logging.ERROR
    ]
    assert errors and errors[0].exc_info is not None
    assert "WRONGTYPE" in str(errors[0].exc_info[1])


@pytest.mark.gen_test(timeout=30)
async def test_unavailable_when_redis_does_not_answer_in_time(
    connect, lesson, redis_db, prior_state, sio, config, secret
):
    """Redis holds writes (CLIENT PAUSE): the join answers UNAVAILABLE after store_timeout.

    The script was sent and may still run once Redis resumes; that is the ambiguity of any
    timeout, which is why UNAVAILABLE tells the client to retry rather than that nothing happened.
    """
    client = await connect()
    pause_ms = int((config.store_timeout + 2) * 1000)
    redis_db.execute_command("CLIENT", "PAUSE", pause_ms, "WRITE")
    started = time.monotonic()
    try:
        await assert_refused(
            client, sio, (request(access_token=participant_token("c1", secret)),), "UNAVAILABLE"
        )
    finally:
        redis_db.execute_command("CLIENT", "UNPAUSE")

    assert config.store_timeout <= time.monotonic() - started < config.store_timeout + 1.0
