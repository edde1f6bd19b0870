"""Redis under Sentinel (a primary, a replica, three Sentinels, down-after 1 s), its primary
SIGKILLed under a live lesson: rollcall follows the new primary without a restart, a join meeting
the failover answers UNAVAILABLE or succeeds, and the keys of every live client are on the new
primary. Real redis-server processes of the test's own, a real server.py process at the default
liveness flags, real python-socketio clients."""

from __future__ import annotations

import asyncio
import pathlib
import signal
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.integration.healing.test_crash import scrape
from tests.integration.healing.test_reassertion import (
    DEFAULT_LIVENESS,
    FLIP_LESSONS,
    FLIPPERS,
    PARTICIPANTS,
    RETRY_STEP,
    SEAT_MAP,
    STUDENTS,
    TEACHERS,
    flip,
    last_success,
    lesson_on,
    presence,
    without,
)
from tests.support.healing import held, wait_for
from tests.support.joins import Client, participant_token, request
from tests.support.lessons import add_lesson
from tests.support.redis_servers import sentinel_deployment

SUCCESS = {"status": "SUCCESS", "data": {}}
#: the issue's bound for a new join to succeed after the primary was killed
JOIN_WITHIN = 30.0
#: how long the Sentinels may take to know the replica and each other after they started
DISCOVERY_WITHIN = 30.0


async def join_until_success(client: Client, client_id: str, secret: str) -> list[str]:
    """Join as `client_id` until it succeeds (at most JOIN_WITHIN s); the codes it met before."""
    token = participant_token(client_id, secret)
    codes = []
    async with asyncio.timeout(JOIN_WITHIN):
        while (ack := await client.join(request(client_id, access_token=token))) != SUCCESS:
            codes.append(ack["data"]["code"])
            await asyncio.sleep(RETRY_STEP)
    return codes


@pytest.mark.gen_test(timeout=180)
async def test_a_primary_killed_under_a_live_lesson(
    lesson, database, database_url, secret, tmp_path: pathlib.Path
):
    for n in range(FLIP_LESSONS):
        add_lesson(database, f"flip-{n}", 3)
    async with sentinel_deployment(tmp_path) as deployment:
        await wait_for(deployment.replicas_seen, "the Sentinels' discovery", DISCOVERY_WITHIN)
        url = deployment.url()
        async with lesson_on(
            url, database_url, secret, *DEFAULT_LIVENESS, "--message-queue", url
        ) as (process, joined):
            await wait_for(lambda: process.lines_with("message queue subscribed"), "pub/sub")
            await joined.join(process.url, secret)
            primary, replica = deployment.primary.client(), deployment.replica.client()
            expected = presence(primary)
            assert len(expected[STUDENTS]) == PARTICIPANTS and TEACHERS in expected
            await wait_for(lambda: presence(replica) == expected, "the replica to catch up")
            # a replica that lagged: it lacks the last writes (deleted on it alone), which the
            # re-assertion must bring back on it once it is the primary
            replica.config_set("replica-read-only", "no")
            replica.delete(STUDENTS, SEAT_MAP, "c0")

            flippers = [await joined.open(process.url) for _ in range(FLIPPERS)]
            stop = asyncio.Event()
            flipping = [
                asyncio.ensure_future(flip(client, f"flipper{n}", secret, stop))
                for n, client in enumerate(flippers)
            ]

            killed = time.monotonic()
            await deployment.primary.kill()
            newcomer = await joined.open(process.url)
            codes = await join_until_success(newcomer, "newcomer", secret)
            joined_after = time.monotonic() - killed
            assert set(codes) <= {"UNAVAILABLE"}
            assert deployment.master_port() == deployment.replica.port

            def all_back() -> bool:
                state = presence(replica)
                students = state.get(STUDENTS, {})
                return (
                    students.pop("newcomer", None) == newcomer.sid
                    and state.pop("newcomer", {}).get("sid") == newcomer.sid
                    and all(
                        state.get(key) == value
                        for key, value in expected.items()
                        if not key.startswith("rollcall:roster:")
                    )
                )

            await wait_for(all_back, "every live client's keys on the new primary", JOIN_WITHIN)
            back_after = time.monotonic() - killed
            print(f"new join {joined_after:.2f} s, every key {back_after:.2f} s after the kill")
            stop.set()
            outcomes = await asyncio.gather(*flipping)
            # each join meeting the failover succeeded or answered UNAVAILABLE, and none was
            # half-written: where a lesson holds a participant, its seat map exists; and each
            # flipper is in the lesson of its last successful join
            assert {code for joins in outcomes for _, code in joins} == {"SUCCESS", "UNAVAILABLE"}
            await wait_for(
                lambda: all(
                    replica.hget(f"lesson_student_{last_success(joins)}", f"flipper{n}")
                    == flippers[n].sid
                    for n, joins in enumerate(outcomes)
                ),
                "the flippers' last lessons",
            )
            for n in range(FLIP_LESSONS):
                if replica.exists(f"lesson_student_flip-{n}"):
                    assert replica.hlen(f"lesson_seat_flip-{n}") == 3
            # the teacher's entry, and each participant's entry and roster record
            flipped = 2 * FLIPPERS
            assert len(held(replica, process.process_id)) == 1 + 2 * (PARTICIPANTS + 1) + flipped
            [line] = process.lines_with("presence re-asserted")
            assert "reason=server_changed" in line
            response = await AsyncHTTPClient().fetch(process.url + "/healthz", raise_error=False)
            assert response.code == 200
            assert joined.dropped() == []
            assert await scrape(process.url, "rollcall_redis_primary_switches_total") == 1
            # the message queue resubscribed on the new primary
            await wait_for(
                lambda: len(process.lines_with("message queue subscribed")) == 2,
                "the message queue on the new primary",
            )
            primary.close()
            replica.close()


