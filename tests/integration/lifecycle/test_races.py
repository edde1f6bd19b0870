"""Disconnects racing joins: whatever the interleaving, Redis ends telling the truth.

The deterministic cases pause the join at a chosen step and disconnect there; the repeated ones
let real clients race.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support import SUCCESS
from tests.support.joins import LESSON, SEATS, Client, participant_token, request
from tests.support.lifecycle import DISCONNECT_FRAME, RawWebSocketClient, event_frame, presence

ROUNDS = 50
JITTER = 0.0002  # seconds added to the delay of each round of the leave-after-join race
SEAT_MAP = ({str(seat): "" for seat in range(1, SEATS + 1)}, False)
C1_LEFT = ({"sid": "", "client_id": "c1", "role": "student"}, True)


class WatchedLock(asyncio.Lock):
    """A lock that tells when someone starts waiting for it while it is held."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> bool:
        if self.locked():
            self.contended.set()
        return await super().acquire()


class Pause:
    """Wraps an async store method so that calls stop until released."""

    def __init__(self, method: Callable[..., Awaitable[Any]]) -> None:
        self._method = method
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, *args: Any) -> Any:
        self.entered.set()
        await self.release.wait()
        return await self._method(*args)


@pytest.mark.gen_test(timeout=30)
async def test_disconnect_during_the_redis_step_clears_what_the_join_writes(
    connect, lesson, redis_db, secret, services, rollcall, server_events
):
    client = await connect()
    sid = client.sid
    lock = rollcall.connections.get(sid).lock = WatchedLock()
    pause = services.presence.join = Pause(services.presence.join)

    await client.sio.emit("join_lesson", request(access_token=participant_token("c1", secret)))
    await pause.entered.wait()
    await client.close()
    await lock.contended.wait()  # the disconnect handler waits for the join's Redis step
    pause.release.set()
    joined = await server_events.wait_for("join", sid)
    left = await server_events.wait_for("disconnect", sid)

    assert joined.outcome == "DISCONNECTED"
    assert left.cleared == 2
    assert presence(redis_db) == {f"lesson_seat_{LESSON}": SEAT_MAP, "c1": C1_LEFT}
    assert not server_events.errors


@pytest.mark.gen_test(timeout=30)
async def test_disconnect_before_the_redis_step_writes_nothing(
    connect, lesson, redis_db, secret, services, server_events
):
    client = await connect()
    sid = client.sid
    pause = services.lessons.lookup = Pause(services.lessons.lookup)

    await client.sio.emit("join_lesson", request(access_token=participant_token("c1", secret)))
    await pause.entered.wait()
    await client.close()
    left = await server_events.wait_for("disconnect", sid)
    pause.release.set()
    joined = await server_events.wait_for("join", sid)

    assert (left.cleared, joined.outcome) == (0, "DISCONNECTED")
    assert presence(redis_db) == {}
    assert not server_events.errors


@pytest.mark.gen_test(timeout=120)
async def test_disconnect_racing_a_rejoin_of_the_same_client(
    connect, lesson, redis_db, secret, server_events
):
    """The old connection leaves while the new one joins, ROUNDS times: the new one wins."""
    token = participant_token("c1", secret)
    current: Client = await connect()
    assert await current.join(request(access_token=token)) == SUCCESS
    for _ in range(ROUNDS):
        old_sid, new = current.sid, await connect()

        _, ack = await asyncio.gather(current.close(), new.join(request(access_token=token)))
        await server_events.wait_for("disconnect", old_sid)

        assert ack == SUCCESS
        assert presence(redis_db) == {
            f"lesson_seat_{LESSON}": SEAT_MAP,
            "c1": ({"sid": new.sid, "client_id": "c1", "role": "student"}, True),
            f"lesson_student_{LESSON}": ({"c1": new.sid}, False),
        }
        current = new
    assert not server_events.errors


@pytest.mark.gen_test(timeout=120)
async def test_leaving_right_after_a_join_leaves_nothing_behind(
    url, lesson, redis_db, secret, server_events
):
    """The known hole of issue 4: a join still in flight when its client leaves. The DISCONNECT
    follows the join after a delay growing each round, so that it lands at every step of the
    join (before its lookup, during it, during the Redis step, after it)."""
    token = participant_token("c1", secret)
    for delay in range(ROUNDS):
        client = RawWebSocketClient(url)
        await client.connect()
        try:
            await client.send(event_frame("join_lesson", request(access_token=token)))
            await asyncio.sleep(delay * JITTER)
            await client.send(DISCONNECT_FRAME)
            joined = await server_events.wait_for("join", client.sid)
            await server_events.wait_for("disconnect", client.sid)
        finally:
            client.close()

        assert joined.outcome in ("SUCCESS", "DISCONNECTED")
        state = presence(redis_db)
        assert state.get("c1", C1_LEFT) == C1_LEFT
        assert f"lesson_student_{LESSON}" not in state
    outcomes = {r.outcome for r in server_events.records if r.event == "join"}
    assert not server_events.errors
    assert outcomes <= {"SUCCESS", "DISCONNECTED"}
