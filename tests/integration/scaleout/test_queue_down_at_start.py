"""A process started while its message-queue Redis is down: it serves, delivering its own emits
to its own clients; once that Redis is up it subscribes by itself, and from then on receives
what other processes (here python-socketio's write-only manager, as the platform's services
emit) publish. The queue is a redis-server of the test's own, not yet started when the process
starts."""

from __future__ import annotations

import logging

import pytest
import socketio

from tests.support import free_port
from tests.support.joins import LESSON
from tests.support.scaleout import DedicatedRedis, Listener, Subscriptions, in_process, queue_config

TRANSPORT_LOGGER = "protocol.redis_transport"


@pytest.mark.gen_test(timeout=60)
async def test_a_process_started_without_its_queue_serves_then_subscribes_once_it_is_up(
    config, services, secret, lesson, caplog
):
    queue_port = free_port()  # nothing listens there yet
    queue_url = f"redis://127.0.0.1:{queue_port}/0"
    subscriptions = Subscriptions()
    logger = logging.getLogger(TRANSPORT_LOGGER)
    logger.addHandler(subscriptions)
    queue = remote = None
    here: Listener | None = None
    try:
        with caplog.at_level(logging.INFO, logger=TRANSPORT_LOGGER):
            async with in_process(queue_config(config, queue_url), services) as (url, process):
                # it started, after waiting redis_transport.SUBSCRIBE_TIMEOUT, and said why
                assert [r for r in caplog.records if "not subscribed yet" in r.getMessage()]
                assert subscriptions.count == 0
                here = await Listener(url, "websocket").connect()
                await here.join_as("c1", secret)

                await process.sio.emit("local", {"n": 1}, room=LESSON)
                assert await here.next() == ("local", [{"n": 1}])

                queue = await DedicatedRedis.start(queue_port)
                await subscriptions.reach(1)
                remote = socketio.AsyncRedisManager(queue_url, write_only=True)
                await remote.emit("relayed", {"n": 2}, room=LESSON)
                assert await here.next() == ("relayed", [{"n": 2}])
                # and its own emits still reach its clients once (not again through the queue)
                await process.sio.emit("local", {"n": 3}, room=LESSON)
                await remote.emit("sentinel", None, room=LESSON)
                assert [await here.next(), await here.next()] == [
                    ("local", [{"n": 3}]), ("sentinel", []),
                ]
                await here.close()
    finally:
        if here is not None:
            await here.close()
        logger.removeHandler(subscriptions)
        if remote is not None and remote.redis is not None:
            await remote.redis.aclose()
        if queue is not None:
            await queue.stop()
