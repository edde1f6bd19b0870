"""One heartbeat of handlers/healing.py against the real Redis, driven directly (tick()): what it
does with bookkeeping keys that are not what it wrote, and with a Redis that does not answer."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis

from handlers import healing
from handlers.connections import Connections
from handlers.healing import Sweeper
from store.keys import HELD_KEY, PROCESSES_KEY, SWEPT_KEY
from store.liveness import Liveness
from store.presence import SWEPT_TTL, ParticipantEntry, PresenceStore, held_field
from tests.support import free_port
from tests.support.healing import alive, registered


async def no_connections_to_drop() -> None:
    raise AssertionError("this process was never swept")


def sweeper_of(store: PresenceStore) -> Sweeper:
    return Sweeper(Liveness(store, 5.0), Connections(store), no_connections_to_drop, 1.0)


@pytest.mark.gen_test(timeout=20)
async def test_a_broken_dead_process_does_not_stop_the_sweep_of_the_others(
    redis_db: redis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
):
    store = PresenceStore.open(redis_url, timeout=2.0)
    try:
        redis_db.sadd(PROCESSES_KEY, "broken", "dead")
        redis_db.hset(SWEPT_KEY.format(process_id="broken"), "not", "a string")
        redis_db.hset("lesson_student_L", "c1", "s1")
        redis_db.hset(HELD_KEY.format(process_id="dead"), held_field(ParticipantEntry("L", "c1")),
                      "s1")

        with caplog.at_level(logging.INFO, logger=healing.log.name):
            await sweeper_of(store).tick()

        assert not redis_db.exists("lesson_student_L")
        assert registered(redis_db) == {"broken", store.process_id}
        assert alive(redis_db, store.process_id)
        messages = [record.getMessage() for record in caplog.records]
        assert "sweep of broken failed" in messages
        assert "swept dead process" in messages
    finally:
        await store.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_heartbeat_without_redis_says_so_once(caplog: pytest.LogCaptureFixture):
    store = PresenceStore.open(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    sweeper = sweeper_of(store)
    try:
        with caplog.at_level(logging.INFO, logger=healing.log.name):
            await sweeper.tick()
            await sweeper.tick()
        logged = [
            (r.levelno, r.getMessage()) for r in caplog.records if r.name == healing.log.name
        ]
        assert len(logged) == 1
        assert logged[0][0] == logging.WARNING and logged[0][1].startswith("heartbeat: redis")
    finally:
        await store.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_process_that_could_not_renew_for_a_day_takes_itself_as_swept(
    redis_db: redis.Redis, redis_url: str
):
    """Its swept key may have expired meanwhile: it must not trust Redis to say so."""
    store = PresenceStore.open(redis_url, timeout=2.0)
    dropped: list[str] = []

    async def drop() -> None:
        dropped.append(store.process_id)

    sweeper = Sweeper(Liveness(store, 5.0), Connections(store), drop, 1.0)
    try:
        await sweeper.tick()
        old = store.process_id
        sweeper._renewed = asyncio.get_running_loop().time() - SWEPT_TTL - 1  # a day frozen

        await sweeper.tick()

        assert dropped == [old] and store.process_id != old
        assert alive(redis_db, store.process_id)
    finally:
        await store.close()
