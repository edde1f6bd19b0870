"""Redis loses what rollcall wrote while every client stays connected (an empty restart, a
FLUSHALL): each process notices at its next heartbeat and writes its live connections' presence
again. Real server.py processes, real python-socketio clients, and a redis-server of the test's
own (killed and restarted empty; the suite's shared Redis is never flushed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import time
from collections.abc import AsyncIterator

import pytest
import redis

from tests.integration.healing.test_crash import Clients, scrape
from tests.support.healing import Rollcall, held, registered, wait_for
from tests.support.joins import LESSON, SEATS, Client, participant_token, request
from tests.support.lessons import add_lesson
from tests.support.redis_servers import RedisServer, redis_server

SUCCESS = {"status": "SUCCESS", "data": {}}
TEACHERS = f"lesson_teacher_{LESSON}"
STUDENTS = f"lesson_student_{LESSON}"
SEAT_MAP = f"lesson_seat_{LESSON}"
ROSTER = f"rollcall:roster:{LESSON}"
PARTICIPANTS = 30
#: the issue's bound for the keys of every live client to be back, at the default flags
BACK_WITHIN = 15.0
#: the defaults of --liveness-ttl and --liveness-interval (config.py), spelled out so that the
#: test runs at them whatever the helpers' short settings
DEFAULT_LIVENESS = ("--liveness-ttl", "15", "--liveness-interval", "5")


def last_success(joins: list[tuple]) -> str:
    return [lesson_id for lesson_id, code in joins if code == "SUCCESS"][-1]


#: seconds between two joins of one client (its join rate limit is 5 a second)
RETRY_STEP = 0.25
#: participants that keep switching between FLIP_LESSONS lessons through a loss or failover
FLIPPERS = 4
FLIP_LESSONS = 12


async def flip(client: Client, client_id: str, secret: str, stop: asyncio.Event) -> list[tuple]:
    """Join lesson after lesson until `stop`; the (lesson, ack status or code) of each join."""
    token = participant_token(client_id, secret)
    outcomes = []
    n = 0
    while not stop.is_set():
        lesson_id = f"flip-{n % FLIP_LESSONS}"
        ack = await client.join(request(client_id, lesson_id, token))
        outcomes.append((lesson_id, ack["data"].get("code", ack["status"])))
        n += 1
        await asyncio.sleep(RETRY_STEP)
    return outcomes


def presence(db: redis.Redis) -> dict[str, dict[str, object]]:
    """What the platform reads, and the rosters as (sid, client_id) per user: every key but a
    process's own records and the roster's timestamps."""
    state: dict[str, dict[str, object]] = {}
    for key in db.keys("*"):
        if key.startswith(
            ("rollcall:alive:", "rollcall:held:", "rollcall:processes", "rollcall:swept:")
        ):
            continue
        value = db.hgetall(key)
        if key.startswith("rollcall:roster:"):
            value = {
                user: (json.loads(record)["sid"], json.loads(record)["client_id"])
                for user, record in value.items()
            }
        state[key] = value
    return state


def without(state: dict[str, dict[str, object]], *ids: str) -> dict[str, dict[str, object]]:
    """`state` without the keys and fields of the participants `ids`."""
    return {
        key: {field: value for field, value in fields.items() if field not in ids}
        for key, fields in state.items()
        if key not in ids
    }


def ttl_keys(db: redis.Redis) -> set[str]:
    """The presence keys that have a TTL (as a join sets them)."""
    return {key for key in presence(db) if db.ttl(key) > 0}


class Lesson(Clients):
    """A teacher and participants, joined and kept connected, and whether any was dropped."""

    async def join(self, url: str, secret: str, participants: int = PARTICIPANTS) -> None:
        await self.teacher(url, "t1", secret)
        for n in range(participants):
            await self.participant(url, f"c{n}", secret)

    async def open(self, url: str) -> Client:
        return await self._open(url)

    def dropped(self) -> list[str]:
        return [client.sid for client in self.opened if not client.sio.connected]


@contextlib.asynccontextmanager
async def lesson_on(
    redis_url: str, database_url: str, secret: str, *flags: str
) -> AsyncIterator[tuple[Rollcall, Lesson]]:
    process = await Rollcall.start(redis_url, database_url, secret, *flags)
    lesson = Lesson()
    try:
        yield process, lesson
    finally:
        await lesson.close()
        await process.stop()


async def back_after(db: redis.Redis, expected: dict[str, dict[str, object]], what: str) -> float:
    """Seconds until Redis holds `expected` again (at most BACK_WITHIN)."""
    started = time.monotonic()
    await wait_for(lambda: presence(db) == expected, what, within=BACK_WITHIN)
    return time.monotonic() - started


@pytest.mark.gen_test(timeout=90)
@pytest.mark.parametrize("loss", ["flushall", "empty restart"])
async def test_a_lesson_is_back_within_15_s_of_a_loss_at_the_default_flags(
    loss, lesson, database_url, secret, tmp_path: pathlib.Path
):
    async with (
        redis_server(tmp_path) as server,
        lesson_on(server.url, database_url, secret, *DEFAULT_LIVENESS) as (process, joined),
    ):
        db = server.client()
        await joined.join(process.url, secret)
        expected = presence(db)
        assert len(expected[STUDENTS]) == PARTICIPANTS and len(expected[SEAT_MAP]) == SEATS
        with_ttl = ttl_keys(db)
        assert TEACHERS in with_ttl and "c0" in with_ttl and ROSTER in with_ttl
        before = held(db, process.process_id)

        if loss == "flushall":
            db.flushall()
        else:
            await server.kill()
            await server.start()
        assert presence(db) == {}
        seconds = await back_after(db, expected, f"the lesson's keys after a {loss}")

        print(f"lesson back {seconds:.2f} s after the {loss}")
        assert ttl_keys(db) == with_ttl
        assert held(db, process.process_id) == before
        assert registered(db) == {process.process_id}
        assert joined.dropped() == []
        # noticed at the first heartbeat after the loss: a pooled connection that the restart
        # closed did not cost a heartbeat
        assert not process.lines_with("retrying every")
        [line] = await wait_for(lambda: process.lines_with("presence re-asserted"), "its line")
        assert f"connections={PARTICIPANTS + 1}" in line
        # a teacher field and a {user_id} key, a seat map, and per participant two fields and a
        # roster record
        assert f"rewritten={2 + 1 + 3 * PARTICIPANTS}" in line
        assert await scrape(process.url, "rollcall_presence_reassertions_total") == 1
        assert await scrape(process.url, "rollcall_presence_reasserted_keys_total") == (
            2 + 1 + 3 * PARTICIPANTS
        )
        switches = await scrape(process.url, "rollcall_redis_primary_switches_total")
        assert switches == (1 if loss == "empty restart" else 0)
        # and a new join succeeds
        newcomer = await joined.participant(process.url, "newcomer", secret)
        assert db.hget(STUDENTS, "newcomer") == newcomer.sid
        db.close()


@pytest.mark.gen_test(timeout=90)
async def test_two_processes_reassert_at_once_and_sweep_neither(
    lesson, database_url, secret, tmp_path: pathlib.Path
):
    # a beats often, b seldom: right after the flush, b is registered by a join but not alive
    # for up to its interval, and a must not take it for dead (it sweeps nobody for its TTL)
    async with (
        redis_server(tmp_path) as server,
        lesson_on(
            server.url, database_url, secret, "--liveness-ttl", "6", "--liveness-interval", "0.2"
        ) as (a, on_a),
        lesson_on(
            server.url, database_url, secret, "--liveness-ttl", "6", "--liveness-interval", "4"
        ) as (b, on_b),
    ):
        db = server.client()
        await on_a.join(a.url, secret, participants=10)
        for n in range(10, 20):
            await on_b.participant(b.url, f"c{n}", secret)
        # one participant with a tab on each process; b's join is the newer
        shared_a = await on_a.participant(a.url, "shared", secret)
        shared_b = await on_b.participant(b.url, "shared", secret)
        expected = presence(db)
        assert expected[STUDENTS]["shared"] == shared_b.sid

        db.flushall()
        newcomer = await on_b.participant(b.url, "newcomer", secret)
        assert db.sismember("rollcall:processes", b.process_id)

        def back() -> bool:
            state = presence(db)
            shared = state.get(STUDENTS, {}).get("shared")
            # whichever process re-asserted the shared participant first owns it: both are live
            return (
                shared in (shared_a.sid, shared_b.sid)
                and db.hget("shared", "sid") == shared
                and state[STUDENTS].get("newcomer") == newcomer.sid
                and without(state, "shared", "newcomer") == without(expected, "shared")
            )

        await wait_for(back, "both processes' keys", within=BACK_WITHIN)
        # b renews within its interval; a swept nobody, nobody started over or was dropped
        await wait_for(lambda: db.exists(f"rollcall:alive:{b.process_id}"), "b's renewal")
        assert registered(db) == {a.process_id, b.process_id}
        assert not a.lines_with("swept dead process") and not b.lines_with("starts over")
        assert on_a.dropped() == on_b.dropped() == []
        for process in (a, b):
            await wait_for(lambda p=process: p.lines_with("presence re-asserted"), "its line")
        db.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_redis_refusing_info_still_has_its_loss_noticed(
    lesson, database_url, secret, tmp_path: pathlib.Path
):
    """A managed Redis may rename INFO: the run id is then not asked again (one WARNING), and a
    FLUSHALL is still noticed by the lost registration."""
    server = await RedisServer(tmp_path, "--rename-command", "INFO", "").start()
    try:
        async with lesson_on(server.url, database_url, secret) as (process, joined):
            db = server.client()
            await joined.join(process.url, secret, participants=3)
            expected = presence(db)
            db.flushall()
            await back_after(db, expected, "the lesson's keys after a flushall")
            assert len(process.lines_with("Redis refuses INFO server")) == 1
            assert not process.lines_with("Traceback") and not process.lines_with("failed")
            db.close()
    finally:
        await server.kill()


@pytest.mark.gen_test(timeout=90)
async def test_lesson_switches_racing_the_reassertions_of_a_process(
    lesson, database, database_url, secret, tmp_path: pathlib.Path
):
    """Three FLUSHALLs while participants keep switching lessons: each process re-assertion
    meets joins in flight, and Redis ends with each in the lesson of its last join only."""
    for n in range(FLIP_LESSONS):
        add_lesson(database, f"flip-{n}", 3)
    async with (
        redis_server(tmp_path) as server,
        lesson_on(server.url, database_url, secret) as (process, joined),
    ):
        db = server.client()
        await joined.join(process.url, secret, participants=10)
        flippers = [await joined.open(process.url) for _ in range(FLIPPERS)]
        stop = asyncio.Event()
        flipping = [
            asyncio.ensure_future(flip(client, f"flipper{n}", secret, stop))
            for n, client in enumerate(flippers)
        ]
        for loss in range(1, 4):
            await wait_for(lambda: db.exists("lesson_student_flip-1"), "the flippers' joins")
            db.flushall()
            await wait_for(
                lambda n=loss: len(process.lines_with("presence re-asserted")) == n,
                "the re-assertion",
            )
        stop.set()
        outcomes = await asyncio.gather(*flipping)

        assert {code for joins in outcomes for _, code in joins} == {"SUCCESS"}
        for n, joins in enumerate(outcomes):
            last = last_success(joins)
            assert db.hget(f"lesson_student_{last}", f"flipper{n}") == flippers[n].sid
            others = [f"lesson_student_flip-{m}" for m in range(FLIP_LESSONS)]
            holding = [key for key in others if db.hexists(key, f"flipper{n}")]
            assert holding == [f"lesson_student_{last}"]
            assert db.hlen(f"lesson_seat_{last}") == 3
        assert len(db.hgetall(STUDENTS)) == 10 and db.hget(TEACHERS, "t1")
        assert joined.dropped() == []
        db.close()
