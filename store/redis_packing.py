"""Redis connections that pack a command with one call of hiredis (C) when they can.

redis-py 8.2's asyncio connections pack with hiredis themselves, but first encode every argument
in Python (a generator, an isinstance chain and an encode per argument): measured 29-37 µs for
the join script's call of ~20 arguments on the shared machine, where hiredis given the arguments
as they are takes 4-5 µs (docs/benchmarks.md, issue 23), for every join. A command whose
arguments hiredis takes as they are (str, bytes, int, float) goes to it directly; any other (a
command name of two words, a bytearray or memoryview, a value it refuses) goes through redis-py's
own ``pack_command``, so the bytes and the errors stay redis-py's (DataError for a value it cannot
send). Only documented names: ``Connection.pack_command``, ``hiredis.pack_command`` and the
``connection_class`` argument of ``Redis.from_url`` (and of ``Sentinel.master_for``'s pool).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio import sentinel

from protocol.redis_clients import SENTINEL_SCHEME, redis_from_url


class _HiredisPacking:
    """Mixed into each of redis.asyncio's connection classes, before it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        command = args[0]
        if isinstance(command, str) and " " not in command:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # a type only redis-py converts (bytearray), or one it refuses
        return super().pack_command(*args)  # type: ignore[misc]


class Connection(_HiredisPacking, aioredis.Connection):
    """redis://"""


class SSLConnection(_HiredisPacking, aioredis.SSLConnection):
    """rediss://"""


class UnixDomainSocketConnection(_HiredisPacking, aioredis.UnixDomainSocketConnection):
    """unix://"""


class SentinelManagedConnection(_HiredisPacking, sentinel.SentinelManagedConnection):
    """redis+sentinel:// (protocol/redis_clients.py)"""


#: the connection class of each URL scheme rollcall accepts for Redis
_BY_SCHEME = {
    "redis": Connection,
    "rediss": SSLConnection,
    "unix": UnixDomainSocketConnection,
    SENTINEL_SCHEME: SentinelManagedConnection,
}


def from_url(url: str, **kwargs: Any) -> aioredis.Redis:
    """`protocol.redis_clients.redis_from_url` (redis-py's URLs, and Sentinel's), its pool's
    connections packing with hiredis."""
    scheme = urllib.parse.urlsplit(url).scheme
    return redis_from_url(url, connection_class=_BY_SCHEME.get(scheme, Connection), **kwargs)
