"""Redis stalls while clients disconnect: their leaves answer UNAVAILABLE, are kept (bounded,
counted) and retried once Redis answers again, so their fields clear without a rejoin. The stall
is a SIGSTOP of the Redis that `make test` started for this run (see conftest.RedisStall)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

import handlers.connections
import metrics
from config import Config
from tests.integration.healing.test_crash import STUDENTS, running, scrape
from tests.support.healing import alive, registered, swept_by, wait_for
from tests.support.joins import LESSON, participant_token, request

SUCCESS = {"status": "SUCCESS", "data": {}}
#: the stall of the issue: shorter than the default liveness TTL, so that nobody is swept
STALL = 6.0
DEFAULT_TTL = str(Config().liveness_ttl)


@pytest.mark.gen_test(timeout=60)
async def test_disconnects_during_a_6_s_redis_stall_are_cleared_after_it(
    lesson, redis_db, redis_url, database_url, secret, redis_stall
):
    flags = ("--liveness-ttl", DEFAULT_TTL, "--liveness-interval", "0.5")
    async with running(redis_url, database_url, secret, 2, *flags) as ((a, b), clients):
        try:
            leaving = [await clients.participant(p.url, f"gone-{n}", secret)
                       for n, p in enumerate((a, b))]
            staying = [await clients.participant(p.url, f"here-{n}", secret)
                       for n, p in enumerate((a, b))]
            loop = asyncio.get_running_loop()

            redis_stall.begin()
            stalled_at = loop.time()
            await asyncio.gather(*(client.close() for client in leaving))
            for p in (a, b):
                await wait_for(lambda p=p: p.lines_with("outcome=UNAVAILABLE"), "a failed leave")
                assert await scrape(p.url, "rollcall_leaves_pending") == 1
            await asyncio.sleep(STALL - (loop.time() - stalled_at))  # the stall itself
            redis_stall.end()
            ended_at = loop.time()

            await wait_for(
                lambda: redis_db.hgetall(STUDENTS) == {
                    f"here-{n}": client.sid for n, client in enumerate(staying)
                },
                "the kept leaves to clear their fields",
            )
            assert loop.time() - ended_at < 30
            for n in range(2):
                assert redis_db.hget(f"gone-{n}", "sid") == ""
            for p in (a, b):
                await wait_for(lambda p=p: p.lines_with("leave retried"), "the retry's line")
                assert await scrape(p.url, "rollcall_leaves_pending") == 0
                # nobody was taken for dead
                assert alive(redis_db, p.process_id) and swept_by(redis_db, p.process_id) is None
            assert registered(redis_db) == {a.process_id, b.process_id}
        finally:
            redis_stall.end()


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, liveness_interval=0.2)


@pytest.mark.gen_test(timeout=30)
async def test_kept_leaves_are_bounded_counted_and_handed_over_on_retry(
    rollcall, connect, lesson, redis_db, secret, redis_stall, server_events, monkeypatch
):
    monkeypatch.setattr(handlers.connections, "MAX_PENDING_LEAVES", 3)
    connections = rollcall.connections

    async def participant(client_id: str):
        client = await connect()
        token = participant_token(client_id, secret)
        assert await client.join(request(user_id=client_id, access_token=token)) == SUCCESS
        return client

    old_tab = await participant("c0")
    new_tab = await participant("c0")  # owns c0's presence now
    first, c2, c3 = [await participant(f"c{n}") for n in (1, 2, 3)]
    dropped = metrics.REGISTRY.get_sample_value("rollcall_leaves_dropped_total")
    await rollcall.sweeper.start()
    try:
        redis_stall.begin()
        first_sid = first.sid
        await first.close()
        assert (await server_events.wait_for("disconnect", first_sid)).outcome == "UNAVAILABLE"
        sids = [client.sid for client in (new_tab, c2, c3)]
        await asyncio.gather(new_tab.close(), c2.close(), c3.close())
        for sid in sids:
            assert (await server_events.wait_for("disconnect", sid)).outcome == "UNAVAILABLE"
        # the oldest, c1's, made room for the last
        assert {leave.sid for leave in connections.pending} == set(sids)
        assert metrics.REGISTRY.get_sample_value("rollcall_leaves_dropped_total") == dropped + 1
        redis_stall.end()

        await wait_for(lambda: not connections.pending, "the kept leaves to be retried")
        # c0's entry went to its remaining tab, as a disconnect would have done
        assert redis_db.hget(f"lesson_student_{LESSON}", "c0") == old_tab.sid
        assert redis_db.hget("c0", "sid") == old_tab.sid
        for client_id in ("c2", "c3"):
            assert redis_db.hget(f"lesson_student_{LESSON}", client_id) is None
            assert redis_db.hget(client_id, "sid") == ""
    finally:
        redis_stall.end()
        await rollcall.sweeper.stop()
