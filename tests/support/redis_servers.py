"""redis-server processes of a test's own, beside the suite's shared Redis: one that a test kills
and restarts empty (no persistence), and a Sentinel deployment (a primary, a replica and three
Sentinels; `redis-server --sentinel` is the same binary) whose primary a test kills."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
from collections.abc import AsyncIterator

import redis

from tests.support import free_port

#: how long a redis-server may take to answer PING after it was started
START_TIMEOUT = 10.0
POLL_STEP = 0.05
SERVICE = "rollcall"
#: Sentinel's down-after-milliseconds and failover timeout of the test deployment
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
SENTINELS = 3


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: run scripts/bootstrap.sh"
    return binary


class RedisServer:
    """One redis-server on 127.0.0.1, without persistence, run from `directory`; its port stays
    the same across kill() and start(), so a restart comes back empty at the same address."""

    def __init__(self, directory: pathlib.Path, *args: str, sentinel: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.args = args
        self.sentinel = sentinel
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    async def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [redis_server_binary()]
        if self.sentinel:
            config = self.directory / "sentinel.conf"
            config.write_text("\n".join(self.args) + "\n")  # Sentinel rewrites it as it goes
            command += [str(config), "--sentinel"]
        else:
            command += ["--save", "", "--appendonly", "no", *self.args]
        command += [
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = await asyncio.create_subprocess_exec(*command)
        client = self.client()
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    with contextlib.suppress(redis.ConnectionError):
                        client.ping()
                        return self
                    await asyncio.sleep(POLL_STEP)
        finally:
            client.close()

    async def kill(self) -> None:
        """SIGKILL, as a lost host or an OOM kill."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None


@contextlib.asynccontextmanager
async def redis_server(directory: pathlib.Path) -> AsyncIterator[RedisServer]:
    server = await RedisServer(directory).start()
    try:
        yield server
    finally:
        await server.kill()


class SentinelDeployment:
    """A primary, a replica of it and three Sentinels watching it as SERVICE."""

    def __init__(self, primary: RedisServer, replica: RedisServer, sentinels: list[RedisServer]):
        self.primary = primary
        self.replica = replica
        self.sentinels = sentinels

    def url(self, db: int = 0) -> str:
        """The redis+sentinel:// URL of the deployment (python-socketio's form)."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{db}/{SERVICE}"

    def master_port(self) -> int:
        """The primary's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.ConnectionError), sentinel.client() as client:
                _, port = client.sentinel_get_master_addr_by_name(SERVICE)
                return int(port)
        raise AssertionError("no Sentinel answers")

    def replicas_seen(self) -> bool:
        """Whether every Sentinel knows the replica (a failover needs it) and the others."""
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(SERVICE)
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < SENTINELS - 1:
                    return False
        return True


@contextlib.asynccontextmanager
async def sentinel_deployment(directory: pathlib.Path) -> AsyncIterator[SentinelDeployment]:
    started: list[RedisServer] = []
    try:
        primary = await RedisServer(directory / "primary").start()
        started.append(primary)
        replica = await RedisServer(
            directory / "replica", "--replicaof", "127.0.0.1", str(primary.port)
        ).start()
        started.append(replica)
        sentinels = []
        for n in range(SENTINELS):
            sentinel = RedisServer(
                directory / f"sentinel{n}",
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {SERVICE} 1",
                sentinel=True,
            )
            started.append(await sentinel.start())
            sentinels.append(sentinel)
        yield SentinelDeployment(primary, replica, sentinels)
    finally:
        for server in reversed(started):
            await server.kill()
