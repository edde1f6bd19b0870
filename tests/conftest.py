"""Fixtures shared by the whole suite: the real Redis and PostgreSQL that `make test` starts, and
the real server app mounted in-process for client-library tests."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import warnings
from collections.abc import Iterator

import psycopg2
import pytest
import redis
import tornado.ioloop
from hypothesis import settings

from config import Config
from server import Rollcall, Services, build, disconnect_all, setup_process
from tests.support import ROOT, SCHEMA, TEST_PING_INTERVAL, TEST_PING_TIMEOUT, TEST_TOKEN_SECRET

#: how long a task still ending when its test ends may take, before it counts as left running
SETTLE_TIMEOUT = 2.0

#: Hypothesis profiles. "ci", the default (`make test`, CI): derandomised (the examples are a
#: function of the test, so a failure recurs on every run and on every machine), no example
#: database (nothing a previous run saved changes this one), and each failure printed with the
#: `@reproduce_failure` blob that replays it. "explore" (HYPOTHESIS_PROFILE=explore): random
#: examples, several times more of them, to look for new failures by hand.
HYPOTHESIS_EXAMPLES = 100
settings.register_profile(
    "ci", derandomize=True, database=None, print_blob=True, max_examples=HYPOTHESIS_EXAMPLES
)
settings.register_profile("explore", print_blob=True, max_examples=10 * HYPOTHESIS_EXAMPLES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def process_setup() -> None:
    """The process-wide setup server.py's main() makes before serving, made once for the whole
    run: every test runs in a process set up as production's is."""
    setup_process()


class TaskLeftPending(UserWarning):
    """A test ended with tasks of its loop still running: something it started was not closed.
    An error, not a warning, in the pytest configuration (setup.cfg): the test fails."""


@pytest.fixture
def io_loop() -> Iterator[tornado.ioloop.IOLoop]:
    """A new event loop per test, replacing pytest-tornado's (which calls the deprecated
    `make_current()` and closes its loop with tasks still pending, destroyed at exit).

    Torn down as `tornado.testing.AsyncTestCase` does, every task ended before the loop closes:
    one still ending (a WebSocket's closing handshake) gets SETTLE_TIMEOUT to finish; one still
    running after that was left behind, so it is cancelled and reported as TaskLeftPending
    (once the loop is closed: the report fails the test)."""
    loop = tornado.ioloop.IOLoop(make_current=False)
    asyncio.set_event_loop(loop.asyncio_loop)
    yield loop
    names = []
    pending = [task for task in asyncio.all_tasks(loop.asyncio_loop) if not task.done()]
    if pending:
        _, left = loop.run_sync(lambda: asyncio.wait(pending, timeout=SETTLE_TIMEOUT))
        for task in left:
            task.cancel()
        if left:
            loop.run_sync(lambda: asyncio.wait(left))
            names = sorted(task.get_coro().__qualname__ for task in left)
    asyncio.set_event_loop(None)
    loop.close(all_fds=True)
    if names:
        warnings.warn(f"tasks left running by the test: {names}", TaskLeftPending, stacklevel=1)


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the suite with `make test`", returncode=2)
    return value


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _required_env("REDIS_URL")


@pytest.fixture(scope="session")
def database_url() -> str:
    return _required_env("DATABASE_URL")


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client on an emptied Redis database, for arranging and asserting state."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def database(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """A fresh schema in the real PostgreSQL (autocommit connection for arranging rows)."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS student_attend, lesson CASCADE")
        cur.execute(SCHEMA.read_text())
    yield conn
    conn.close()


@pytest.fixture
def config(redis_url: str, database_url: str) -> Config:
    return Config(
        redis_url=redis_url,
        database_url=database_url,
        access_token_secret=TEST_TOKEN_SECRET,
        ping_interval=TEST_PING_INTERVAL,
        ping_timeout=TEST_PING_TIMEOUT,
        connect_timeout=5.0,
        store_timeout=1.0,
    )


@pytest.fixture
def services(io_loop, config: Config, redis_db, database) -> Iterator[Services]:
    opened = io_loop.run_sync(lambda: Services.open(config))
    yield opened
    io_loop.run_sync(opened.close)


@pytest.fixture
def rollcall(io_loop, config: Config, services: Services) -> Iterator[Rollcall]:
    """The real application and its Socket.IO server, as server.py builds them; at teardown
    every session is closed as at shutdown, so no server task outlives the test's loop."""
    built = build(config, services)
    yield built
    io_loop.run_sync(lambda: disconnect_all(built), timeout=10)


@pytest.fixture
def url(http_server, http_port: int) -> str:
    """The in-process server (the `app` fixture) listening on a free port; 127.0.0.1 because
    node may resolve localhost to ::1 first."""
    return f"http://127.0.0.1:{http_port}"


@pytest.fixture
def secret(config: Config) -> str:
    """The secret the server verifies access tokens with."""
    assert config.access_token_secret is not None
    return config.access_token_secret


@pytest.fixture
def app(rollcall):
    return rollcall[0]


@pytest.fixture
def sio(rollcall):
    return rollcall[1]


@pytest.fixture
def services_dir() -> pathlib.Path:
    return pathlib.Path(_required_env("ROLLCALL_SERVICES_DIR"))


@pytest.fixture
def redis_outage(services_dir: pathlib.Path, redis_db: redis.Redis) -> Iterator[RedisOutage]:
    """Stops and restarts the suite's real Redis; always leaves it running afterwards."""
    outage = RedisOutage(services_dir, int(os.environ["REDIS_PORT"]), redis_db)
    yield outage
    outage.end()


class RedisOutage:
    """The suite's Redis has no persistence: it comes back empty, unless the outage keeps the
    data (a snapshot saved before the stop, loaded at the start, then deleted)."""

    def __init__(self, services_dir: pathlib.Path, port: int, db: redis.Redis) -> None:
        self.dir = services_dir
        self.port = port
        self.db = db

    def begin(self, keep_data: bool = False) -> None:
        if keep_data:
            self.db.save()
        subprocess.run([ROOT / "scripts" / "services.sh", "redis-stop", self.dir], check=True)

    def end(self) -> None:
        subprocess.run(
            [ROOT / "scripts" / "services.sh", "redis-start", self.dir, str(self.port)], check=True
        )
        # so that a later restart comes back empty again
        (self.dir / self.db.config_get("dbfilename")["dbfilename"]).unlink(missing_ok=True)


@pytest.fixture
def postgres_outage(
    services_dir: pathlib.Path, database: psycopg2.extensions.connection
) -> Iterator[PostgresOutage]:
    """Stops and restarts the suite's real PostgreSQL; always leaves it running afterwards."""
    outage = PostgresOutage(services_dir, int(os.environ["PG_PORT"]))
    yield outage
    outage.end()


class PostgresOutage:
    """`pg_ctl stop -m fast`: open connections are terminated, new ones refused."""

    def __init__(self, services_dir: pathlib.Path, port: int) -> None:
        self.dir = services_dir
        self.port = port

    def begin(self) -> None:
        subprocess.run([ROOT / "scripts" / "services.sh", "pg-stop", self.dir], check=True)

    def end(self) -> None:
        subprocess.run(
            [ROOT / "scripts" / "services.sh", "pg-start", self.dir, str(self.port)], check=True
        )


