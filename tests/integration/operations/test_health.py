"""GET /healthz against the real Redis and PostgreSQL, including a real Redis outage."""

from __future__ import annotations

import dataclasses
import json
import logging
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

from config import Config
from tests.support import ROOT, free_port
from web import health

UNREACHABLE_POSTGRES = "postgresql://rollcall@127.0.0.1:1/rollcall"
# A PostgreSQL that answers, refusing this user: its message names the user, host and port.
UNKNOWN_USER = "healthz-intruder"
REDIS_DOWN = {"status": "unavailable", "redis": "down", "postgres": "ok"}
POSTGRES_DOWN = {"status": "unavailable", "redis": "ok", "postgres": "down"}


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
    http_client, base_url, redis_outage, caplog
) -> None:
    redis_outage.begin()
    with caplog.at_level(logging.WARNING, logger=health.log.name):
        code, body = await fetch_health(http_client, base_url)
    assert (code, body) == (503, REDIS_DOWN)
    # why is for the log only
    reasons = [r.getMessage() for r in caplog.records if r.name == health.log.name]
    assert len(reasons) == 1
    assert "redis" in reasons[0]
    assert str(redis_outage.port) in reasons[0]
    redis_outage.end()
    assert await fetch_health(http_client, base_url) == (
        200,
        {"status": "ok", "redis": "ok", "postgres": "ok"},
    )


class TestPostgresRefusingTheUser:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        port = os.environ["PG_PORT"]
        url = f"postgresql://{UNKNOWN_USER}:not-the-password@127.0.0.1:{port}/rollcall"
        return dataclasses.replace(config, database_url=url)

    @pytest.mark.gen_test(timeout=20)
    async def test_the_body_says_postgres_is_down_and_the_log_says_why(
        self, http_client, base_url, caplog
    ) -> None:
        with caplog.at_level(logging.WARNING, logger=health.log.name):
            response = await http_client.fetch(base_url + "/healthz", raise_error=False)

        assert (response.code, json.loads(response.body)) == (503, POSTGRES_DOWN)
        text = response.body.decode()
        for leak in (UNKNOWN_USER, "127.0.0.1", os.environ["PG_PORT"], "not-the-password",
                     "role", "FATAL", "authentication"):
            assert leak not in text
        reasons = [r.getMessage() for r in caplog.records if r.name == health.log.name]
        assert len(reasons) == 1
        assert "postgres" in reasons[0]
        assert UNKNOWN_USER in reasons[0]


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
        assert postgres_down_server.health() == (503, POSTGRES_DOWN)
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
