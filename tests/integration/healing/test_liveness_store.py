"""The Redis side of healing, against the real Redis: the held record the join and leave scripts
keep (presence entries and roster records), the heartbeat, the claim (one sweeper per dead
process), the batched sweep, and a swept process that must not write again. Each "process" here is
a PresenceStore of its own (the roster on, as by default)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from store.errors import ProcessSwept
from store.keys import ALIVE_KEY, PROCESSES_KEY, ROSTER_KEY, SWEPT_KEY, UNVERIFIED_KEY
from store.liveness import SWEEP_SCRIPT, Claim, ClaimLost, Liveness, Renewal
from store.presence import (
    RECORD_TTL,
    SWEPT_TTL,
    ClaimEntry,
    Leave,
    ParticipantEntry,
    ParticipantJoin,
    PresenceStore,
    RosterEntry,
    TeacherEntry,
    TeacherJoin,
    held_field,
    parse_held_field,
)
from store.roster import claim_field, parse_record
from tests.support.healing import alive, held, registered, swept_by

L1, L2 = "lesson-1", "lesson-2"
SEATS = 3
TTL = 5.0


@contextlib.asynccontextmanager
async def process(redis_url: str) -> AsyncIterator[Liveness]:
    """A PresenceStore and its Liveness: what one rollcall process holds."""
    store = PresenceStore.open(redis_url, timeout=2.0)
    try:
        yield Liveness(store, TTL, "test process")
    finally:
        await store.close()


def store_of(liveness: Liveness) -> PresenceStore:
    return liveness._presence


def user(client_id: str) -> str:
    """The user_id of a participant's joins here: whose roster record they keep."""
    return f"user-{client_id}"


def participant(lesson: str, client_id: str, sid: str, **kw) -> ParticipantJoin:
    return ParticipantJoin(lesson, SEATS, sid, client_id, "student", user(client_id), **kw)


def roster(lesson: str, client_id: str) -> RosterEntry:
    return RosterEntry(lesson, user(client_id))


def roster_sid(db: redis.Redis, lesson: str, client_id: str) -> str | None:
    """The sid holding the participant's roster record ("" once left), None if it has none."""
    raw = db.hget(ROSTER_KEY.format(lesson_id=lesson), user(client_id))
    parsed = parse_record(user(client_id), raw or "")
    return None if parsed is None else parsed.sid


def f(entry: TeacherEntry | ParticipantEntry | RosterEntry) -> str:
    return held_field(entry)


@pytest.mark.gen_test(timeout=20)
async def test_join_and_leave_scripts_keep_the_held_record(redis_db: redis.Redis, redis_url: str):
    async with process(redis_url) as p:
        store, pid = store_of(p), p.process_id
        teacher, c1, r1 = TeacherEntry(L1, "t1"), ParticipantEntry(L1, "c1"), roster(L1, "c1")
        await store.join(TeacherJoin(L1, SEATS, "s1", "t1"))
        await store.join(participant(L1, "c1", "s2"))
        # the participant's roster record next to its presence entry; a teacher has none
        assert held(redis_db, pid) == {f(teacher): "s1", f(c1): "s2", f(r1): "s2"}
        assert 0 < redis_db.ttl(f"rollcall:held:{pid}") <= RECORD_TTL

        # a second tab of c1 takes the entries over; its leave hands them back to the first one
        await store.join(participant(L1, "c1", "s3"))
        assert (held(redis_db, pid)[f(c1)], held(redis_db, pid)[f(r1)]) == ("s3", "s3")
        assert await store.leave(Leave("s3", (c1, r1), ("s2", "s2"))) == 2  # roster not counted
        assert (held(redis_db, pid)[f(c1)], held(redis_db, pid)[f(r1)]) == ("s2", "s2")
        assert redis_db.hget(f"lesson_student_{L1}", "c1") == "s2"
        assert roster_sid(redis_db, L1, "c1") == "s2"

        # an old sid's late leave touches neither the presence, the roster nor the record
        assert await store.leave(Leave("s3", (c1, r1))) == 0
        assert (held(redis_db, pid)[f(c1)], held(redis_db, pid)[f(r1)]) == ("s2", "s2")
        assert roster_sid(redis_db, L1, "c1") == "s2"

        # a lesson switch: the entry of the lesson left goes, the new one is recorded
        await store.join(TeacherJoin(L2, SEATS, "s1", "t1", leaving=(teacher,)))
        teacher2 = TeacherEntry(L2, "t1")
        assert held(redis_db, pid) == {f(teacher2): "s1", f(c1): "s2", f(r1): "s2"}
        # the participant's too: its roster record of the lesson left is marked left and goes
        c1_l2, r1_l2 = ParticipantEntry(L2, "c1"), roster(L2, "c1")
        await store.join(participant(L2, "c1", "s2", leaving=(c1, r1)))
        assert held(redis_db, pid) == {f(teacher2): "s1", f(c1_l2): "s2", f(r1_l2): "s2"}
        assert (roster_sid(redis_db, L1, "c1"), roster_sid(redis_db, L2, "c1")) == ("", "s2")

        await store.leave(Leave("s1", (teacher2,)))
        await store.leave(Leave("s2", (c1_l2, r1_l2)))
        assert held(redis_db, pid) == {}
        assert not redis_db.exists(f"rollcall:held:{pid}")
        assert roster_sid(redis_db, L2, "c1") == ""


