"""Ids never name another key (join_lesson.md): a teacher's user_id or a token's client id that
starts with a prefix of a key family rollcall writes is refused before any I/O, and no key changes.

The four cases are the ones that wrote into other keys before: a teacher `lesson_seat_X` (a field
in lesson X's seat map, which then never got its seats), a teacher `lesson_teacher_X` (a fake
teacher in lesson X), a token for `lesson_student_L1` (fields in lesson L1's participant map), and
an id in rollcall's own bookkeeping (`rollcall:`).
"""

from __future__ import annotations

import dataclasses

import pytest

from config import TEACHER_AUTH_NONE, TEACHER_AUTH_TOKEN, Config
from tests.support import SUCCESS
from tests.support.joins import (
    LESSON,
    assert_refused,
    participant_token,
    request,
    snapshot,
    teacher_request,
    teacher_token,
)

PREFIX = "rc:"
# What other lessons and rollcall itself already hold under the names the ids aim at.
VICTIMS = {
    "lesson_seat_X": {"1": "c9"},
    "lesson_teacher_X": {"real-teacher": "sid-of-the-real-teacher"},
    "lesson_student_L1": {"c1": "sid-of-c1"},
    "rollcall:procs": {"p1": "alive"},
}
TEACHER_IDS = ["lesson_seat_X", "lesson_teacher_X", "lesson_student_L1", "rollcall:procs"]
CLIENT_IDS = ["lesson_student_L1", "lesson_seat_X", "lesson_teacher_X", "rollcall:procs"]


@pytest.fixture(params=[TEACHER_AUTH_TOKEN, TEACHER_AUTH_NONE])
def config(config: Config, request: pytest.FixtureRequest) -> Config:
    return dataclasses.replace(config, teacher_auth=request.param)


@pytest.fixture
def victims(redis_db, config: Config) -> dict:
    for key, mapping in VICTIMS.items():
        redis_db.hset(config.key_prefix + key, mapping=mapping)
    return snapshot(redis_db)


@pytest.mark.parametrize("user_id", TEACHER_IDS)
@pytest.mark.gen_test(timeout=30)
async def test_a_teacher_whose_user_id_names_another_key_is_invalid_request(
    connect, lesson, redis_db, victims, sio, secret, user_id
):
    """Even with its own valid teacher token, and with --teacher-auth none."""
    client = await connect()

    await assert_refused(client, sio, (teacher_request(user_id, secret),), "INVALID_REQUEST")

    assert snapshot(redis_db) == victims


@pytest.mark.parametrize("client_id", CLIENT_IDS)
@pytest.mark.gen_test(timeout=30)
async def test_a_token_whose_client_id_names_another_key_is_invalid_token(
    connect, lesson, redis_db, victims, sio, secret, client_id
):
    client = await connect()
    args = (request(access_token=participant_token(client_id, secret)),)

    await assert_refused(client, sio, args, "INVALID_TOKEN")

    assert snapshot(redis_db) == victims


@pytest.mark.gen_test(timeout=30)
async def test_ids_that_only_contain_a_reserved_prefix_join(
    connect, lesson, redis_db, victims, secret
):
    teacher, participant = await connect(), await connect()

    assert await teacher.join(teacher_request("my_lesson_seat_X", secret)) == SUCCESS
    ack = await participant.join(request(access_token=participant_token("c-rollcall:", secret)))
    assert ack == SUCCESS

    assert redis_db.hgetall("my_lesson_seat_X") == {"lesson_id": LESSON}
    assert redis_db.hgetall("c-rollcall:")["sid"] == participant.sid
    assert {key: redis_db.hgetall(key) for key in VICTIMS} == VICTIMS


class TestWithAKeyPrefix:
    """The id is checked after the prefix: `rc:` + `lesson_seat_X` is lesson X's seat map."""

    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, key_prefix=PREFIX)

    @pytest.mark.gen_test(timeout=30)
    async def test_reserved_ids_are_refused(
        self, connect, lesson, redis_db, victims, sio, secret
    ):
        client = await connect()

        await assert_refused(
            client, sio, (teacher_request("lesson_seat_X", secret),), "INVALID_REQUEST"
        )
        await assert_refused(
            client, sio, (request(access_token=teacher_token("rollcall:procs", secret)),),
            "INVALID_TOKEN",
        )

        assert snapshot(redis_db) == victims
        assert PREFIX + "lesson_seat_X" in victims
