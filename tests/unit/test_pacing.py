"""protocol/pacing.py: a burst of calls runs a slice per loop iteration, in arrival order."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from protocol.pacing import PER_TURN, Pacer
from tests.support.ticker import Ticker


async def drained(pacer: Pacer) -> None:
    """Wait until everything queued on `pacer` so far has run."""
    done = asyncio.get_running_loop().create_future()
    pacer.call(done.set_result, None)
    await done


@pytest.mark.gen_test
async def test_a_burst_runs_at_most_per_turn_calls_an_iteration_in_order() -> None:
    pacer, ticker = Pacer(), Ticker()
    ran: list[tuple[int, int]] = []
    ticker.start()
    for n in range(5 * PER_TURN + 3):
        pacer.call(lambda n=n: ran.append((n, ticker.now)))
    await drained(pacer)
    ticker.stop()
    assert [n for n, _ in ran] == list(range(5 * PER_TURN + 3))
    per_iteration = Counter(tick for _, tick in ran)
    assert max(per_iteration.values()) == PER_TURN
    assert len(per_iteration) == 6


@pytest.mark.gen_test
async def test_calls_queued_while_a_slice_runs_go_after_those_before_them() -> None:
    pacer = Pacer(per_turn=2)
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        pacer.call(ran.append, "queued by first")

    pacer.call(first)
    pacer.call(ran.append, "second")
    pacer.call(ran.append, "third")
    await drained(pacer)
    assert ran == ["first", "second", "third", "queued by first"]


@pytest.mark.gen_test
async def test_arguments_are_passed() -> None:
    pacer = Pacer()
    seen: list[tuple[int, str]] = []
    pacer.call(lambda a, b: seen.append((a, b)), 1, "x")
    await drained(pacer)
    assert seen == [(1, "x")]


@pytest.mark.gen_test
async def test_flush_runs_everything_queued_at_once() -> None:
    pacer = Pacer(per_turn=1)
    ran: list[int] = []
    for n in range(10):
        pacer.call(ran.append, n)
    pacer.flush()
    assert ran == list(range(10))
    assert len(pacer) == 0
    await asyncio.sleep(0)  # the turn already scheduled finds nothing to do
    pacer.call(ran.append, 10)
    await drained(pacer)
    assert ran == list(range(11))


@pytest.mark.gen_test
async def test_a_call_that_raises_is_logged_once_and_the_rest_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pacer = Pacer()
    ran: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    pacer.call(ran.append, 1)
    pacer.call(broken)
    pacer.call(ran.append, 2)
    with caplog.at_level(logging.ERROR, logger="protocol.pacing"):
        await drained(pacer)
    assert ran == [1, 2]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError]


def test_per_turn_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Pacer(per_turn=0)