@pytest.mark.gen_test(timeout=20)
async def test_heartbeat_registers_renews_and_revives(redis_db: redis.Redis, redis_url: str):
    async with process(redis_url) as p:
        pid = p.process_id
        assert await p.renew() is Renewal.REVIVED  # nothing there yet: registered now
        assert redis_db.get(ALIVE_KEY.format(process_id=pid)) == "test process"
        assert 0 < redis_db.pttl(ALIVE_KEY.format(process_id=pid)) <= TTL * 1000
        assert registered(redis_db) == {pid}
        assert 0 < redis_db.ttl(PROCESSES_KEY) <= RECORD_TTL
        assert await p.renew() is Renewal.RENEWED

        await store_of(p).join(participant(L1, "c1", "s1"))
        redis_db.persist(f"rollcall:held:{pid}")
        redis_db.delete(ALIVE_KEY.format(process_id=pid))  # lapsed; nobody swept it
        assert await p.renew() is Renewal.REVIVED
        assert alive(redis_db, pid)
        assert 0 < redis_db.ttl(f"rollcall:held:{pid}") <= RECORD_TTL  # kept alive with it


@pytest.mark.gen_test(timeout=20)
async def test_only_one_of_two_processes_claims_a_dead_one(redis_db: redis.Redis, redis_url: str):
    async with process(redis_url) as b, process(redis_url) as c:
        for live in (b, c):
            await live.renew()
        for round_ in range(20):
            dead = f"dead{round_}"
            redis_db.sadd(PROCESSES_KEY, dead)
            outcomes = await asyncio.gather(b.claim(dead), c.claim(dead))
            assert outcomes.count(Claim.CLAIMED) == 1
            assert set(outcomes) - {Claim.CLAIMED} <= {Claim.TAKEN, Claim.RACED}
            winner = (b, c)[outcomes.index(Claim.CLAIMED)]
            assert swept_by(redis_db, dead) == winner.process_id
            assert 0 < redis_db.ttl(SWEPT_KEY.format(process_id=dead)) <= SWEPT_TTL
            # the loser, asking again, finds it taken
            assert await (c if winner is b else b).claim(dead) is Claim.TAKEN

        # a live process is never claimed
        assert await b.claim(c.process_id) is Claim.ALIVE


@pytest.mark.gen_test(timeout=20)
async def test_a_dead_claimer_is_replaced(redis_db: redis.Redis, redis_url: str):
    async with process(redis_url) as b, process(redis_url) as c:
        await c.renew()
        assert await b.claim("dead") is Claim.CLAIMED  # b never renewed: b is dead too
        assert await c.claim("dead") is Claim.CLAIMED
        assert swept_by(redis_db, "dead") == c.process_id
        with pytest.raises(ClaimLost):
            await b.sweep("dead")


