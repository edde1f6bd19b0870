"""Helpers of the scale-out tests: rollcall processes sharing one Redis channel, clients that
record every event the server pushes, so tests await events instead of sleeping, and a Redis of
a test's own for the message queue (started and stopped by the test)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from config import Config
from server import Rollcall, Services, build, disconnect_all, make_http_server
from tests.support import SUCCESS, ServerProcess, free_port
from tests.support.joins import ACK_TIMEOUT, EVENT_TIMEOUT, Client, participant_token, request

#: what a test marks the end of a stream with: an event it can await instead of sleeping
SENTINEL = "sentinel"
#: what redis-server logs once it accepts connections
REDIS_READY_LINE = b"Ready to accept connections"


class Listener(Client):
    """A python-socketio client that queues every event pushed to it, and its disconnect."""

    def __init__(self, url: str, transport: str) -> None:
        super().__init__(url, transport)
        self.events: asyncio.Queue[tuple[str, list[Any]]] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("disconnect", self._gone)

    async def connect(self, headers: dict[str, str] | None = None) -> Listener:
        """Connect, with request headers (an Origin, as a browser sends) if given."""
        await self.sio.connect(
            self.url, headers=headers or {}, transports=[self.transport], wait_timeout=ACK_TIMEOUT
        )
        return self

    async def _record(self, event: str, *args: Any) -> None:
        await self.events.put((event, list(args)))

    async def _gone(self, *_: Any) -> None:
        self.disconnected.set()

    async def next(self) -> tuple[str, list[Any]]:
        """The next event pushed to this client, within EVENT_TIMEOUT."""
        async with asyncio.timeout(EVENT_TIMEOUT):
            return await self.events.get()

    async def join_as(self, client_id: str, secret: str) -> None:
        token = participant_token(client_id, secret)
        assert await self.join(request(user_id=client_id, access_token=token)) == SUCCESS


def queue_config(config: Config, redis_url: str) -> Config:
    return dataclasses.replace(config, message_queue=redis_url)


@asynccontextmanager
async def in_process(config: Config, services: Services) -> AsyncIterator[tuple[str, Rollcall]]:
    """A rollcall process served in the test's own loop (so the test can call its `sio`), with
    its heartbeat: the server.py processes beside it would otherwise sweep it as dead."""
    rollcall = build(config, services)
    assert rollcall.manager is not None
    http_server = make_http_server(rollcall.app, config)
    port = free_port()
    http_server.listen(port, "127.0.0.1")
    await rollcall.manager.start()
    await rollcall.sweeper.start()
    try:
        yield f"http://127.0.0.1:{port}", rollcall
    finally:
        http_server.stop()
        await disconnect_all(rollcall)
        await rollcall.sweeper.stop()
        await http_server.close_all_connections()
        await rollcall.manager.stop()


@asynccontextmanager
async def subprocess_server(config: Config) -> AsyncIterator[tuple[str, ServerProcess]]:
    """server.py with --message-queue, as deployment runs it."""
    assert config.message_queue is not None and config.access_token_secret is not None
    port = free_port()
    server = await ServerProcess.start(
        "--port", str(port), "--redis-url", config.redis_url,
        "--database-url", config.database_url, "--message-queue", config.message_queue,
        "--access-token-secret", config.access_token_secret,
        "--ping-interval", "0.3", "--ping-timeout", "0.5",
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        await server.stop()


class Subscriptions(logging.Handler):
    """Counts the manager's "subscribed" log lines, to await a resubscription after an outage."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("message queue subscribed"):
            self.count += 1
            self._changed.set()

    async def reach(self, count: int) -> None:
        async with asyncio.timeout(EVENT_TIMEOUT):
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()


class DedicatedRedis:
    """A redis-server of one test's own on `port` (no persistence), for a message queue that is
    down when a process starts: the suite's Redis serves every other test meanwhile."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, port: int) -> DedicatedRedis:
        proc = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--logfile", "", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        redis = cls(proc)
        try:
            async with asyncio.timeout(EVENT_TIMEOUT):
                assert proc.stdout is not None
                while REDIS_READY_LINE not in await proc.stdout.readline():
                    assert proc.returncode is None, "redis-server exited"
        except BaseException:
            await redis.stop()
            raise
        return redis

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        await self.proc.communicate()  # reads what is left of its log, waits for its exit
