"""Presence keys in Redis: who is in which lesson, read by the platform's other services.

The keys, their types and TTLs are documented in docs/redis-keys.md; the writes themselves are
store/join_lesson.lua, run once per join so that each join is atomic on its own, and
store/leave_lesson.lua, run once per disconnect. The joins (and the leaves) that arrive together
are sent as one pipeline of EVALSHA calls (one round trip), and each gets its own outcome from it.
The same script runs keep each lesson's roster (store/roster.py), rollcall's own bookkeeping.
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
from store.keys import ROSTER_KEY, SEAT_KEY, STUDENTS_KEY, TEACHER_KEY
from store.roster import ROSTER_TTL

BACKEND = "redis"
PRESENCE_TTL = 86400  # seconds; lesson_teacher_{lesson_id} and {client_id} (join_lesson.md)


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1, for EVALSHA."""

    text: str
    sha: str

    @classmethod
    def load(cls, name: str) -> Script:
        """`name` with the shared functions of presence_lib.lua in front of it."""
        here = pathlib.Path(__file__).parent
        text = (here / "presence_lib.lua").read_text() + (here / name).read_text()
        return cls(text, hashlib.sha1(text.encode()).hexdigest())


JOIN_SCRIPT = Script.load("join_lesson.lua")
LEAVE_SCRIPT = Script.load("leave_lesson.lua")

MODE_TEACHER = "teacher"
MODE_PARTICIPANT = "participant"
MODE_SEATS = "seats"
# Kinds of a leaving list (presence_lib.lua).
KIND_TEACHER = "teacher"
KIND_PARTICIPANT = "participant"
KIND_ROSTER = "roster"
NO_SUCCESSOR = ""


@dataclass(frozen=True)
class TeacherEntry:
    """A teacher's presence in a lesson: field `{user_id}` of lesson_teacher_{lesson_id}."""

    lesson_id: str
    user_id: str


@dataclass(frozen=True)
class ParticipantEntry:
    """A participant's presence: field `{client_id}` of lesson_student_{lesson_id}, and the `sid`
    field of `{client_id}`."""

    lesson_id: str
    client_id: str


@dataclass(frozen=True)
class RosterEntry:
    """A participant's roster record: field `{user_id}` of rollcall:roster:{lesson_id}, held by
    the sid of its last join (presence_lib.lua)."""

    lesson_id: str
    user_id: str


Entry = TeacherEntry | ParticipantEntry | RosterEntry


@dataclass(frozen=True)
class TeacherJoin:
    """Steps 5-7 for a teacher."""

    lesson_id: str
    seat_count: int
    sid: str
    user_id: str
    #: what this sid held before, cleared first where it still holds it
    leaving: tuple[Entry, ...] = ()
    successors: tuple[str, ...] = ()

    @property
    def entries(self) -> tuple[Entry, ...]:
        """What the join writes that the sid then holds (teachers are not roster entries)."""
        return (TeacherEntry(self.lesson_id, self.user_id),)


@dataclass(frozen=True)
class ParticipantJoin:
    """Steps 5 and 7-9 for a participant with a verified access token."""

    lesson_id: str
    seat_count: int
    sid: str
    client_id: str
    role: str
    #: the request's user_id (student_attend's student_id): whose roster record the join keeps
    user_id: str
    leaving: tuple[Entry, ...] = ()
    successors: tuple[str, ...] = ()

    @property
    def entries(self) -> tuple[Entry, ...]:
        """What the join writes that the sid then holds."""
        return (
            ParticipantEntry(self.lesson_id, self.client_id),
            RosterEntry(self.lesson_id, self.user_id),
        )


@dataclass(frozen=True)
class SeatsOnly:
    """Step 5 alone, for a participant without an access token (who holds no presence; `sid`
    is needed only to clear what it held before)."""

    lesson_id: str
    seat_count: int
    sid: str = ""
    leaving: tuple[Entry, ...] = ()
    successors: tuple[str, ...] = ()

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Nothing: a participant without a token holds neither presence nor a roster record."""
        return ()


Join = TeacherJoin | ParticipantJoin | SeatsOnly


@dataclass(frozen=True)
class JoinOutcome:
    """What the script found: whether it created the seat map, and whether the participant's
    `{client_id}` key already existed (a reconnect)."""

    seat_map_created: bool
    reconnect: bool


@dataclass(frozen=True)
class Leave:
    """A disconnected sid, the entries it may still hold, and for each the sid that takes it
    over ("" for none; see presence_lib.lua)."""

    sid: str
    entries: tuple[Entry, ...]
    successors: tuple[str, ...] = ()


@dataclass(frozen=True)
class LessonKeys:
    """The presence hashes of one lesson as read: lesson_teacher_, lesson_student_ and
    lesson_seat_, the {client_id} hash of each student (empty once it has expired), and the
    lesson's roster hash (raw: store.roster parses it)."""

    teachers: dict[str, str]
    students: dict[str, str]
    seats: dict[str, str]
    profiles: dict[str, dict[str, str]]
    roster: dict[str, str]


