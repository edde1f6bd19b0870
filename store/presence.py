"""Presence keys in Redis: who is in which lesson, read by the platform's other services."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from store.errors import StoreUnavailable

BACKEND = "redis"


class PresenceStore:
    """Writes the presence keys of the join_lesson contract (see docs/redis-keys.md)."""

    def __init__(self, client: aioredis.Redis, timeout: float, key_prefix: str = "") -> None:
        self._redis = client
        self._timeout = timeout
        self._prefix = key_prefix

    @classmethod
    def open(cls, url: str, timeout: float, key_prefix: str = "") -> PresenceStore:
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        return cls(client, timeout, key_prefix)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers PING in time."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except TimeoutError:
            raise StoreUnavailable(BACKEND, "timed out") from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(BACKEND, str(exc)) from exc

    async def close(self) -> None:
        await self._redis.aclose()
