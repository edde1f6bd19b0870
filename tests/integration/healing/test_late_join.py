"""A join that timed out may still be run by Redis later (its script was sent). Once its socket
disconnects, or joins another lesson, no presence field, roster record or held record may
still name the socket's sid, whether the late script ran or not.

Two ways for Redis not to answer in time: `CLIENT PAUSE WRITE` (Redis holds the script; the
client gives up on its connection, and Redis then drops what that connection had sent), and a
stall (SIGSTOP: the script waits in the socket, and Redis runs it when it resumes, after the join
has answered UNAVAILABLE: the late write this file is about)."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest
import redis

from store.keys import HELD_KEY, ROSTER_KEY, STUDENTS_KEY
from store.presence import JOIN_SCRIPT, ParticipantEntry, RosterEntry, parse_held_field
from tests.support import SUCCESS
from tests.support.healing import naming, wait_for
from tests.support.joins import LESSON, participant_token, request
from tests.support.lessons import add_lesson

OTHER = "lesson-2"
STUDENTS = STUDENTS_KEY.format(lesson_id=LESSON)


@pytest.fixture
def other_lesson(lesson: str, database: psycopg2.extensions.connection) -> str:
    return add_lesson(database, OTHER, 2)


class Pause:
    """CLIENT PAUSE WRITE for longer than the join waits, lifted by end()."""

    def __init__(self, db: redis.Redis, milliseconds: int) -> None:
        self.db, self.milliseconds = db, milliseconds

    def begin(self) -> None:
        self.db.execute_command("CLIENT", "PAUSE", self.milliseconds, "WRITE")

    def end(self) -> None:
        self.db.execute_command("CLIENT", "UNPAUSE")


@pytest.fixture(params=["pause", "stall"])
def outage(request: pytest.FixtureRequest, redis_db, redis_stall, config) -> Any:
    if request.param == "stall":
        return redis_stall
    return Pause(redis_db, int((config.store_timeout + 5) * 1000))


@pytest.fixture
def timed_out(io_loop, connect, lesson, outage, redis_db, services, secret) -> Any:
    """A client whose join of LESSON (as c1) answered UNAVAILABLE because Redis did not answer.
    After the outage, a stalled Redis runs the script (its write is awaited); a paused one has
    dropped it.

    As after any earlier join, the join script is in Redis's cache (else the late EVALSHA
    would only find NOSCRIPT) and the server's pool has a connection open (a new one would
    time out in its handshake, before the script is sent at all)."""

    async def join_while_out() -> Any:
        client = await connect()
        redis_db.script_load(JOIN_SCRIPT.text)
        await services.presence.ping()
        outage.begin()
        try:
            token = participant_token("c1", secret)
            ack = await client.join(request(user_id="c1", access_token=token))
        finally:
            outage.end()
        assert ack["data"]["code"] == "UNAVAILABLE"
        sid = client.sid
        if isinstance(outage, Pause):
            assert naming(redis_db, sid) == []
        else:
            await wait_for(lambda: redis_db.hget(STUDENTS, "c1") == sid, "the late write")
        return client

    return io_loop.run_sync(join_while_out, timeout=30)


@pytest.mark.gen_test(timeout=30)
async def test_a_timed_out_join_then_a_disconnect_leaves_nothing_naming_the_sid(
    timed_out, redis_db, server_events
):
    sid = timed_out.sid

    await timed_out.close()
    await server_events.wait_for("disconnect", sid)

    assert naming(redis_db, sid) == []


@pytest.mark.gen_test(timeout=30)
async def test_a_timed_out_join_then_a_switch_leaves_nothing_naming_the_sid_there(
    timed_out, other_lesson, redis_db, secret, server_events, services
):
    sid = timed_out.sid
    token = participant_token("c1", secret)

    ack = await timed_out.join(request(user_id="c1", lesson_id=OTHER, access_token=token))

    assert ack == SUCCESS
    # what names the sid now is its presence in the other lesson, and nothing of the first
    named = naming(redis_db, sid)
    held = HELD_KEY.format(process_id=services.presence.process_id)
    assert {key for key, _ in named} == {
        "c1", STUDENTS_KEY.format(lesson_id=OTHER), ROSTER_KEY.format(lesson_id=OTHER), held
    }
    assert {parse_held_field(field) for key, field in named if key == held} == {
        ParticipantEntry(OTHER, "c1"), RosterEntry(OTHER, "c1")
    }
    await timed_out.close()
    await server_events.wait_for("disconnect", sid)
    assert naming(redis_db, sid) == []
