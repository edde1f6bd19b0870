"""redis+sentinel:// URLs (python-socketio's form) for --redis-url and --message-queue: what
they name, and one line with exit 2 for a malformed one."""

from __future__ import annotations

import asyncio

import pytest

from config import parse_config
from protocol.redis_clients import BadRedisUrl, SentinelRedis, SentinelUrl, parse_sentinel_url
from store import redis_packing

SENTINELS = "redis+sentinel://s1.internal:26379,s2.internal:26380,[::1]:26381"


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        (
            f"{SENTINELS}/2/presence",
            SentinelUrl(
                (("s1.internal", 26379), ("s2.internal", 26380), ("::1", 26381)), "presence", 2
            ),
        ),
        ("redis+sentinel://h:1//svc", SentinelUrl((("h", 1),), "svc")),
        (
            "redis+sentinel://us%40r:p%3Ass@h:26379/0/svc",
            SentinelUrl((("h", 26379),), "svc", 0, "us@r", "p:ss"),
        ),
        (
            "redis+sentinel://:secret@h:26379/0/svc",
            SentinelUrl((("h", 26379),), "svc", 0, None, "secret"),
        ),
    ],
)
def test_what_a_sentinel_url_names(url: str, parsed: SentinelUrl) -> None:
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h:26379/0", "names no service"),
        ("redis+sentinel://h:26379", "names no service"),
        ("redis+sentinel://h/0/svc", "host:port"),
        ("redis+sentinel://h:port/0/svc", "host:port"),
        ("redis+sentinel://h:1,:2/0/svc", "host:port"),
        ("redis+sentinel://h:1/x/svc", "/[db]/service_name"),
        ("redis+sentinel://h:1/0/svc/more", "/[db]/service_name"),
    ],
)
def test_a_malformed_sentinel_url_says_why(url: str, why: str) -> None:
    with pytest.raises(BadRedisUrl, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_sentinel_url(url)


@pytest.mark.parametrize("flag", ["--redis-url", "--message-queue"])
def test_both_redis_flags_take_a_sentinel_url(flag: str) -> None:
    url = f"{SENTINELS}/0/rollcall"
    config = parse_config([flag, url], environ={})
    assert url in (config.redis_url, config.message_queue)


@pytest.mark.parametrize("flag", ["--redis-url", "--message-queue"])
def test_a_malformed_sentinel_url_exits_2_with_one_line(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config([flag, "redis+sentinel://h:26379/0"], environ={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and "names no service" in err, err


def test_a_url_of_another_scheme_names_the_sentinel_one_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--redis-url", "http://h:6379/0"], environ={})
    assert "redis+sentinel://" in capsys.readouterr().err


def test_a_sentinel_client_asks_the_sentinels_and_packs_with_hiredis() -> None:
    """Built without I/O: the primary's pool is Sentinel's, its connections pack with hiredis."""

    async def check() -> None:
        client = redis_packing.from_url(f"{SENTINELS}/3/svc", decode_responses=True)
        try:
            assert isinstance(client, SentinelRedis) and client.sentinel is not None
            pool = client.connection_pool
            assert pool.service_name == "svc" and pool.connection_kwargs["db"] == 3
            assert pool.connection_class is redis_packing.SentinelManagedConnection
            assert len(client.sentinel.sentinels) == 3
        finally:
            await client.aclose()

    asyncio.run(check())
