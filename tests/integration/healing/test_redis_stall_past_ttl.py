"""Redis stalls (SIGSTOP) for longer than --liveness-ttl under two live server.py processes:
while it is stopped, both liveness keys lapse. Neither process is dead, and neither may be taken
for dead: no sweep, no dropped participant, no new id.

What keeps them: each process's heartbeat sent a renewal during the stall (it timed out, and the
connection was given up), and Redis, on resuming, runs what its sockets hold before anything
else: the renewals revive both keys before either process can look for dead ones. (A process
that really was frozen past the TTL is swept: test_freeze.py.)"""

from __future__ import annotations

import asyncio

import pytest

from store.keys import HELD_KEY, ROSTER_KEY
from tests.integration.healing.test_crash import STUDENTS, running, scrape
from tests.support.healing import (
    TTL,
    RejoiningParticipant,
    alive,
    held,
    naming,
    registered,
    wait_for,
)
from tests.support.joins import LESSON

#: the stall: past the liveness TTL (and the default --store-timeout, 2 s, after which the
#: processes give up on their renewals), with a margin for a loaded machine
STALL = 3 * TTL + 1.0


@pytest.mark.gen_test(timeout=90)
async def test_two_processes_outlive_a_redis_stall_longer_than_the_liveness_ttl(
    lesson, redis_db, redis_url, database_url, secret, redis_stall
):
    async with running(redis_url, database_url, secret, 2) as ((a, b), _):
        participants = {
            a: RejoiningParticipant(a.url, "on-a", secret),
            b: RejoiningParticipant(b.url, "on-b", secret),
        }
        try:
            for participant in participants.values():
                await participant.connect()
            await wait_for(lambda: all(p.sid for p in participants.values()), "both joins")
            ids = {process: process.process_id for process in (a, b)}

            redis_stall.begin()
            await asyncio.sleep(STALL)  # the stall itself: a stopped Redis signals nothing
            for process in (a, b):
                assert process.lines_with("heartbeat:"), "the stall went unnoticed"
            redis_stall.end()
            for process in (a, b):
                await wait_for(
                    lambda process=process: process.lines_with("Redis answers again"),
                    "the heartbeat's recovery",
                )

            assert registered(redis_db) == set(ids.values())
            for process, participant in participants.items():
                assert process.process_id == ids[process]
                assert alive(redis_db, process.process_id)
                assert not process.lines_with("swept") and not process.lines_with("starts over")
                assert await scrape(process.url, "rollcall_processes_swept_total") == 0
                # its participant stayed connected and joined once; its entries are held
                assert len(participant.sids) == 1 and participant.sid == participant.sids[0]
                assert set(held(redis_db, process.process_id).values()) == {participant.sid}
                assert {key for key, _ in naming(redis_db, participant.sid)} == {
                    STUDENTS, participant.client_id, ROSTER_KEY.format(lesson_id=LESSON),
                    HELD_KEY.format(process_id=process.process_id),
                }
            assert redis_db.hgetall(STUDENTS) == {
                p.client_id: p.sid for p in participants.values()
            }
        finally:
            for participant in participants.values():
                await participant.close()
