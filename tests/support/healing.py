"""Helpers of the healing tests: rollcall processes with short liveness settings, the process id
each one logs, the bookkeeping keys of a process, waiting for a state of Redis with a deadline
(the sweep is periodic: there is no event of it to await), what in Redis still names a sid,
participants that join again whenever they reconnect, and a network partition between rollcall
and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import redis
import socketio

from store.keys import ALIVE_KEY, HELD_KEY, PROCESSES_KEY, SWEPT_KEY
from tests.support import SUCCESS, ServerProcess, free_port
from tests.support.joins import ACK_TIMEOUT, EVENT_TIMEOUT, participant_token, request
from tests.support.lifecycle import RawWebSocketClient

T = TypeVar("T")

#: short settings, so that a dead process is swept within about TTL + INTERVAL
TTL = 1.0
INTERVAL = 0.2
#: what the tests allow for a sweep to happen after a process died: TTL + INTERVAL and the
#: time a loaded machine may add
SWEEP_WITHIN = 10.0
POLL_STEP = 0.05
_PROCESS_ID = re.compile(rb"\(process ([0-9a-f]+)\)")
_STARTED_OVER = re.compile(rb"starts over as ([0-9a-f]+)")


async def wait_for(check: Callable[[], T], what: str, within: float = SWEEP_WITHIN) -> T:
    """Poll `check` (a read of Redis) until it returns something true, at most `within` s."""
    try:
        async with asyncio.timeout(within):
            while not (value := check()):  # noqa: ASYNC110 - Redis signals no sweep
                await asyncio.sleep(POLL_STEP)
    except TimeoutError:
        raise AssertionError(f"timed out after {within:g} s waiting for {what}") from None
    return value


class Rollcall:
    """A server.py subprocess and what the tests need of it: its URL and process id."""

    def __init__(self, url: str, server: ServerProcess) -> None:
        self.url = url
        self.server = server

    @classmethod
    async def start(
        cls, redis_url: str, database_url: str, secret: str, *flags: str
    ) -> Rollcall:
        port = free_port()
        server = await ServerProcess.start(
            "--port", str(port), "--redis-url", redis_url, "--database-url", database_url,
            "--access-token-secret", secret, "--ping-interval", "0.3", "--ping-timeout", "0.5",
            "--liveness-ttl", str(TTL), "--liveness-interval", str(INTERVAL), *flags,
        )  # fmt: skip
        return cls(f"http://127.0.0.1:{port}", server)

    @property
    def output(self) -> bytes:
        return b"".join(self.server.lines)

    @property
    def process_id(self) -> str:
        """The id it runs under now: the one it started with, or the last it started over as."""
        started_over = _STARTED_OVER.findall(self.output)
        if started_over:
            return started_over[-1].decode()
        match = _PROCESS_ID.search(self.output)
        assert match, self.output.decode()
        return match[1].decode()

    def lines_with(self, text: str) -> list[str]:
        return [line.decode() for line in self.server.lines if text.encode() in line]

    async def stop(self) -> None:
        await self.server.stop()


def held(db: redis.Redis, process_id: str) -> dict[str, str]:
    return db.hgetall(HELD_KEY.format(process_id=process_id))


def alive(db: redis.Redis, process_id: str) -> bool:
    return bool(db.exists(ALIVE_KEY.format(process_id=process_id)))


def swept_by(db: redis.Redis, process_id: str) -> str | None:
    return db.get(SWEPT_KEY.format(process_id=process_id))


def registered(db: redis.Redis) -> set[str]:
    return db.smembers(PROCESSES_KEY)


def naming(db: redis.Redis, sid: str) -> list[tuple[str, str]]:
    """Every (key, field) of the database whose value holds `sid`: presence fields (the sid
    itself), roster records (JSON holding it) and held records (the sid itself)."""
    found = []
    for key in db.keys("*"):
        kind = db.type(key)
        if kind == "hash":
            found += [(key, field) for field, value in db.hgetall(key).items() if sid in value]
        elif kind == "string" and sid in (db.get(key) or ""):
            found.append((key, ""))
    return sorted(found)


class RejoiningParticipant:
    """A python-socketio participant that, like a real app, reconnects by itself and joins its
    lesson again on every connect: what a process that starts over (dropping its connections)
    relies on. `sids` lists every sid it joined under, the current one last."""

    def __init__(self, url: str, client_id: str, secret: str) -> None:
        self.url = url
        self.client_id = client_id
        self._secret = secret
        self.sio = socketio.AsyncClient(
            reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.5,
            randomization_factor=0,
        )  # fmt: skip
        self.sids: list[str] = []
        self._joins: set[asyncio.Task[None]] = set()
        self.sio.on("connect", self._on_connect)

    async def connect(self) -> RejoiningParticipant:
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=ACK_TIMEOUT)
        return self

    @property
    def sid(self) -> str | None:
        """The sid it has joined under and is still connected with, if any."""
        sid = self.sio.get_sid() if self.sio.connected else None
        return sid if self.sids and sid == self.sids[-1] else None

    async def _on_connect(self) -> None:
        # a task: the connect handler runs inside the client's read loop, which the ack needs
        task = asyncio.get_running_loop().create_task(self._join())
        self._joins.add(task)
        task.add_done_callback(self._joins.discard)

    async def _join(self) -> None:
        sid = self.sio.get_sid()
        token = participant_token(self.client_id, self._secret)
        payload = request(user_id=self.client_id, access_token=token)
        try:
            ack = await self.sio.call("join_lesson", payload, timeout=ACK_TIMEOUT)
        except socketio.exceptions.SocketIOError:
            return  # dropped meanwhile: the next connect joins again
        if ack == SUCCESS and sid is not None:
            self.sids.append(sid)

    async def close(self) -> None:
        """Stop reconnecting, disconnect, and wait for its joins and Engine.IO loops to end."""
        read_loop = self.sio.eio.read_loop_task
        await self.sio.shutdown()
        await asyncio.gather(*self._joins, return_exceptions=True)
        if read_loop is not None:
            async with asyncio.timeout(EVENT_TIMEOUT):
                await read_loop


def join_frame(ack_id: int, client_id: str, secret: str) -> str:
    payload = request(user_id=client_id, access_token=participant_token(client_id, secret))
    return f"42{ack_id}" + json.dumps(["join_lesson", payload])


async def raw_participant(url: str, client_id: str, secret: str) -> RawWebSocketClient:
    """A participant over a bare WebSocket: unlike a stock client, it leaves nothing running
    behind once the server drops it."""
    client = RawWebSocketClient(url)
    await client.connect()
    await client.send(join_frame(0, client_id, secret))
    async with asyncio.timeout(EVENT_TIMEOUT):
        while not (frame := await client.receive()) or not frame.startswith("430"):
            assert frame is not None, "closed before the join's ack"
    assert json.loads(frame[3:]) == [{"status": "SUCCESS", "data": {}}]
    return client


class _Link:
    """One client connection through a RedisPartition, and its connection to Redis."""

    def __init__(self, client: asyncio.StreamWriter, redis_side: asyncio.StreamWriter) -> None:
        self.writers = (client, redis_side)
        #: whether anything the client sent was lost: the stream to Redis is then broken
        self.lost = False

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class RedisPartition:
    """A TCP relay between rollcall processes and the suite's Redis that a test can cut, as a
    network partition would. While it is cut, what the processes send is lost and never reaches
    Redis, so nothing they sent then is ever run (unlike a stalled Redis, which runs what it had
    received once it wakes up). A connection that lost anything is closed when the partition
    ends: its client has given up on it by then."""

    def __init__(self, redis_url: str) -> None:
        parsed = urllib.parse.urlsplit(redis_url)
        self._redis = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self._path = parsed.path
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._relays: set[asyncio.Task] = set()
        self.is_cut = False

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, redis_url: str) -> AsyncIterator[RedisPartition]:
        partition = cls(redis_url)
        partition._server = await asyncio.start_server(partition._relay, "127.0.0.1", 0)
        try:
            yield partition
        finally:
            partition._server.close()
            for link in list(partition._links):
                link.close()
            await asyncio.gather(*partition._relays, return_exceptions=True)

    @property
    def url(self) -> str:
        """The Redis URL that goes through the relay (the same database)."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}{self._path}"

    def cut(self) -> None:
        self.is_cut = True

    def restore(self) -> None:
        self.is_cut = False
        for link in [link for link in self._links if link.lost]:
            link.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)
        redis_reader, redis_writer = await asyncio.open_connection(*self._redis)
        link = _Link(writer, redis_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(link, reader, redis_writer, to_redis=True),
                self._pump(link, redis_reader, writer, to_redis=False),
            )
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        to_redis: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if to_redis and (self.is_cut or link.lost):
                    link.lost = True
                    continue
                sink.write(data)
                await sink.drain()
        link.close()  # one side is gone: so is the other
