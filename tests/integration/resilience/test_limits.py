"""Abuse limits: join_lesson per connection (token bucket) and connections per client address."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re

import pytest
import tornado.httpclient

import metrics
from config import LOOPBACK, Config, parse_config
from handlers.errors import RateLimited
from handlers.limits import JoinRateLimiter
from tests.support.peers import SUCCESS, connect, join, open_peer, session_closed, teacher, until

SLOW_RATE = 0.01  # one join per 100 s: nothing refills within a test
BURST = 3
PER_IP = 4
OTHER_ADDRESS = "203.0.113.7"
# The reset the issue reproduced: bursts of joins, each on a new sid of the same session.
RESETS = 4
JOINS_PER_RESET = 12
_ACK = re.compile(r"43(\d+)(\[.*)", re.DOTALL)
DEVICES = 300  # one school's devices behind one address
LONG = 60.0  # seconds: longer than any test


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = JoinRateLimiter(rate=5, burst=10, clock=clock)
    for _ in range(10):
        limiter.take("a")
    with pytest.raises(RateLimited, match=r"retry in 0\.2 s"):
        limiter.take("a")
    limiter.take("b")  # per connection
    clock.now += 0.2
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


def test_refused_joins_do_not_count() -> None:
    clock = Clock()
    limiter = JoinRateLimiter(rate=1, burst=1, clock=clock)
    limiter.take("a")
    for _ in range(100):
        with pytest.raises(RateLimited):
            limiter.take("a")
    clock.now += 1
    limiter.take("a")


def test_refilled_buckets_are_forgotten() -> None:
    """Memory follows the sids that joined lately; disconnects need not be reported."""
    clock = Clock()
    limiter = JoinRateLimiter(rate=5, burst=10, clock=clock)
    for n in range(1000):
        limiter.take(f"sid-{n}")
    assert len(limiter) == 1000
    clock.now += 10 / 5
    limiter.take("late")
    assert len(limiter) == 1


def test_zero_rate_is_unlimited() -> None:
    limiter = JoinRateLimiter(rate=0, burst=1)
    for _ in range(10_000):
        limiter.take("a")
    assert len(limiter) == 0


def test_production_defaults() -> None:
    defaults = Config()
    assert (defaults.join_rate, defaults.join_burst) == (5.0, 10)
    assert defaults.max_connections_per_ip == 1000  # a school of 500 devices behind one NAT


def test_limit_flags_parse_and_refuse_bad_values(capsys) -> None:
    config = parse_config(
        ["--join-rate", "2.5", "--join-burst", "4", "--max-connections-per-ip", "0"], environ={}
    )
    assert (config.join_rate, config.join_burst, config.max_connections_per_ip) == (2.5, 4, 0)
    assert parse_config([], environ={"ROLLCALL_JOIN_RATE": "0"}).join_rate == 0
    for argv in (["--join-rate", "-1"], ["--join-rate", "fast"], ["--join-burst", "0"],
                 ["--max-connections-per-ip", "-1"]):
        with pytest.raises(SystemExit) as info:
            parse_config(argv, environ={})
        assert info.value.code == 2
        assert argv[0] in capsys.readouterr().err


def samples(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class TestJoinRate:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, join_rate=SLOW_RATE, join_burst=BURST)

    @pytest.mark.gen_test(timeout=20)
    async def test_past_the_burst_joins_are_rate_limited_without_io(
        self, peer, lesson, redis_db
    ) -> None:
        client = await peer()
        await connect(client)
        for ack_id in range(BURST):
            assert await join(client, teacher(), ack_id) == SUCCESS
        keys = redis_db.dbsize()
        store_calls = {b: samples("rollcall_store_seconds_count", backend=b)
                       for b in ("redis", "postgres")}
        limited = samples("rollcall_joins_total", role="unknown", code="RATE_LIMITED")

        acks = [await join(client, teacher(), BURST + n) for n in range(5)]

        assert {ack["data"]["code"] for ack in acks} == {"RATE_LIMITED"}
        assert all(ack["status"] == "ERROR" and "retry in" in ack["data"]["message"]
                   for ack in acks)
        assert redis_db.dbsize() == keys
        assert store_calls == {b: samples("rollcall_store_seconds_count", backend=b)
                               for b in ("redis", "postgres")}
        assert samples("rollcall_joins_total", role="unknown", code="RATE_LIMITED") == limited + 5

    @pytest.mark.gen_test(timeout=20)
    async def test_each_connection_has_its_own_bucket(self, peer, lesson) -> None:
        first, second = await peer(), await peer()
        await connect(first)
        await connect(second)
        for ack_id in range(BURST):
            assert await join(first, teacher(), ack_id) == SUCCESS
        assert (await join(first, teacher(), 99))["data"]["code"] == "RATE_LIMITED"
        assert await join(second, teacher()) == SUCCESS

    @pytest.mark.gen_test(timeout=20)
    async def test_a_burst_sent_at_once_is_cut_at_the_burst(self, peer, lesson) -> None:
        client = await peer()
        await connect(client)
        count = BURST + 7
        await client.send(*[
            f'42{n}["join_lesson",{json.dumps(teacher())}]' for n in range(count)])
        acks = [json.loads((await client.recv())[len(f"43{n}"):])[0] for n in range(count)]
        codes = [ack["data"].get("code", "SUCCESS") for ack in acks]
        assert codes.count("SUCCESS") == BURST
        assert codes.count("RATE_LIMITED") == count - BURST


async def burst_of_joins(client, count: int) -> list[str]:
    """Send `count` joins at once; the code of each ack (SUCCESS for a success), in send order."""
    await client.send(*[f'42{n}["join_lesson",{json.dumps(teacher())}]' for n in range(count)])
    codes: dict[int, str] = {}
    while len(codes) < count:
        frame = await client.recv()
        match = _ACK.fullmatch(frame) if isinstance(frame, str) else None
        assert match, frame
        codes[int(match[1])] = json.loads(match[2])[0]["data"].get("code", "SUCCESS")
    return [codes[n] for n in range(count)]


class TestJoinRateOfTheSession:
    """The bucket belongs to the Engine.IO session: leaving and re-joining the namespace (`41`,
    `40`) gives a new sid, never a full bucket."""

    @pytest.fixture
    def config(self, config: Config) -> Config:
        defaults = Config()
        return dataclasses.replace(
            config, join_rate=defaults.join_rate, join_burst=defaults.join_burst
        )

    @pytest.mark.gen_test(timeout=30)
    async def test_namespace_reconnects_do_not_reset_the_join_rate(
        self, peer, lesson, sio, config
    ) -> None:
        client = await peer()
        clock = asyncio.get_running_loop().time
        started = clock()
        sids, passed = [], 0
        for _ in range(RESETS):
            sids.append(await connect(client))
            assert sio.engine_sid(sids[-1]) == client.sid
            passed += (await burst_of_joins(client, JOINS_PER_RESET)).count("SUCCESS")
            await client.send("41")
        elapsed = clock() - started

        assert len(set(sids)) == RESETS
        assert sio.engine_sid(sids[0]) is None  # gone with its 41
        assert config.join_burst <= passed <= config.join_burst + config.join_rate * elapsed


class TestConnectionsPerAddress:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, max_connections_per_ip=PER_IP)

    @pytest.mark.gen_test(timeout=20)
    async def test_over_the_limit_the_handshake_is_429(self, url, lesson, sio) -> None:
        peers = [await open_peer(url, t) for t in ("websocket", "polling", "polling", "websocket")]
        for transport in ("polling", "websocket"):
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await open_peer(url, transport)
            assert info.value.code == 429
        # an established session is not affected; another address is counted apart
        await connect(peers[0])
        assert await join(peers[0], teacher()) == SUCCESS
        other = await open_peer(url, "polling", headers={"X-Real-IP": OTHER_ADDRESS})
        assert sio.eio.connections_from(OTHER_ADDRESS) == 1
        # a client leaving frees its place
        await peers[1].send("1")
        assert session_closed(sio.eio, peers[1])
        again = await open_peer(url, "websocket")
        for each in (*peers, other, again):
            each.close()

    @pytest.mark.gen_test(timeout=20)
    async def test_every_way_out_gives_the_place_back(self, url, lesson, sio) -> None:
        """Client close, protocol error, transport close and heartbeat timeout all count."""
        closing = await open_peer(url, "polling")
        broken = await open_peer(url, "websocket")
        dropped = await open_peer(url, "websocket")
        silent = await open_peer(url, "polling")  # never polls: its heartbeat expires
        assert sio.eio.connections_from("127.0.0.1") == PER_IP
        await closing.send("1")
        await broken.send("x")
        dropped.close()
        assert await broken.closed()
        await until(lambda: sio.eio.connections_from("127.0.0.1") == 1)
        await until(lambda: session_closed(sio.eio, silent))  # ping interval + timeout
        assert sio.eio.connections_from("127.0.0.1") == 0


class TestDefaultConnectionsPerAddress:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        """Default limits; heartbeats longer than the test, as no device answers pings here."""
        return dataclasses.replace(
            config, max_connections_per_ip=Config().max_connections_per_ip,
            ping_interval=LONG, ping_timeout=LONG,
        )

    @pytest.mark.gen_test(timeout=60)
    async def test_a_school_behind_one_address_connects(self, url, sio) -> None:
        async def device() -> None:
            peer = await open_peer(url, "websocket")
            devices.append(peer)
            await connect(peer)

        devices: list = []
        try:
            await asyncio.gather(*(device() for _ in range(DEVICES)))
            assert sio.eio.connections_from("127.0.0.1") == DEVICES
        finally:
            for peer in devices:
                peer.close()


def access_log_addresses(caplog: pytest.LogCaptureFixture) -> set[str]:
    """The client addresses Tornado's access log showed (the last parenthesised field)."""
    return {r.getMessage().rsplit("(", 1)[1].split(")")[0]
            for r in caplog.records if r.name == "tornado.access"}