@pytest.mark.gen_test(timeout=30)
async def test_sweep_clears_in_batches_only_what_still_holds_the_dead_sids(
    redis_db: redis.Redis, redis_url: str
):
    count = 1200
    async with process(redis_url) as dead, process(redis_url) as live:
        await live.renew()
        dead_store, live_store = store_of(dead), store_of(live)
        await dead.renew()
        await asyncio.gather(
            dead_store.join(TeacherJoin(L1, SEATS, "dead-t", "t1")),
            *(dead_store.join(participant(L1, f"c{i}", f"dead-{i}")) for i in range(count)),
        )
        # the first 100 came back on the live process; fields others wrote must survive
        await asyncio.gather(
            *(live_store.join(participant(L1, f"c{i}", f"live-{i}")) for i in range(100))
        )
        redis_db.hset(f"lesson_student_{L1}", "other", "sid-of-other")
        redis_db.hset(f"lesson_teacher_{L1}", "t2", "sid-of-t2")
        redis_db.delete(ALIVE_KEY.format(process_id=dead.process_id))

        evalsha = redis_db.info("commandstats")["cmdstat_evalsha"]["calls"]
        assert await live.claim(dead.process_id) is Claim.CLAIMED
        result = await live.sweep(dead.process_id, batch=500)
        runs = redis_db.info("commandstats")["cmdstat_evalsha"]["calls"] - evalsha - 1

    # a presence entry and a roster record per participant, and the teacher's entry
    assert (result.entries, result.ghosts) == (2 * count + 1, count - 100 + 1)
    assert result.fields == 2 * (count - 100) + 1
    assert result.rosters == count - 100
    assert runs >= 5  # 2401 entries, at most 500 per run
    students = redis_db.hgetall(f"lesson_student_{L1}")
    assert students == {"other": "sid-of-other", **{f"c{i}": f"live-{i}" for i in range(100)}}
    assert redis_db.hgetall(f"lesson_teacher_{L1}") == {"t2": "sid-of-t2"}
    assert redis_db.hget("c5", "sid") == "live-5"
    assert redis_db.hgetall("c500") == {"sid": "", "client_id": "c500", "role": "student"}
    # the dead sids' roster records are left; those the comebacks hold are untouched
    assert (roster_sid(redis_db, L1, "c500"), roster_sid(redis_db, L1, "c5")) == ("", "live-5")
    assert not redis_db.exists(f"rollcall:held:{dead.process_id}")
    assert registered(redis_db) == {live.process_id}
    assert len(held(redis_db, live.process_id)) == 2 * 100


@pytest.mark.gen_test(timeout=20)
async def test_malformed_bookkeeping_is_dropped_by_the_sweep(
    redis_db: redis.Redis, redis_url: str
):
    async with process(redis_url) as live:
        await live.renew()
        good = ParticipantEntry(L1, "c1")
        redis_db.hset("lesson_student_" + L1, "c1", "dead-1")
        redis_db.hset("rollcall:held:d1", mapping={
            f(good): "dead-1", "x": "s", "[1,2]": "s", '["alien","L","u"]': "s", '"a"': "s",
        })
        redis_db.sadd(PROCESSES_KEY, "d1", "d2", "d3")
        redis_db.set("rollcall:held:d2", "not a hash")
        # an entry whose lesson key is no longer a hash is only taken off the record
        redis_db.set("lesson_student_" + L2, "not a hash")
        redis_db.hset("rollcall:held:d3", f(ParticipantEntry(L2, "c2")), "dead-2")

        results = []
        for dead in ("d1", "d2", "d3"):
            assert await live.claim(dead) is Claim.CLAIMED
            results.append(await live.sweep(dead))

    assert [(r.entries, r.ghosts, r.malformed) for r in results] == [
        (1, 1, 4), (0, 0, 1), (1, 0, 0)
    ]
    assert not redis_db.exists("lesson_student_" + L1)
    assert redis_db.get("lesson_student_" + L2) == "not a hash"
    assert not redis_db.exists("rollcall:held:d1", "rollcall:held:d2", "rollcall:held:d3")
    assert registered(redis_db) == {live.process_id}


