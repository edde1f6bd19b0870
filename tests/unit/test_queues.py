"""LeanQueue keeps asyncio.Queue's semantics (unbounded) while holding nothing when empty."""

from __future__ import annotations

import asyncio

import pytest

from protocol.queues import LeanQueue


@pytest.mark.gen_test
async def test_fifo_and_empty_state() -> None:
    queue = LeanQueue()
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    for item in (1, None, "x"):
        await queue.put(item)
    assert queue.qsize() == 3
    assert [await queue.get(), queue.get_nowait(), await queue.get()] == [1, None, "x"]
    assert queue.empty() and queue._items is None  # the buffer goes with the last item


@pytest.mark.gen_test
async def test_getters_are_woken_in_order() -> None:
    queue = LeanQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # both wait
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert await first == "a"
    assert await second == "b"
    assert queue._getters is None


@pytest.mark.gen_test
async def test_a_cancelled_getter_passes_its_wake_up_on() -> None:
    """As asyncio.Queue: an item put for a getter cancelled before it ran goes to the next."""
    queue = LeanQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it takes the item
    assert await second == "a"
    assert first.cancelled()


@pytest.mark.gen_test
async def test_get_times_out_without_losing_later_items() -> None:
    queue = LeanQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    assert queue._getters == []  # the timed-out getter is gone
    queue.put_nowait(1)
    assert await asyncio.wait_for(queue.get(), 1) == 1


@pytest.mark.gen_test
async def test_join_waits_for_every_task_done() -> None:
    queue = LeanQueue()
    await queue.join()  # nothing unfinished: returns at once
    queue.put_nowait(1)
    queue.put_nowait(2)
    joined = asyncio.create_task(queue.join())
    queue.get_nowait()
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        queue.task_done()