class TestTrustedProxy:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, max_connections_per_ip=PER_IP, trusted_proxies=LOOPBACK)

    @pytest.mark.gen_test(timeout=20)
    async def test_its_forwarded_address_is_counted_and_logged(self, url, sio, caplog) -> None:
        caplog.set_level(logging.INFO, logger="tornado.access")
        await open_peer(url, "polling", headers={"X-Real-IP": OTHER_ADDRESS})
        assert sio.eio.connections_from(OTHER_ADDRESS) == 1
        assert sio.eio.connections_from("127.0.0.1") == 0
        assert access_log_addresses(caplog) == {OTHER_ADDRESS}


class TestUntrustedPeer:
    @pytest.fixture
    def config(self, config: Config) -> Config:
        return dataclasses.replace(config, max_connections_per_ip=PER_IP, trusted_proxies=())

    @pytest.mark.gen_test(timeout=20)
    async def test_cannot_forge_its_address(self, url, sio, caplog) -> None:
        caplog.set_level(logging.INFO, logger="tornado.access")
        peers = [await open_peer(url, transport, headers={"X-Real-IP": f"198.51.100.{n}"})
                 for n, transport in enumerate(("polling", "websocket") * (PER_IP // 2))]
        assert sio.eio.connections_from("127.0.0.1") == PER_IP
        for header in ("X-Real-IP", "X-Forwarded-For"):
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await open_peer(url, "polling", headers={header: OTHER_ADDRESS})
            assert info.value.code == 429
        assert access_log_addresses(caplog) == {"127.0.0.1"}
        for peer in peers:
            peer.close()