@pytest.mark.gen_test(timeout=20)
async def test_a_swept_process_writes_nothing_back(redis_db: redis.Redis, redis_url: str):
    async with process(redis_url) as frozen, process(redis_url) as survivor:
        store = store_of(frozen)
        old = frozen.process_id
        c1, r1 = ParticipantEntry(L1, "c1"), roster(L1, "c1")
        await store.join(participant(L1, "c1", "s1"))
        await store.join(participant(L1, "c2", "s2"))
        await survivor.renew()
        assert await survivor.claim(old) is Claim.CLAIMED  # its liveness had lapsed
        before = {key: redis_db.dump(key) for key in redis_db.keys("*")}

        # a join that was waiting in its socket when it froze
        with pytest.raises(ProcessSwept):
            await store.join(participant(L1, "c9", "s9"))
        assert store.swept.is_set()
        assert {key: redis_db.dump(key) for key in redis_db.keys("*")} == before
        assert await frozen.renew() is Renewal.SWEPT
        assert not alive(redis_db, old)

        # its disconnects still clear, but hand nothing over: the other tab is dropped too
        other_tab = ("s1-other-tab", "s1-other-tab")
        assert await store.leave(Leave("s1", (c1, r1), other_tab)) == 2
        assert redis_db.hgetall(f"lesson_student_{L1}") == {"c2": "s2"}
        assert redis_db.hget("c1", "sid") == ""
        assert roster_sid(redis_db, L1, "c1") == ""

        result = await survivor.sweep(old)
        # c2's entry and roster record; c1 had left
        assert (result.entries, result.ghosts, result.rosters) == (2, 1, 1)
        assert roster_sid(redis_db, L1, "c2") == ""

        # under a new id it is a live process again
        new = frozen.start_over()
        assert new != old and not store.swept.is_set()
        assert await frozen.renew() is Renewal.REVIVED
        await store.join(participant(L1, "c9", "s9"))
        c9 = ParticipantEntry(L1, "c9")
        assert held(redis_db, new) == {f(c9): "s9", f(roster(L1, "c9")): "s9"}


@pytest.mark.gen_test(timeout=20)
async def test_retire_sweeps_what_the_process_still_holds(redis_db: redis.Redis, redis_url: str):
    async with process(redis_url) as p, process(redis_url) as other:
        store, pid = store_of(p), p.process_id
        await p.renew()
        await other.renew()
        await store_of(other).join(participant(L1, "c2", "other-2"))
        # c1's leave never reached Redis
        await store.join(participant(L1, "c1", "s1"))

        result = await p.retire()

        assert (result.entries, result.ghosts, result.rosters) == (2, 1, 1)
        assert redis_db.hgetall(f"lesson_student_{L1}") == {"c2": "other-2"}
        assert (roster_sid(redis_db, L1, "c1"), roster_sid(redis_db, L1, "c2")) == ("", "other-2")
        assert not alive(redis_db, pid) and not redis_db.exists(f"rollcall:held:{pid}")
        assert registered(redis_db) == {other.process_id}
        assert swept_by(redis_db, pid) == pid  # a late write of it is refused
        with pytest.raises(ProcessSwept):
            await store.join(participant(L1, "c1", "s1"))


@given(
    kind=st.sampled_from([TeacherEntry, ParticipantEntry, RosterEntry]),
    lesson_id=st.text(min_size=1, max_size=128),
    ident=st.text(min_size=1, max_size=128),
)
def test_a_held_field_names_its_entry_whatever_the_ids_hold(kind, lesson_id, ident) -> None:
    entry = kind(lesson_id, ident)
    assert parse_held_field(held_field(entry)) == entry


@pytest.mark.parametrize(
    "field", ["", "x", "[]", '["teacher","L"]', '["teacher","L",1]', '["alien","L","u"]', "{}",
              '["participant","L","c",""]', '["roster","L"]', "\ud800"],
)
def test_a_field_held_field_never_writes_names_no_entry(field: str) -> None:
    assert parse_held_field(field) is None