class PresenceStore:
    """Writes the presence keys of the join_lesson contract (see docs/redis-keys.md), and the
    lessons' rosters; `roster_ttl` 0 turns the roster off."""

    def __init__(
        self,
        client: aioredis.Redis,
        timeout: float,
        key_prefix: str = "",
        roster_ttl: int = ROSTER_TTL,
    ) -> None:
        self._redis = client
        self._timeout = timeout
        self._prefix = key_prefix
        self.roster_ttl = roster_ttl
        self._joins: Coalescer[Join, JoinOutcome] = Coalescer(self.join_many)
        self._leaves: Coalescer[Leave, int] = Coalescer(self.leave_many)

    @classmethod
    def open(
        cls, url: str, timeout: float, key_prefix: str = "", roster_ttl: int = ROSTER_TTL
    ) -> PresenceStore:
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
        return cls(client, timeout, key_prefix, roster_ttl)

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
        results = await self._run_script(JOIN_SCRIPT, [self._script_call(j) for j in joins])
        return [
            result
            if isinstance(result, Exception)
            else JoinOutcome(seat_map_created=bool(result[0]), reconnect=bool(result[1]))
            for result in results
        ]

    async def leave(self, leave: Leave) -> int:
        """Clear what a disconnected sid still holds; returns the number of fields cleared.
        Batched with concurrent leaves into one pipeline."""
        return await self._leaves.submit(leave)

    async def leave_many(self, leaves: Sequence[Leave]) -> list[int | Exception]:
        """Run the leave script once per leave in one pipeline; each gets its own outcome."""
        calls = []
        for leave in leaves:
            keys, argv = self._leaving(leave.entries, leave.successors)
            calls.append((str(len(keys)), *keys, leave.sid, *argv, str(self.roster_ttl)))
        return await self._run_script(LEAVE_SCRIPT, calls)

    async def _run_script(self, script: Script, calls: Sequence[tuple[str, ...]]) -> list:
        """EVALSHA `script` once per call in one pipeline: a result or an error for each."""
        async with self._available():
            results = await self._evalsha_all(script, calls)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:
                # Redis restarted or its script cache was flushed: load the script, run those again.
                await self._redis.script_load(script.text)
                retried = await self._evalsha_all(script, [calls[i] for i in missing])
                for i, result in zip(missing, retried, strict=True):
                    results[i] = result
        return results

    async def _evalsha_all(self, script: Script, calls: Sequence[tuple[str, ...]]) -> list:
        async with self._redis.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.execute_command("EVALSHA", script.sha, *args)
            return await pipe.execute(raise_on_error=False)

    def _leaving(
        self, entries: Sequence[Entry], successors: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """The KEYS and ARGV of a leaving list (presence_lib.lua); `successors` parallels
        `entries`, missing ones meaning none."""
        keys: list[str] = []
        argv: list[str] = []
        padded = (*successors, *(NO_SUCCESSOR,) * (len(entries) - len(successors)))
        for entry, successor in zip(entries, padded, strict=True):
            if isinstance(entry, TeacherEntry):
                keys.append(self.key(TEACHER_KEY.format(lesson_id=entry.lesson_id)))
                argv += (KIND_TEACHER, entry.user_id, successor)
            elif isinstance(entry, RosterEntry):
                keys.append(self.key(ROSTER_KEY.format(lesson_id=entry.lesson_id)))
                argv += (KIND_ROSTER, entry.user_id, successor)
            else:
                keys += (
                    self.key(STUDENTS_KEY.format(lesson_id=entry.lesson_id)),
                    self.key(entry.client_id),
                )
                argv += (KIND_PARTICIPANT, entry.client_id, successor)
        return keys, argv

    def _script_call(self, join: Join) -> tuple[str, ...]:
        """EVALSHA's arguments after the SHA: numkeys, KEYS, then ARGV (see join_lesson.lua)."""
        seat_key = self.key(SEAT_KEY.format(lesson_id=join.lesson_id))
        roster_user = join.user_id if isinstance(join, ParticipantJoin) else ""
        if isinstance(join, TeacherJoin):
            keys = (
                seat_key,
                self.key(TEACHER_KEY.format(lesson_id=join.lesson_id)),
                self.key(join.user_id),
            )
            argv = (
                MODE_TEACHER,
                join.seat_count,
                join.sid,
                PRESENCE_TTL,
                join.user_id,
                join.lesson_id,
            )
        elif isinstance(join, ParticipantJoin):
            keys = (
                seat_key,
                self.key(join.client_id),
                self.key(STUDENTS_KEY.format(lesson_id=join.lesson_id)),
            )
            argv = (
                MODE_PARTICIPANT,
                join.seat_count,
                join.sid,
                PRESENCE_TTL,
                join.client_id,
                join.role,
            )
        else:
            keys = (seat_key,)
            argv = (MODE_SEATS, join.seat_count, join.sid, PRESENCE_TTL)
        leaving_keys, leaving_argv = self._leaving(join.leaving, join.successors)
        return (
            str(len(keys) + len(leaving_keys) + 1),
            *keys,
            *leaving_keys,
            self.key(ROSTER_KEY.format(lesson_id=join.lesson_id)),
            *(str(arg) for arg in argv),
            *leaving_argv,
            str(self.roster_ttl),
            roster_user,
        )

    async def read_lesson(self, lesson_id: str) -> LessonKeys:
        """What the lesson's keys hold now, in two pipelined round trips (the admin view)."""
        async with self._available():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.key(TEACHER_KEY.format(lesson_id=lesson_id)))
                pipe.hgetall(self.key(STUDENTS_KEY.format(lesson_id=lesson_id)))
                pipe.hgetall(self.key(SEAT_KEY.format(lesson_id=lesson_id)))
                pipe.hgetall(self.key(ROSTER_KEY.format(lesson_id=lesson_id)))
                teachers, students, seats, roster = await pipe.execute()
            profiles: dict[str, dict[str, str]] = {}
            if students:
                client_ids = sorted(students)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for client_id in client_ids:
                        pipe.hgetall(self.key(client_id))
                    profiles = dict(zip(client_ids, await pipe.execute(), strict=True))
        return LessonKeys(teachers, students, seats, profiles, roster)

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
        await asyncio.gather(self._joins.close(), self._leaves.close())
        await self._redis.aclose()
