"""LeanQueue keeps asyncio.Queue's semantics (unbounded) while holding nothing when empty."""

from __future__ import annotations

import asyncio

import pytest
from engineio.packet import CLOSE, MESSAGE, NOOP, OPEN, Packet

from protocol.queues import LeanQueue, Outbox
from protocol.session import Session


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


class Server:
    """What an Outbox needs of its server, recording what it is told."""

    ping_interval = 0.3
    ping_interval_grace_period = 0.0
    ping_timeout = 0.2
    max_session_output = 100

    def __init__(self) -> None:
        self.opened: list[Outbox] = []
        self.overflowed: list[str] = []

    def outbox_opened(self, outbox: Outbox) -> None:
        self.opened.append(outbox)

    def output_overflowed(self, sid: str) -> None:
        self.overflowed.append(sid)


class Writer:
    def __init__(self, takes: bool) -> None:
        self.takes = takes
        self.written: list[Packet] = []

    def write(self, pkt: Packet) -> bool:
        if self.takes:
            self.written.append(pkt)
        return self.takes


def opened(server: Server) -> Outbox:
    outbox = Outbox(server)
    outbox.put_nowait(Packet(OPEN, {"sid": "s1", "pingInterval": 0, "pingTimeout": 0}))
    return outbox


def test_the_open_packet_names_the_session_in_exact_milliseconds() -> None:
    server = Server()
    outbox = opened(server)
    assert server.opened == [outbox] and outbox.sid == "s1"
    data = outbox.get_nowait().data
    assert (data["pingInterval"], data["pingTimeout"]) == (300, 200)


def test_past_its_bound_the_backlog_goes_and_only_the_close_is_held() -> None:
    server = Server()
    outbox = opened(server)
    outbox.get_nowait()
    outbox.put_nowait(Packet(MESSAGE, "x" * 101))
    assert server.overflowed == ["s1"] and outbox.empty() and outbox.size == 0
    outbox.put_nowait(Packet(MESSAGE, "more"))
    outbox.put_nowait(Packet(CLOSE))
    assert [p.packet_type for p in [outbox.get_nowait()]] == [CLOSE] and outbox.empty()


@pytest.mark.gen_test
async def test_a_poll_during_an_upgrade_gets_a_noop_and_leaves_what_is_held() -> None:
    outbox = opened(Server())
    outbox.get_nowait()
    session = Session("s1")
    session.websocket_opened(upgrade=True)
    outbox.session = session
    outbox.put_nowait(Packet(MESSAGE, "for the websocket"))
    assert (await outbox.get()).packet_type == NOOP
    with pytest.raises(asyncio.QueueEmpty):
        outbox.get_nowait()
    assert outbox.qsize() == 1


def test_a_writer_that_takes_a_packet_gets_it_and_one_that_waits_leaves_it_held() -> None:
    outbox = opened(Server())
    outbox.get_nowait()
    outbox.writer = Writer(takes=True)
    outbox.put_nowait(Packet(MESSAGE, "now"))
    assert [p.data for p in outbox.writer.written] == ["now"] and outbox.empty()
    outbox.writer = Writer(takes=False)
    outbox.put_nowait(Packet(MESSAGE, "later"))
    assert outbox.get_nowait().data == "later"


@pytest.mark.gen_test
async def test_nothing_waits_for_an_outbox_to_drain() -> None:
    outbox = opened(Server())
    await asyncio.wait_for(outbox.join(), 1)  # the OPEN is still held
    outbox.task_done()
