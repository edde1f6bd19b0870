"""GET /healthz against the real Redis and PostgreSQL, including a real Redis outage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import ROOT, free_port

UNREACHABLE_POSTGRES = "postgresql://rollcall@127.0.0.1:1/rollcall"


async def fetch_health(client: AsyncHTTPClient, base_url: str) -> tuple[int, dict]:
    response = await client.fetch(base_url + "/healthz", raise_error=False)
    return response.code, json.loads(response.body)


@pytest.mark.gen_test(timeout=10)
async def test_healthy_when_both_answer(http_client, base_url: str) -> None:
    assert await fetch_health(http_client, base_url) == (
        200,
        {"status": "ok", "redis": "ok", "postgres": "ok"},
    )


@pytest.mark.gen_test(timeout=20)
async def test_503_names_redis_while_it_is_stopped_and_recovers(
    http_client, base_url, redis_outage
) -> None:
    redis_outage.begin()
    code, body = await fetch_health(http_client, base_url)
    assert code == 503
    assert body["status"] == "unavailable"
    assert body["postgres"] == "ok"
    assert body["redis"] != "ok"
    redis_outage.end()
    assert await fetch_health(http_client, base_url) == (
        200,
        {"status": "ok", "redis": "ok", "postgres": "ok"},
    )


class ServerProcess:
    """server.py in a subprocess, as deployment runs it."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "server.py",
                "--port",
                str(self.port),
                "--store-timeout",
                "0.5",
                "--log-level",
                "INFO",
                *args,
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.wait_listening()

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        for line in self.proc.stderr:
            if "listening on" in line:
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return
            assert time.monotonic() < deadline, "server did not start"
        raise AssertionError(f"server exited with {self.proc.wait()}")

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=15)


@pytest.fixture
def postgres_down_server(redis_url: str) -> Iterator[ServerProcess]:
    server = ServerProcess("--redis-url", redis_url, "--database-url", UNREACHABLE_POSTGRES)
    yield server
    server.stop()


def test_server_starts_with_postgres_down_and_reports_it(postgres_down_server) -> None:
    # Repeated: each failed PostgreSQL connect frees a descriptor that the next request reuses
    # (see store/aiopg_compat.py).
    for _ in range(3):
        code, body = postgres_down_server.health()
        assert code == 503
        assert body["redis"] == "ok"
        assert body["postgres"] != "ok"
    assert postgres_down_server.stop() == 0


def test_server_process_recovers_after_a_redis_outage(redis_outage, database_url) -> None:
    redis_url = os.environ["REDIS_URL"]
    server = ServerProcess("--redis-url", redis_url, "--database-url", database_url)
    try:
        assert server.health()[0] == 200
        redis_outage.begin()
        assert server.health()[0] == 503
        redis_outage.end()
        assert server.health()[0] == 200
    finally:
        assert server.stop() == 0
