"""A crowd of WebSocket sessions ending at once (a school's devices leaving together): their
closes run a slice per loop iteration (protocol/pacing.py), in arrival order, and a stop in the
middle of them loses none."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from protocol import Server
from protocol.pacing import PER_TURN
from tests.integration.protocol.conftest import AUTH_GREETING
from tests.support.raw_peers import RECV_TIMEOUT, RawWebSocket
from tests.support.ticker import Ticker

PING, PONG = "2", "3"


@pytest.fixture
def server_options() -> dict[str, Any]:
    """No PING while the crowd gathers: a device that stopped reading would be closed for its
    late PONG before it leaves."""
    return {"ping_interval": 30}


#: more sessions than one loop iteration closes (protocol/pacing.py's PER_TURN)
CROWD = 3 * PER_TURN


async def a_crowd(url: str, size: int = CROWD) -> list[RawWebSocket]:
    """`size` sessions connected to "/", on bare sockets: closing one ends its TCP connection at
    once, with no closing handshake, as a device that goes away does."""

    async def next_frame(raw: RawWebSocket) -> str:
        while (frame := await raw.recv()) == PING:
            await raw.send(PONG)
        return frame

    async def device() -> RawWebSocket:
        raw = await RawWebSocket.open(url)
        assert (await raw.recv()).startswith("0{")
        await raw.send("40")
        assert (await next_frame(raw)).startswith("40{")
        assert await next_frame(raw) == AUTH_GREETING
        return raw

    return list(await asyncio.gather(*(device() for _ in range(size))))


class Departures:
    """The test server's "/" disconnect handler replaced by one noting each reason and the loop
    iteration the handler started in."""

    def __init__(self, sio: Server, ticker: Ticker) -> None:
        self.seen: list[tuple[str, int]] = []
        self.first = asyncio.Event()
        self.all = asyncio.Event()
        self._ticker = ticker
        sio.on("disconnect", self.disconnect)

    async def disconnect(self, sid: str, reason: str) -> None:
        self.seen.append((reason, self._ticker.now))
        self.first.set()
        if len(self.seen) == CROWD:
            self.all.set()


@pytest.mark.gen_test
async def test_a_crowd_leaving_at_once_is_closed_a_slice_per_loop_iteration(
    url: str, sio: Server
) -> None:
    """A school's devices leaving together: the sessions close in arrival order, at most
    PER_TURN in one loop iteration, so the loop keeps polling (a /healthz probe, the PONGs of
    everyone else) meanwhile."""
    peers = await a_crowd(url)
    ticker = Ticker()
    departures = Departures(sio, ticker)
    ticker.start()
    for peer in peers:
        peer.close()
    await asyncio.wait_for(departures.all.wait(), RECV_TIMEOUT)
    ticker.stop()
    assert {reason for reason, _ in departures.seen} == {"transport close"}
    per_iteration = Counter(tick for _, tick in departures.seen)
    assert max(per_iteration.values()) <= PER_TURN
    assert not sio.eio.sessions


@pytest.mark.gen_test
async def test_a_stop_closes_the_sessions_still_paced_as_their_clients_left(
    url: str, sio: Server
) -> None:
    """A stop while a crowd's closes wait their turn: those sessions end with their own reason
    (the client left), not as closed by the server, and none is left behind."""
    peers = await a_crowd(url)
    departures = Departures(sio, Ticker())
    for peer in peers:
        peer.close()
    async with asyncio.timeout(RECV_TIMEOUT):
        await departures.first.wait()  # the next iteration: the next slice waits its turn
    paced = len(sio.eio.ending)
    left = len(departures.seen)
    assert paced > 0  # the stop comes while closes wait their turn
    await sio.close_all()
    assert len(departures.seen) == CROWD
    reasons = Counter(reason for reason, _ in departures.seen)
    assert reasons["transport close"] >= left + paced
    assert not sio.eio.sessions


@pytest.mark.gen_test
async def test_the_engine_shutdown_cancels_a_close_whose_disconnect_handler_hangs(
    url: str, sio: Server
) -> None:
    """A paced close still running when the engine shuts down (its disconnect handler waits
    on a store that never answers) is cancelled, not awaited: a stop stays bounded."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def disconnect(sid: str, reason: str) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sio.on("disconnect", disconnect)
    (device,) = await a_crowd(url, 1)
    device.close()
    async with asyncio.timeout(RECV_TIMEOUT):
        await started.wait()
        await sio.shutdown()
    assert cancelled.is_set()
