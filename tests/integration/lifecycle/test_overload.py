"""A real server.py and its open-file limit: raised to the hard limit at start-up (and logged),
and, when a flood of connections still exhausts it, accept() paused instead of spun: no busy
loop, a bounded log, the held connections kept, and new clients served once the flood ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket

import pytest
import tornado.httpclient

from tests.support import SUCCESS, ServerProcess, free_port
from tests.support.joins import Client, participant_token, request, teacher_request
from tests.support.peers import until
from web.accept import MAX_PAUSE
from web.openfiles import HEADROOM

#: (soft, hard) open-file limit server.py starts under, and what it must raise it to
START_LIMIT = (256, 1024)
#: the open-file limit of the flooded server, and the raw connections that flood it
FLOOD_LIMIT = 160
FLOOD = 2 * FLOOD_LIMIT
#: how long the flooded server's CPU is measured, and the share of one core it may use: a loop
#: that retried accept() at once would take the whole core
MEASURE_SECONDS = 2.0
MAX_CPU_SHARE = 0.1
#: the most warnings about failed accepts the flood may cause in a test this short
MAX_ACCEPT_WARNINGS = 2
ACCEPT_WARNING = b"accept() failed"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def server_args(port: int, redis_url: str, database_url: str, secret: str) -> list[str]:
    return [
        "--port", str(port), "--redis-url", redis_url, "--database-url", database_url,
        "--access-token-secret", secret, "--ping-interval", "0.3", "--ping-timeout", "0.5",
    ]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def soft_open_files(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as file:
        line = next(line for line in file if line.startswith("Max open files"))
    return int(line.split()[3])


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.gen_test(timeout=30)
async def test_start_up_raises_the_soft_limit_to_the_hard_one_and_logs_both(
    redis_url, database_url, secret
) -> None:
    soft, hard = START_LIMIT
    server = await ServerProcess.start(
        *server_args(free_port(), redis_url, database_url, secret), open_files=START_LIMIT
    )
    try:
        assert soft_open_files(server.proc.pid) == hard
    finally:
        await server.stop()
    log = b"".join(server.lines).decode()
    assert re.search(
        rf"open-file limit: soft {hard} \(was {soft}\), hard {hard}; "
        rf"--max-connections {hard - HEADROOM}\b", log
    ), log


@pytest.mark.gen_test(timeout=60)
async def test_a_flood_past_the_open_file_limit_pauses_accepts_and_keeps_the_held(
    lesson, redis_url, database_url, secret
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = await ServerProcess.start(
        *server_args(port, redis_url, database_url, secret),
        open_files=(FLOOD_LIMIT, FLOOD_LIMIT),
    )
    held = [Client(url, transport) for transport in ("websocket", "polling", "websocket")]
    flood: list[socket.socket] = []
    try:
        for n, client in enumerate(held):
            await client.connect()
            token = participant_token(f"c{n}", secret)
            assert await client.join(request(user_id=f"u{n}", access_token=token)) == SUCCESS
        sids = [client.sid for client in held]

        for _ in range(FLOOD):  # connections that never send a request: each holds a descriptor
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            flood.append(sock)
        await until(lambda: open_files(server.proc.pid) >= FLOOD_LIMIT)
        before = cpu_seconds(server.proc.pid)
        await asyncio.sleep(MEASURE_SECONDS)  # measuring a rate over wall time: a sleep is it
        share = (cpu_seconds(server.proc.pid) - before) / MEASURE_SECONDS
        assert share < MAX_CPU_SHARE, f"{share:.0%} of a core while out of descriptors"
        # every held connection went through heartbeats (0.3 s apart) while accepts paused
        assert [client.sio.connected for client in held] == [True] * len(held)
        assert [client.sid for client in held] == sids

        for sock in flood:
            sock.close()
        flood.clear()
        fresh = Client(url, "websocket")
        async with asyncio.timeout(10 * MAX_PAUSE):
            while True:
                with contextlib.suppress(Exception):
                    await fresh.connect()
                    break
                fresh = Client(url, "websocket")
        held.append(fresh)
        assert await fresh.join(teacher_request("t1", secret)) == SUCCESS
        metrics = await tornado.httpclient.AsyncHTTPClient().fetch(f"{url}/metrics")
        failures = re.search(rb"^rollcall_accept_failures_total (\S+)$", metrics.body, re.M)
        assert failures is not None and float(failures.group(1)) >= 1
    finally:
        for sock in flood:
            sock.close()
        for client in held:
            await client.close()
        await server.stop()

    log = b"".join(server.lines)
    assert b"Traceback" not in log, log.decode()
    assert 1 <= log.count(ACCEPT_WARNING) <= MAX_ACCEPT_WARNINGS, log.decode()


@pytest.mark.gen_test(timeout=30)
async def test_a_max_connections_past_the_open_file_limit_is_warned_of(
    redis_url, database_url, secret
) -> None:
    _soft, hard = START_LIMIT
    server = await ServerProcess.start(
        *server_args(free_port(), redis_url, database_url, secret), "--max-connections", "5000",
        open_files=START_LIMIT,
    )
    await server.stop()
    log = b"".join(server.lines).decode()
    assert f"--max-connections 5000 leaves fewer than {HEADROOM} of the {hard} open files" in log
