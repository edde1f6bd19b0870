"""SIGTERM on a real server.py with --handover-grace 0 (presence cleared at the stop, as before the
handover; tests/integration/lifecycle/test_handover.py has the default): every socket
disconnected with its presence cleared, Mixpanel flushed, exit 0, all within
server.SHUTDOWN_TIMEOUT."""

from __future__ import annotations

import asyncio
import signal

import pytest

from server import SHUTDOWN_TIMEOUT
from tests.integration.join_lesson.conftest import MIXPANEL_TOKEN
from tests.integration.node.client import NodeClient
from tests.support import SUCCESS, ServerProcess, free_port
from tests.support.joins import (
    EVENT_TIMEOUT,
    LESSON,
    SEATS,
    Client,
    participant_token,
    request,
    teacher_request,
)
from tests.support.lifecycle import presence


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_clears_every_presence_and_exits_0_in_time(
    lesson, redis_db, redis_url, database_url, secret, mixpanel_url, mixpanel_events
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = await ServerProcess.start(
        "--port", str(port), "--redis-url", redis_url, "--database-url", database_url,
        "--access-token-secret", secret, "--mixpanel-token", MIXPANEL_TOKEN,
        "--mixpanel-events-url", mixpanel_url, "--ping-interval", "0.3", "--ping-timeout", "0.5",
        "--handover-grace", "0",
    )
    node = await NodeClient.start()
    clients = [Client(url, "websocket"), Client(url, "polling")]
    try:
        teacher, student = [await client.connect() for client in clients]
        assert await teacher.join(teacher_request("t1", secret)) == SUCCESS
        # c1 was here before: its join is a reconnect, whose Mixpanel event shutdown must flush.
        redis_db.hset("c1", mapping={"sid": "", "client_id": "c1", "role": "student"})
        redis_db.expire("c1", 3600)
        assert await student.join(request(access_token=participant_token("c1", secret))) \
            == SUCCESS
        await node.connect(url)
        token = participant_token("c2", secret)
        assert await node.call("join_lesson", request(user_id="u2", access_token=token)) \
            == [SUCCESS]
        assert set(presence(redis_db)) == {
            f"lesson_seat_{LESSON}", f"lesson_teacher_{LESSON}", f"lesson_student_{LESSON}",
            "t1", "c1", "c2",
        }

        started = asyncio.get_running_loop().time()
        server.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(SHUTDOWN_TIMEOUT):
            returncode = await server.proc.wait()
        elapsed = asyncio.get_running_loop().time() - started

        # The Engine.IO session is closed (not a Socket.IO DISCONNECT): clients may reconnect.
        assert (await node.expect("disconnect"))["reason"] == "transport close"
        async with asyncio.timeout(EVENT_TIMEOUT):
            for client in clients:
                await client.sio.wait()  # returns once the client has seen its disconnect
    finally:
        await node.close()
        await server.stop()
        for client in clients:
            await client.close()

    assert returncode == 0, b"".join(server.lines).decode()
    assert elapsed < SHUTDOWN_TIMEOUT
    left = {"sid": ""}
    assert presence(redis_db) == {
        f"lesson_seat_{LESSON}": ({str(seat): "" for seat in range(1, SEATS + 1)}, False),
        "t1": ({"lesson_id": LESSON}, False),
        "c1": ({**left, "client_id": "c1", "role": "student"}, True),
        "c2": ({**left, "client_id": "c2", "role": "student"}, True),
    }
    assert [(e["event"], e["properties"]["distinct_id"]) for e in mixpanel_events] == [
        ("reconnect", "c1")
    ]
