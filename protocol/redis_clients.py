"""Redis clients from the URLs rollcall accepts for Redis (`--redis-url`, `--message-queue`).

`redis://`, `rediss://` and `unix://` are redis-py's own. `redis+sentinel://` is
python-socketio's form (since 5.13), so that one URL serves both:

    redis+sentinel://[user:password@]host:port[,host:port...]/[db]/service_name

The hosts are the Sentinels; the client asks them for the service's primary and connects to it,
and asks again whenever a connection to it fails, so that it follows a failover without a restart
(redis-py's asyncio Sentinel support; the user and password are the primary's, as in
python-socketio). Unlike python-socketio, the service name is required: without it
python-socketio falls back on its channel name, which names no Redis deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_FORM = "redis+sentinel://[user:password@]host:port[,host:port...]/[db]/service_name"
#: seconds one Sentinel has to answer before the next is asked: the Sentinels are asked in turn
#: (the last that answered first), so a stalled one must not use up a caller's whole timeout
SENTINEL_TIMEOUT = 0.5


class BadRedisUrl(ValueError):
    """A redis+sentinel:// URL that does not follow SENTINEL_FORM; the message says why."""


@dataclass(frozen=True)
class SentinelUrl:
    """What a redis+sentinel:// URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return urlsplit(url).scheme == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The Sentinels, service, database and credentials of `url`; BadRedisUrl if malformed."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise BadRedisUrl(f"expected {SENTINEL_FORM}")
    credentials, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadRedisUrl(f"expected Sentinels as host:port, got {host_port!r}")
        sentinels.append((host, int(port)))
    segments = parts.path.split("/")[1:]
    db_text = segments[0] if segments else ""
    service = segments[1] if len(segments) > 1 else ""
    if len(segments) > 2 or (db_text and not db_text.isdigit()):
        raise BadRedisUrl(f"expected /[db]/service_name after the Sentinels, got {parts.path!r}")
    if not service:
        raise BadRedisUrl(f"the URL names no service: expected {SENTINEL_FORM}")
    username, _, password = credentials.partition(":") if credentials else ("", "", "")
    return SentinelUrl(
        tuple(sentinels),
        unquote(service),
        int(db_text or 0),
        unquote(username) or None,
        unquote(password) or None,
    )


class SentinelRedis(aioredis.Redis):
    """A client of a Sentinel service's primary that also closes its Sentinel clients."""

    sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel is not None:
            await self.sentinel.aclose()


def redis_from_url(url: str, **kwargs: Any) -> aioredis.Redis:
    """`redis.asyncio.Redis.from_url`, or for a redis+sentinel:// URL a client of the service's
    primary; `kwargs` apply to the primary's connections. Each Sentinel has SENTINEL_TIMEOUT
    (or the shorter socket timeout given) to answer."""
    if not is_sentinel_url(url):
        return aioredis.Redis.from_url(url, **kwargs)
    parsed = parse_sentinel_url(url)
    timeouts = [kwargs.get(key) for key in ("socket_connect_timeout", "socket_timeout")]
    sentinel_timeout = min([SENTINEL_TIMEOUT, *(t for t in timeouts if t is not None)])
    sentinel = Sentinel(
        list(parsed.sentinels),
        sentinel_kwargs={
            "socket_connect_timeout": sentinel_timeout,
            "socket_timeout": sentinel_timeout,
            "retry": Retry(NoBackoff(), 0),  # not again: the next Sentinel is asked instead
        },
    )
    client = sentinel.master_for(
        parsed.service_name,
        redis_class=SentinelRedis,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **kwargs,
    )
    client.sentinel = sentinel
    return client