@pytest.mark.gen_test(timeout=180)
async def test_a_manual_failover_demotes_the_primary_under_a_live_lesson(
    lesson, database_url, secret, tmp_path: pathlib.Path
):
    """SENTINEL FAILOVER: the old primary stays up, demoted to a replica of the new one (which
    refuses writes): rollcall must write to the new primary, not to the address it knew."""
    async with sentinel_deployment(tmp_path) as deployment:
        await wait_for(deployment.replicas_seen, "the Sentinels' discovery", DISCOVERY_WITHIN)
        async with lesson_on(deployment.url(), database_url, secret, *DEFAULT_LIVENESS) as (
            process,
            joined,
        ):
            await joined.join(process.url, secret, participants=10)
            old, new = deployment.primary.client(), deployment.replica.client()
            expected = presence(old)
            await wait_for(lambda: presence(new) == expected, "the replica to catch up")

            with deployment.sentinels[0].client() as sentinel:
                sentinel.execute_command("SENTINEL", "FAILOVER", "rollcall")
            await wait_for(
                lambda: (
                    deployment.master_port() == deployment.replica.port
                    and old.info("replication")["role"] == "slave"
                ),
                "the failover",
                JOIN_WITHIN,
            )
            newcomer = await joined.open(process.url)
            codes = await join_until_success(newcomer, "newcomer", secret)
            assert set(codes) <= {"UNAVAILABLE"}
            assert new.hget(STUDENTS, "newcomer") == newcomer.sid
            await wait_for(
                lambda: (
                    new.info("server")["run_id"]
                    in "".join(process.lines_with("another Redis server answers"))
                ),
                "the heartbeat to see the new primary",
            )
            assert without(presence(new), "newcomer") == expected
            response = await AsyncHTTPClient().fetch(process.url + "/healthz", raise_error=False)
            assert response.code == 200
            assert joined.dropped() == []
            old.close()
            new.close()


@pytest.mark.gen_test(timeout=120)
async def test_a_stalled_sentinel_first_in_the_url_costs_a_join_nothing(
    lesson, database_url, secret, tmp_path: pathlib.Path
):
    """The Sentinels are asked in turn: one that accepts connections but never answers (a paused
    VM) must not hold every connection to the primary until the store timeout."""
    async with sentinel_deployment(tmp_path) as deployment:
        await wait_for(deployment.replicas_seen, "the Sentinels' discovery", DISCOVERY_WITHIN)
        stalled = deployment.sentinels[0].proc
        assert stalled is not None
        stalled.send_signal(signal.SIGSTOP)
        try:
            async with lesson_on(deployment.url(), database_url, secret) as (process, joined):
                client = await joined.participant(process.url, "c1", secret)
                with deployment.primary.client() as primary:
                    assert primary.hget(STUDENTS, "c1") == client.sid
        finally:
            stalled.send_signal(signal.SIGCONT)
