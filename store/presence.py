"""Presence keys in Redis: who is in which lesson, read by the platform's other services.

The keys, their types and TTLs are documented in docs/redis-keys.md; the writes themselves are
store/join_lesson.lua, run once per join so that each join is atomic on its own. The joins that
arrive together are sent as one pipeline of EVALSHA calls (one round trip), and each gets its own
outcome from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import pathlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

import metrics
from store.coalesce import Coalescer
from store.errors import StoreUnavailable

BACKEND = "redis"
PRESENCE_TTL = 86400  # seconds; lesson_teacher_{lesson_id} and {client_id} (join_lesson.md)
JOIN_SCRIPT = (pathlib.Path(__file__).with_name("join_lesson.lua")).read_text()
JOIN_SCRIPT_SHA = hashlib.sha1(JOIN_SCRIPT.encode()).hexdigest()

SEAT_KEY = "lesson_seat_{lesson_id}"
TEACHER_KEY = "lesson_teacher_{lesson_id}"
STUDENTS_KEY = "lesson_student_{lesson_id}"
# The teacher's `{user_id}` key and the participant's `{client_id}` key are the bare ids.

MODE_TEACHER = "teacher"
MODE_PARTICIPANT = "participant"
MODE_SEATS = "seats"


@dataclass(frozen=True)
class TeacherJoin:
    """Steps 5-7 for a teacher."""

    lesson_id: str
    seat_count: int
    sid: str
    user_id: str


@dataclass(frozen=True)
class ParticipantJoin:
    """Steps 5 and 7-9 for a participant with a verified access token."""

    lesson_id: str
    seat_count: int
    sid: str
    client_id: str
    role: str


@dataclass(frozen=True)
class SeatsOnly:
    """Step 5 alone, for a participant without an access token."""

    lesson_id: str
    seat_count: int


Join = TeacherJoin | ParticipantJoin | SeatsOnly


@dataclass(frozen=True)
class JoinOutcome:
    """What the script found: whether it created the seat map, and whether the participant's
    `{client_id}` key already existed (a reconnect)."""

    seat_map_created: bool
    reconnect: bool


class PresenceStore:
    """Writes the presence keys of the join_lesson contract (see docs/redis-keys.md)."""

    def __init__(self, client: aioredis.Redis, timeout: float, key_prefix: str = "") -> None:
        self._redis = client
        self._timeout = timeout
        self._prefix = key_prefix
        self._joins: Coalescer[Join, JoinOutcome] = Coalescer(self.join_many)

    @classmethod
    def open(cls, url: str, timeout: float, key_prefix: str = "") -> PresenceStore:
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # No retries: an outage must answer UNAVAILABLE within `timeout`, and a retried
            # pipeline could run a join's script twice. Stale pooled connections are replaced
            # when they are checked out.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, timeout, key_prefix)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers PING in time."""
        async with self._available():
            await self._redis.ping()

    async def join(self, join: Join) -> JoinOutcome:
        """Write one join's keys; batched with concurrent joins into one pipeline."""
        return await self._joins.submit(join)

    async def join_many(self, joins: Sequence[Join]) -> list[JoinOutcome | Exception]:
        """Run the join script once per join in one pipeline; each join gets its own outcome.

        A join whose script fails (e.g. a key of the wrong type) gets the error and writes
        nothing; the others are not affected. A Redis that does not answer fails them all with
        StoreUnavailable.
        """
        calls = [self._script_call(join) for join in joins]
        async with self._available():
            results = await self._evalsha_all(calls)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:
                # Redis restarted or its script cache was flushed: load the script, run those again.
                await self._redis.script_load(JOIN_SCRIPT)
                retried = await self._evalsha_all([calls[i] for i in missing])
                for i, result in zip(missing, retried, strict=True):
                    results[i] = result
        return [
            result
            if isinstance(result, Exception)
            else JoinOutcome(seat_map_created=bool(result[0]), reconnect=bool(result[1]))
            for result in results
        ]

    async def _evalsha_all(self, calls: Sequence[tuple[str, ...]]) -> list:
        async with self._redis.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.execute_command("EVALSHA", JOIN_SCRIPT_SHA, *args)
            return await pipe.execute(raise_on_error=False)

    def _script_call(self, join: Join) -> tuple[str, ...]:
        """EVALSHA's arguments after the SHA: numkeys, KEYS, then ARGV (see join_lesson.lua)."""
        seat_key = self.key(SEAT_KEY.format(lesson_id=join.lesson_id))
        if isinstance(join, TeacherJoin):
            keys = (
                seat_key,
                self.key(TEACHER_KEY.format(lesson_id=join.lesson_id)),
                self.key(join.user_id),
            )
            argv = (MODE_TEACHER, join.seat_count, join.sid, PRESENCE_TTL,
                    join.user_id, join.lesson_id)
        elif isinstance(join, ParticipantJoin):
            keys = (
                seat_key,
                self.key(join.client_id),
                self.key(STUDENTS_KEY.format(lesson_id=join.lesson_id)),
            )
            argv = (MODE_PARTICIPANT, join.seat_count, join.sid, PRESENCE_TTL,
                    join.client_id, join.role)
        else:
            keys = (seat_key,)
            argv = (MODE_SEATS, join.seat_count, "", PRESENCE_TTL)
        return (str(len(keys)), *keys, *(str(arg) for arg in argv))

    def key(self, name: str) -> str:
        """The Redis key of `name`, with the configured prefix (empty by default)."""
        return self._prefix + name

    @contextlib.asynccontextmanager
    async def _available(self) -> AsyncIterator[None]:
        """Turns a Redis that does not answer in time, or refuses, into StoreUnavailable."""
        try:
            with metrics.store_call(BACKEND):
                async with asyncio.timeout(self._timeout):
                    yield
        except TimeoutError:
            raise StoreUnavailable(BACKEND, "timed out") from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(BACKEND, str(exc)) from exc

    async def close(self) -> None:
        await self._joins.close()
        await self._redis.aclose()

