"""store.redis_packing: hiredis packs the very bytes redis-py's own packer sends, and refuses what
it refuses with the same error type."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from store import redis_packing

COMMANDS = [
    ("EVALSHA", "a" * 40, 3, "k:lesson_seat_L1", "rollcall:held:p", "x", "join", 40, "sid-1", 120),
    ("SCRIPT LOAD", "return 1"),
    ("PING",),
    ("HSET", "k", "field", "välue ✓", "n", -7, "f", 1.5, "b", b"\x00\xff"),
    ("SET", "big", 10**20, "empty", ""),
    ("SET", "k", bytearray(b"\x00ab")),
    ("SET", "k", memoryview(b"ab\xff")),
    ("CLIENT SETNAME", "rollcall"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_same_bytes_as_redis_py(command):
    ours = redis_packing.Connection().pack_command(*command)
    theirs = aioredis.Connection().pack_command(*command)
    assert b"".join(ours) == b"".join(theirs)


def test_pipeline_packs_the_same_bytes():
    ours = redis_packing.Connection().pack_commands(COMMANDS)
    theirs = aioredis.Connection().pack_commands(COMMANDS)
    assert b"".join(ours) == b"".join(theirs)


@pytest.mark.parametrize("value", [None, True, object()])
def test_unsendable_values_are_data_errors(value):
    with pytest.raises(DataError):
        redis_packing.Connection().pack_command("SET", "k", value)
    with pytest.raises(DataError):
        aioredis.Connection().pack_command("SET", "k", value)


def test_lone_surrogate_is_refused_like_redis_py():
    with pytest.raises(UnicodeEncodeError):
        redis_packing.Connection().pack_command("SET", "k", "\ud800")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:1/0", redis_packing.Connection),
        ("rediss://127.0.0.1:1/0", redis_packing.SSLConnection),
        ("unix:///tmp/none.sock", redis_packing.UnixDomainSocketConnection),
    ],
)
def test_from_url_keeps_the_scheme_and_packs_with_hiredis(url, expected):
    client = redis_packing.from_url(url, decode_responses=True)
    assert client.connection_pool.connection_class is expected
    assert client.connection_pool.connection_kwargs["decode_responses"] is True
