"""A rollcall process frozen (SIGSTOP: a stalled VM, a debugger, a host swapping) is as dead to
its clients as a killed one. If a survivor swept it meanwhile, it writes nothing back when it
wakes up: its join script refuses, and it drops its connections and starts over under a new id.
If nobody swept it, it carries on."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from store.liveness import Claim, Liveness
from store.presence import PresenceStore
from tests.integration.healing.test_crash import STUDENTS, running, scrape, swept
from tests.support.healing import (
    Rollcall,
    alive,
    held,
    join_frame,
    raw_participant,
    registered,
    swept_by,
    wait_for,
)
from tests.support.joins import EVENT_TIMEOUT, participant_token, request
from tests.support.lifecycle import RawWebSocketClient

#: a heartbeat far above the freeze, so that the raw client (which never answers pings) and the
#: python-socketio clients outlive it
SLOW_PINGS = ("--ping-interval", "30", "--ping-timeout", "30")


def n_lines(lines: list[str], count: int) -> list[str] | None:
    """`lines` once there are `count` of them (more would be a failure of its own)."""
    assert len(lines) <= count, lines
    return lines if len(lines) == count else None


async def frames_until_closed(client: RawWebSocketClient) -> list[str]:
    frames = []
    async with asyncio.timeout(EVENT_TIMEOUT):
        while (frame := await client.receive()) is not None:
            frames.append(frame)
    return frames


@pytest.mark.gen_test(timeout=60)
async def test_a_frozen_process_swept_meanwhile_writes_nothing_back(
    lesson, redis_db, redis_url, database_url, secret
):
    frozen = await Rollcall.start(redis_url, database_url, secret, *SLOW_PINGS)
    raw = RawWebSocketClient(frozen.url)
    c1 = None
    async with running(redis_url, database_url, secret, 1) as ((survivor,), clients):
        try:
            c1 = await raw_participant(frozen.url, "c1", secret)
            await raw.connect()
            old = frozen.process_id
            assert held(redis_db, old)

            frozen.server.proc.send_signal(signal.SIGSTOP)
            # joins waiting in its socket when it wakes up: a newcomer, and c1 again
            await raw.send(join_frame(0, "c9", secret), join_frame(1, "c1", secret))
            await wait_for(lambda: swept(redis_db, old), "the sweep of the frozen process")
            assert redis_db.hget("c1", "sid") == "" and not redis_db.exists(STUDENTS)
            assert swept_by(redis_db, old) == survivor.process_id

            frozen.server.proc.send_signal(signal.SIGCONT)
            frames = await frames_until_closed(raw)  # dropped, joins answered or not
            await wait_for(lambda: frozen.lines_with("starts over as"), "its fresh start")
            new = frozen.process_id
            await wait_for(lambda: alive(redis_db, new), "its new liveness key")

            # Both waiting joins were read and handled: each refused as swept (UNAVAILABLE) or
            # cut short by the drop of its connection (DISCONNECTED), never a SUCCESS; an ack
            # can only be an UNAVAILABLE one.
            outcomes = [
                line.partition(" outcome=")[2].split()[0]
                for line in await wait_for(
                    lambda: n_lines(frozen.lines_with(f"event=join sid={raw.sid} "), 2),
                    "both waiting joins to be handled",
                )
            ]
            assert set(outcomes) <= {"UNAVAILABLE", "DISCONNECTED"}, outcomes
            acks = [json.loads(frame[3:]) for frame in frames if frame.startswith("43")]
            assert [ack[0]["data"]["code"] for ack in acks] == ["UNAVAILABLE"] * len(acks), frames
            assert len(acks) <= outcomes.count("UNAVAILABLE"), (frames, outcomes)
            assert not redis_db.exists(STUDENTS, "c9")
            assert redis_db.hget("c1", "sid") == ""
            assert not alive(redis_db, old) and registered(redis_db) == {
                new, survivor.process_id
            }
            # c1 was dropped too
            await frames_until_closed(c1)
            [gone] = await wait_for(
                lambda: frozen.lines_with(f"event=disconnect sid={c1.sid}"), "c1's disconnect"
            )
            assert 'reason="server disconnect"' in gone
            assert len(frozen.lines_with("was swept by a survivor")) == 1
            lapses = "rollcall_liveness_lapses_total"
            assert await scrape(frozen.url, lapses, outcome="swept") == 1

            # it serves again, under its new id
            c10 = await clients.participant(frozen.url, "c10", secret)
            assert redis_db.hgetall(STUDENTS) == {"c10": c10.sid}
            assert list(held(redis_db, new).values()) == [c10.sid, c10.sid]  # entry, roster
        finally:
            for client in (raw, c1):
                if client is not None:
                    client.close()
            frozen.server.proc.send_signal(signal.SIGCONT)
            await frozen.stop()


@pytest.mark.gen_test(timeout=30)
async def test_a_join_refused_as_swept_answers_unavailable_then_the_process_starts_over(
    rollcall, services, connect, lesson, redis_db, redis_url, secret, server_events
):
    """In-process, so that the join surely reaches Redis before the heartbeat notices."""
    old = services.presence.process_id
    client = await connect()
    sid = client.sid  # the client forgets it once dropped, maybe before the test looks
    survivor = PresenceStore.open(redis_url, timeout=2.0)
    try:
        await Liveness(survivor, 5.0).renew()
        assert await Liveness(survivor, 5.0).claim(old) is Claim.CLAIMED  # it never renewed

        token = participant_token("c1", secret)
        ack = await client.join(request(user_id="c1", access_token=token))
        assert ack["data"]["code"] == "UNAVAILABLE"
        assert not redis_db.exists(STUDENTS, "c1")
        assert services.presence.swept.is_set()

        sid = client.sid  # None once the client has seen the drop
        await rollcall.sweeper.start()
        dropped = await server_events.wait_for("disconnect", sid)
        assert dropped.reason == "server disconnect"
        new = services.presence.process_id
        assert new != old and alive(redis_db, new)
        again = await connect()
        assert await again.join(request(user_id="c1", access_token=token)) == {
            "status": "SUCCESS", "data": {}
        }
        assert redis_db.hgetall(STUDENTS) == {"c1": again.sid}
        assert list(held(redis_db, new).values()) == [again.sid, again.sid]  # entry, roster
    finally:
        await rollcall.sweeper.stop()
        await survivor.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_frozen_process_nobody_swept_carries_on(
    lesson, redis_db, redis_url, database_url, secret
):
    async with running(redis_url, database_url, secret, 0) as (_, clients):
        alone = await Rollcall.start(redis_url, database_url, secret, *SLOW_PINGS)
        try:
            c1 = await clients.participant(alone.url, "c1", secret)
            pid = alone.process_id

            alone.server.proc.send_signal(signal.SIGSTOP)
            await wait_for(lambda: not alive(redis_db, pid), "its liveness to lapse")
            alone.server.proc.send_signal(signal.SIGCONT)
            await wait_for(lambda: alone.lines_with("had lapsed"), "its revival")

            assert alive(redis_db, pid) and alone.process_id == pid
            assert redis_db.hgetall(STUDENTS) == {"c1": c1.sid}
            assert c1.sio.connected
            lapses = "rollcall_liveness_lapses_total"
            assert await scrape(alone.url, lapses, outcome="revived") == 1
            assert await scrape(alone.url, lapses, outcome="swept") == 0
        finally:
            alone.server.proc.send_signal(signal.SIGCONT)
            await alone.stop()
