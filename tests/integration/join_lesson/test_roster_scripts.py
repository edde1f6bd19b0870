"""The roster part of the join and leave scripts, driven through PresenceStore against the real
Redis: the compare-and-clear a sweep relies on, the handover, the clock, and malformed calls."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import ResponseError

from store.keys import ROSTER_KEY
from store.presence import (
    JOIN_SCRIPT,
    LEAVE_SCRIPT,
    Leave,
    ParticipantJoin,
    PresenceStore,
    RosterEntry,
)
from store.roster import RosterRecord, parse_record

TIMEOUT = 1.0
LESSON = "l"
ROSTER = ROSTER_KEY.format(lesson_id=LESSON)
ENTRY = RosterEntry(LESSON, "u1")
TTL = "86400"


@pytest.fixture
def presence(io_loop, redis_db, redis_url):
    store = PresenceStore.open(redis_url, TIMEOUT)
    yield store
    io_loop.run_sync(store.close)


def record(db: redis.Redis, user_id: str = "u1") -> RosterRecord:
    parsed = parse_record(user_id, db.hget(ROSTER, user_id) or "")
    assert parsed is not None
    return parsed


def join(sid: str, client_id: str = "c1") -> ParticipantJoin:
    return ParticipantJoin(LESSON, 2, sid, client_id, "student", "u1")


def redis_ms(db: redis.Redis) -> int:
    seconds, micros = db.time()
    return seconds * 1000 + micros // 1000


@pytest.mark.gen_test
async def test_times_are_redis_time_in_milliseconds(presence, redis_db):
    before = redis_ms(redis_db)
    await presence.join(join("sid-a"))
    after = redis_ms(redis_db)

    first = record(redis_db).first_joined_at.timestamp() * 1000
    assert before <= first <= after
    assert first == int(first)


@pytest.mark.gen_test
async def test_a_leave_of_an_older_sid_leaves_a_newer_connection_s_record(presence, redis_db):
    await presence.join(join("sid-a"))
    await presence.join(join("sid-b", client_id="c2"))

    await presence.leave(Leave("sid-a", (ENTRY,)))  # as a sweep would: no successor

    assert (record(redis_db).sid, record(redis_db).client_id) == ("sid-b", "c2")
    await presence.leave(Leave("sid-b", (ENTRY,)))
    assert (record(redis_db).sid, record(redis_db).joins) == ("", 2)


@pytest.mark.gen_test
async def test_a_leave_with_a_successor_hands_the_record_over(presence, redis_db):
    await presence.join(join("sid-a"))
    await presence.join(join("sid-b"))

    await presence.leave(Leave("sid-b", (ENTRY,), ("sid-a",)))

    assert record(redis_db).sid == "sid-a"
    assert record(redis_db).last_seen_at >= record(redis_db).first_joined_at


@pytest.mark.gen_test
async def test_a_roster_leave_is_not_counted_as_a_presence_field(presence, redis_db):
    await presence.join(join("sid-a"))

    assert await presence.leave(Leave("sid-a", (ENTRY,))) == 0
    assert record(redis_db).sid == ""


# KEYS and ARGV that break the layouts of store/join_lesson.lua and store/leave_lesson.lua: the
# process's bookkeeping (held record, swept key, registry; record TTL, process id, roster TTL),
# then the roster's parts.
BOOK_KEYS = ("rollcall:held:p", "rollcall:swept:p", "rollcall:processes")
BOOK = ("604800", "p")
HELD = '["roster","l","u1"]'
MALFORMED_LEAVES = [
    (BOOK_KEYS, ("sid", *BOOK)),                                          # no roster TTL
    (BOOK_KEYS, ("sid", *BOOK, "soon")),                # a roster TTL that is not a number
    (BOOK_KEYS, ("sid", *BOOK, TTL, "roster", "u1", "", HELD)),  # a roster entry without its key
    ((*BOOK_KEYS, ROSTER), ("sid", *BOOK, TTL, "roster", "u1", "")),      # an entry cut short
    ((*BOOK_KEYS, ROSTER, ROSTER), ("sid", *BOOK, TTL, "roster", "u1", "", HELD)),  # a key too many
    ((*BOOK_KEYS, ROSTER), ("sid", *BOOK, TTL, "rooster", "u1", "", HELD)),  # an unknown kind
]
SEAT = "seat"
PARTICIPANT_KEYS = (SEAT, *BOOK_KEYS, "c1", "lesson_student_l")
PARTICIPANT = ("participant", "2", "sid", "60", *BOOK, TTL, "", "c1", "student")
MALFORMED_JOINS = [
    ((SEAT, *BOOK_KEYS), ("seats", "2", "sid", "60", *BOOK)),             # no roster TTL at all
    ((SEAT, *BOOK_KEYS), ("seats", "2", "sid", "60", *BOOK, "x", "")),    # not a number
    (PARTICIPANT_KEYS, (*PARTICIPANT, "u1", HELD)),                       # the roster key missing
    ((*PARTICIPANT_KEYS, ROSTER), PARTICIPANT),                   # its user and held field missing
    ((*PARTICIPANT_KEYS, ROSTER), (*PARTICIPANT, "u1")),                  # its held field missing
]


@pytest.mark.parametrize(("keys", "argv"), MALFORMED_LEAVES)
def test_a_malformed_leave_is_refused_and_writes_nothing(redis_db, keys, argv):
    redis_db.hset(ROSTER, "u1", '{"sid":"sid","client_id":"c","first":1,"last":1,"joins":1}')
    before = redis_db.hgetall(ROSTER)

    with pytest.raises(ResponseError, match="leave_lesson: bad arguments"):
        redis_db.eval(LEAVE_SCRIPT.text, len(keys), *keys, *argv)

    assert redis_db.hgetall(ROSTER) == before


@pytest.mark.parametrize(("keys", "argv"), MALFORMED_JOINS)
def test_a_malformed_join_is_refused_and_writes_nothing(redis_db, keys, argv):
    with pytest.raises(ResponseError, match="join_lesson: bad arguments"):
        redis_db.eval(JOIN_SCRIPT.text, len(keys), *keys, *argv)

    assert redis_db.keys("*") == []