@pytest.mark.gen_test(timeout=20)
async def test_a_process_dead_before_its_first_heartbeat_is_found_by_its_first_join(
    redis_db: redis.Redis, redis_url: str
):
    async with process(redis_url) as early, process(redis_url) as survivor:
        await store_of(early).join(participant(L1, "c1", "s1"))  # its heartbeat never ran
        assert registered(redis_db) == {early.process_id}
        await survivor.renew()

        assert await survivor.dead_processes() == [early.process_id]
        assert await survivor.claim(early.process_id) is Claim.CLAIMED
        assert (await survivor.sweep(early.process_id)).ghosts == 1
        assert not redis_db.exists(f"lesson_student_{L1}")


# KEYS and ARGV that break the layout of store/sweep.lua (the claim is the sweeper's: "live").
SWEEP_KEYS = ("rollcall:held:d", "rollcall:swept:d", PROCESSES_KEY)
MALFORMED_SWEEPS = [
    (SWEEP_KEYS, ("live", "d", "1")),  # no roster TTL
    (SWEEP_KEYS, ("live", "d", "1", "a day")),  # a roster TTL that is not a number
    ((*SWEEP_KEYS, f"rollcall:roster:{L1}"), ("live", "d", "1", "60", "roster", "u", "s")),  # short
]


@pytest.mark.parametrize(("keys", "argv"), MALFORMED_SWEEPS)
def test_a_malformed_sweep_is_refused_and_writes_nothing(redis_db: redis.Redis, keys, argv):
    redis_db.set("rollcall:swept:d", "live")
    redis_db.hset("rollcall:held:d", f(roster(L1, "c1")), "s")
    redis_db.sadd(PROCESSES_KEY, "d")
    before = {key: redis_db.dump(key) for key in redis_db.keys("*")}

    with pytest.raises(redis.ResponseError, match="sweep: bad arguments"):
        redis_db.eval(SWEEP_SCRIPT.text, len(keys), *keys, *argv)

    assert {key: redis_db.dump(key) for key in redis_db.keys("*")} == before


@pytest.mark.gen_test(timeout=20)
async def test_an_unverified_claim_is_held_left_and_swept_like_a_roster_record(
    redis_db: redis.Redis, redis_url: str
):
    """A join whose token does not vouch for its user_id keeps a claim instead of the user's
    roster record: the held record names it, a leave and the sweep of a dead process mark it
    left, and the user's own record is never written."""
    claims = UNVERIFIED_KEY.format(lesson_id=L1)

    def claim_sid(client_id: str) -> str | None:
        raw = redis_db.hget(claims, claim_field(user("c1"), client_id))
        parsed = parse_record(user("c1"), raw or "")
        return None if parsed is None else parsed.sid

    async with process(redis_url) as dead, process(redis_url) as survivor:
        store, pid = store_of(dead), dead.process_id
        forged = [participant(L1, "c1", "s1", verified=False)]
        forged.append(dataclasses.replace(forged[0], client_id="c2", sid="s2"))
        for join in forged:
            await store.join(join)
        c1, c2 = (ClaimEntry(L1, user("c1"), client_id) for client_id in ("c1", "c2"))
        assert held(redis_db, pid) == {
            f(ParticipantEntry(L1, "c1")): "s1", f(c1): "s1",
            f(ParticipantEntry(L1, "c2")): "s2", f(c2): "s2",
        }
        assert (claim_sid("c1"), claim_sid("c2")) == ("s1", "s2")
        assert not redis_db.exists(ROSTER_KEY.format(lesson_id=L1))

        assert await store.leave(Leave("s1", forged[0].entries)) == 2  # the claim not counted
        assert claim_sid("c1") == ""

        await survivor.renew()
        assert await survivor.claim(pid) is Claim.CLAIMED
        result = await survivor.sweep(pid)
        assert (result.entries, result.ghosts, result.rosters) == (2, 1, 1)
        assert (claim_sid("c1"), claim_sid("c2")) == ("", "")
        assert not redis_db.exists(ROSTER_KEY.format(lesson_id=L1))


@given(lesson_id=st.text(min_size=1, max_size=128), user_id=st.text(min_size=1, max_size=128),
       client_id=st.text(min_size=1, max_size=128))
def test_a_claims_held_field_names_it_whatever_the_ids_hold(lesson_id, user_id, client_id):
    entry = ClaimEntry(lesson_id, user_id, client_id)
    assert parse_held_field(held_field(entry)) == entry
