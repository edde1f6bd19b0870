"""The Redis side of a stop that hands presence over, against the real Redis: the retiring mark
(the liveness key lasts for the grace, then the process is swept like a dead one), and the end
of each closed connection noted in its roster records (store/hand_over.lua), which the sweep
stamps as `last` unless a comeback took the record over. Each "process" is a PresenceStore of
its own, as in test_liveness_store.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import redis

from store.keys import ALIVE_KEY, ROSTER_KEY, UNVERIFIED_KEY
from store.liveness import RETIRING, Claim, Renewal
from store.presence import (
    ClaimEntry,
    Leave,
    ParticipantEntry,
    PresenceStore,
    TeacherEntry,
    TeacherJoin,
)
from store.roster import claim_field
from tests.integration.healing.test_liveness_store import (
    L1,
    SEATS,
    TTL,
    participant,
    process,
    roster,
    store_of,
    user,
)
from tests.support.healing import alive, wait_for

GRACE = 0.3
ROSTER = ROSTER_KEY.format(lesson_id=L1)


def raw_record(db: redis.Redis, client_id: str) -> dict:
    return json.loads(db.hget(ROSTER, user(client_id)))


def entries_of(client_id: str) -> tuple[ParticipantEntry, object]:
    return ParticipantEntry(L1, client_id), roster(L1, client_id)


@pytest.mark.gen_test(timeout=20)
async def test_a_retiring_process_stays_alive_for_the_grace_then_is_swept_as_dead(
    redis_db: redis.Redis, redis_url: str
):
    async with process(redis_url) as p, process(redis_url) as other:
        await p.renew()
        await other.renew()
        pid = p.process_id

        assert await p.mark_retiring(GRACE) is Renewal.RENEWED
        key = ALIVE_KEY.format(process_id=pid)
        assert RETIRING in redis_db.get(key)
        assert 0 < redis_db.pttl(key) <= GRACE * 1000 < TTL * 1000
        assert await other.dead_processes() == []  # nobody sweeps it within the grace

        await wait_for(lambda: not alive(redis_db, pid), "the end of the grace", within=5)
        assert await other.dead_processes() == [pid]
        assert await other.claim(pid) is Claim.CLAIMED
        # claimed: the mark cannot revive it
        assert await p.mark_retiring(GRACE) is Renewal.SWEPT
        assert not alive(redis_db, pid)


@pytest.mark.gen_test(timeout=20)
async def test_a_handed_over_record_stays_present_and_the_sweep_stamps_when_it_ended(
    redis_db: redis.Redis, redis_url: str
):
    async with process(redis_url) as p, process(redis_url) as other:
        store = store_of(p)
        await p.renew()
        await other.renew()
        for n in (1, 2):
            await store.join(participant(L1, f"c{n}", f"s{n}"))
        await store.join(TeacherJoin(L1, SEATS, "st", "t1"))
        before = {n: raw_record(redis_db, f"c{n}") for n in (1, 2)}
        assert await p.mark_retiring(GRACE) is Renewal.RENEWED

        noted = await asyncio.gather(
            store.hand_over(Leave("s1", entries_of("c1"))),
            store.hand_over(Leave("s2", entries_of("c2"))),
            store.hand_over(Leave("st", (TeacherEntry(L1, "t1"),))),
        )

        assert noted == [1, 1, 0]  # a teacher has no roster record
        # nothing cleared: the keys still name the closed connections
        assert redis_db.hgetall(f"lesson_student_{L1}") == {"c1": "s1", "c2": "s2"}
        assert redis_db.hgetall(f"lesson_teacher_{L1}") == {"t1": "st"}
        ended = {}
        for n in (1, 2):
            record = raw_record(redis_db, f"c{n}")
            ended[n] = record.pop("ended")
            assert record == before[n]  # still held by its sid: present
            assert ended[n] >= record["last"]

        # c2 comes back on another process within the grace: a reconnect, the note gone
        await store_of(other).join(participant(L1, "c2", "o2"))
        c2 = raw_record(redis_db, "c2")
        assert (c2["sid"], c2["joins"], "ended" in c2) == ("o2", 2, False)

        await wait_for(lambda: not alive(redis_db, p.process_id), "the end of the grace", within=5)
        assert await other.claim(p.process_id) is Claim.CLAIMED
        result = await other.sweep(p.process_id)

        assert (result.ghosts, result.rosters) == (2, 1)  # c1 and t1; c1's record
        assert redis_db.hgetall(f"lesson_student_{L1}") == {"c2": "o2"}
        assert not redis_db.exists(f"lesson_teacher_{L1}")
        c1 = raw_record(redis_db, "c1")
        # left from when its connection ended, not from the sweep
        assert (c1["sid"], c1["last"], "ended" in c1) == ("", ended[1], False)
        assert raw_record(redis_db, "c2")["sid"] == "o2"


@pytest.mark.gen_test(timeout=20)
async def test_hand_over_writes_nothing_with_the_roster_off_or_for_a_record_taken_over(
    redis_db: redis.Redis, redis_url: str
):
    off = PresenceStore.open(redis_url, timeout=2.0, roster_ttl=0)
    try:
        await off.join(participant(L1, "c1", "s1"))
        assert await off.hand_over(Leave("s1", entries_of("c1"))) == 0
        assert not redis_db.exists(ROSTER)
    finally:
        await off.close()
    async with process(redis_url) as p:
        store = store_of(p)
        await store.join(participant(L1, "c2", "old"))
        await store.join(participant(L1, "c2", "new"))
        # the older connection's note would misdate the newer one's record
        assert await store.hand_over(Leave("old", entries_of("c2"))) == 0
        assert "ended" not in raw_record(redis_db, "c2")


@pytest.mark.gen_test(timeout=20)
async def test_an_unverified_claim_is_noted_like_a_roster_record(
    redis_db: redis.Redis, redis_url: str
):
    async with process(redis_url) as p:
        store = store_of(p)
        join = dataclasses.replace(participant(L1, "c3", "s3"), verified=False)
        await store.join(join)
        presence, claim = join.entries
        assert isinstance(claim, ClaimEntry)

        assert await store.hand_over(Leave("s3", (presence, claim))) == 1

        key = UNVERIFIED_KEY.format(lesson_id=L1)
        record = json.loads(redis_db.hget(key, claim_field(user("c3"), "c3")))
        assert (record["sid"], "ended" in record) == ("s3", True)
        assert not redis_db.hexists(ROSTER, user("c3"))  # the user's own record is untouched

