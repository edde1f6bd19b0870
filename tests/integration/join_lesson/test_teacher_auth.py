"""Who may join as the teacher (join_lesson.md, revision 2): only the holder of the teacher's own
token, unless --teacher-auth none; every other teacher join is INVALID_TOKEN and changes no key."""

from __future__ import annotations

import dataclasses
import time

import pytest

from config import TEACHER_AUTH_NONE, Config
from tests.support import SUCCESS, TEST_TOKEN_SECRET, ServerProcess, free_port
from tests.support.joins import (
    LESSON,
    SEATS,
    assert_refused,
    participant_token,
    request,
    snapshot,
    teacher_request,
    teacher_token,
    token,
)

TEACHER_KEY = f"lesson_teacher_{LESSON}"
OTHER_SECRET = "another-secret-of-at-least-32-bytes!!"
# The lesson's real teacher is in: an impostor must not replace or join them.
PRIOR_STATE = {
    f"lesson_seat_{LESSON}": {"1": "someone"},
    TEACHER_KEY: {"real-teacher": "sid-of-the-real-teacher"},
    "real-teacher": {"lesson_id": LESSON},
    "t1": {"lesson_id": "an-earlier-lesson"},
}


@pytest.fixture
def prior_state(redis_db) -> dict:
    for key, mapping in PRIOR_STATE.items():
        redis_db.hset(key, mapping=mapping)
    redis_db.expire(TEACHER_KEY, 3600)
    return snapshot(redis_db)


def impostor_tokens(secret: str) -> dict[str, str | None]:
    """Every access_token a join as teacher t1 may carry that is not t1's own teacher token."""
    now = int(time.time())
    return {
        "none": None,
        "participant-token-of-t1": participant_token("t1", secret),
        "student-role": token({"client_id": "t1", "role": "student", "exp": now + 60}, secret),
        "another-teachers-token": teacher_token("real-teacher", secret),
        "expired": token({"client_id": "t1", "role": "teacher", "exp": now - 10}, secret),
        "forged": teacher_token("t1", OTHER_SECRET),
        "tampered": teacher_token("t1", secret)[:-2] + "xx",
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize("kind", list(impostor_tokens(TEST_TOKEN_SECRET)))
@pytest.mark.gen_test(timeout=30)
async def test_a_teacher_join_without_its_own_teacher_token_is_invalid_token(
    connect, lesson, redis_db, prior_state, sio, secret, kind
):
    client = await connect()
    args = (request(user_id="t1", role="teacher", access_token=impostor_tokens(secret)[kind]),)

    await assert_refused(client, sio, args, "INVALID_TOKEN")

    assert snapshot(redis_db) == prior_state


@pytest.mark.gen_test(timeout=30)
async def test_a_teacher_with_its_own_token_joins_beside_the_others(
    connect, lesson, redis_db, prior_state, sio, secret
):
    client = await connect()

    assert await client.join(teacher_request("t1", secret)) == SUCCESS

    assert redis_db.hgetall(TEACHER_KEY) == {
        "real-teacher": "sid-of-the-real-teacher", "t1": client.sid
    }
    assert redis_db.hgetall("t1") == {"lesson_id": LESSON}
    assert LESSON in sio.rooms(client.sid)


@pytest.mark.gen_test(timeout=30)
async def test_the_client_id_may_come_from_sub(connect, lesson, redis_db, sio, secret):
    client = await connect()
    access_token = token({"sub": "t1", "role": "teacher"}, secret)

    assert await client.join(request(user_id="t1", role="teacher", access_token=access_token)) \
        == SUCCESS
    assert redis_db.hgetall(TEACHER_KEY) == {"t1": client.sid}


@pytest.mark.gen_test(timeout=30)
async def test_a_teacher_token_does_not_make_a_participant_a_teacher(
    connect, lesson, redis_db, secret
):
    """A teacher's token on a participant's join is a participant token like any other."""
    client = await connect()

    ack = await client.join(request(access_token=teacher_token("t1", secret)))

    assert ack == SUCCESS
    assert not redis_db.exists(TEACHER_KEY)
    assert redis_db.hgetall(f"lesson_student_{LESSON}") == {"t1": client.sid}


class TestTokenlessTeachers:
    """--teacher-auth none: the design document's flow, for teacher apps without tokens yet."""

    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, teacher_auth=TEACHER_AUTH_NONE)

    @pytest.mark.parametrize("access_token", [None, "not-a-token"])
    @pytest.mark.gen_test(timeout=30)
    async def test_any_teacher_joins(self, connect, lesson, redis_db, sio, access_token):
        client = await connect()

        ack = await client.join(request(user_id="t1", role="teacher", access_token=access_token))

        assert ack == SUCCESS
        assert snapshot(redis_db) == {
            f"lesson_seat_{LESSON}": ("hash", {str(n): "" for n in range(1, SEATS + 1)}, -1),
            TEACHER_KEY: ("hash", {"t1": client.sid}, redis_db.ttl(TEACHER_KEY)),
            "t1": ("hash", {"lesson_id": LESSON}, -1),
        }

    @pytest.mark.gen_test(timeout=30)
    async def test_participant_tokens_are_still_verified(self, connect, lesson, redis_db, sio):
        client = await connect()

        await assert_refused(client, sio, (request(access_token="not-a-token"),), "INVALID_TOKEN")

        assert snapshot(redis_db) == {}


TEACHER_AUTH_WARNING = b"--teacher-auth none"
NO_SECRET_WARNING = b"without --access-token-secret"


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        (("--teacher-auth", "none"), TEACHER_AUTH_WARNING),
        (("--access-token-secret", ""), NO_SECRET_WARNING),
        (("--access-token-secret", "x" * 32), None),
    ],
    ids=["tokenless-teachers", "no-secret", "default"],
)
@pytest.mark.gen_test(timeout=30)
async def test_start_up_warns_when_teachers_are_not_authenticated(
    redis_url, database_url, args, warning
):
    server = await ServerProcess.start(
        "--port", str(free_port()), "--redis-url", redis_url, "--database-url", database_url,
        *args,
    )
    await server.stop()

    warnings = b"".join(line for line in server.lines if b" WARNING " in line)
    for each in (TEACHER_AUTH_WARNING, NO_SECRET_WARNING):
        assert (each in warnings) == (each == warning), warnings
