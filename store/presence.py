"""Presence keys in Redis: who is in which lesson, read by the platform's other services.

The keys, their types and TTLs are documented in docs/redis-keys.md; the writes themselves are
store/join_lesson.lua, run once per join so that each join is atomic on its own, and
store/leave_lesson.lua, run once per disconnect. The joins (and the leaves) that arrive together
are sent as one pipeline of EVALSHA calls (one round trip), and each gets its own outcome from it.
The same script runs keep each lesson's roster (store/roster.py), rollcall's own bookkeeping.

They also keep this process's held record (store/keys.py HELD_KEY): every presence entry and
roster record its sids hold, so that a survivor can clear them if the process dies
(store/liveness.py). Once a survivor has swept the process, its join script refuses to write
(ProcessSwept).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import pathlib
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as json_string

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

import metrics
from store import redis_packing
from store.coalesce import Coalescer
from store.errors import ProcessSwept, StoreUnavailable
from store.keys import (
    HELD_KEY,
    PROCESSES_KEY,
    ROSTER_KEY,
    SEAT_KEY,
    STUDENTS_KEY,
    SWEPT_KEY,
    TEACHER_KEY,
    UNVERIFIED_KEY,
)
from store.roster import ROSTER_TTL, claim_field

BACKEND = "redis"
#: Redis connections the presence client holds at most. redis-py 8's pool refuses a call past
#: its limit at once ("Too many connections"): a whole school closing at once put more batches
#: in flight than that and most of their leaves failed, so calls wait in available() instead.
MAX_CONNECTIONS = 100
#: ... and one more, which only the health probe's PING takes: a probe says whether Redis
#: answers, not how long the queue of calls is (a whole school leaving at once queued thousands
#: of leaves, and /healthz waited 2.4 s behind them)
HEALTH_CONNECTIONS = 1
PRESENCE_TTL = 86400  # seconds; lesson_teacher_{lesson_id} and {client_id} (join_lesson.md)
#: seconds the held records and the registry of processes outlive their last write: what a
#: dead process held can be swept for this long after it died
RECORD_TTL = 7 * 86400
#: seconds a swept process stays refused (its swept key); a process that could not renew its
#: liveness for this long takes itself as swept, whatever Redis says (handlers/healing.py)
SWEPT_TTL = 86400
#: the error a script answers when the process it writes for has been swept (join_lesson.lua)
SWEPT_REPLY = "SWEPT"


@dataclass(frozen=True)
class Bookkeeping:
    """What the join and leave scripts take first to keep a process's held record
    (presence_lib.lua): the held record, swept key and registry, then the TTL, the process id
    and the roster's TTL."""

    process_id: str
    keys: tuple[str, str, str]
    argv: tuple[str, str, str]


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1, for EVALSHA."""

    text: str
    sha: str

    @classmethod
    def load(cls, name: str, lib: bool = True) -> Script:
        """`name`, with the shared functions of presence_lib.lua in front of it if `lib`."""
        here = pathlib.Path(__file__).parent
        text = (here / name).read_text()
        if lib:
            text = (here / "presence_lib.lua").read_text() + text
        return cls(text, hashlib.sha1(text.encode()).hexdigest())


JOIN_SCRIPT = Script.load("join_lesson.lua")
LEAVE_SCRIPT = Script.load("leave_lesson.lua")
HAND_OVER_SCRIPT = Script.load("hand_over.lua")

MODE_TEACHER = "teacher"
MODE_PARTICIPANT = "participant"
MODE_SEATS = "seats"
# Kinds of a leaving list (presence_lib.lua).
KIND_TEACHER = "teacher"
KIND_PARTICIPANT = "participant"
KIND_ROSTER = "roster"
#: the kind of an unverified claim's held field (the scripts clear it as a roster record)
KIND_CLAIM = "claim"
NO_SUCCESSOR = ""
#: the held field of a join that writes no entry (mode "seats")
NOT_HELD = ""


# The entries and joins are slotted: a connection holds its last join and its entries for its
# whole life (~40 bytes less each than with an instance dict: docs/benchmarks.md).
@dataclass(frozen=True, slots=True)
class TeacherEntry:
    """A teacher's presence in a lesson: field `{user_id}` of lesson_teacher_{lesson_id}."""

    lesson_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class ParticipantEntry:
    """A participant's presence: field `{client_id}` of lesson_student_{lesson_id}, and the `sid`
    field of `{client_id}`."""

    lesson_id: str
    client_id: str


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """A participant's roster record: field `{user_id}` of rollcall:roster:{lesson_id}, held by
    the sid of its last join (presence_lib.lua)."""

    lesson_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class ClaimEntry:
    """An unverified claim: field `[user_id, client_id]` of rollcall:unverified:{lesson_id}, a
    record like a roster record's, kept and cleared the same way but never the user's."""

    lesson_id: str
    user_id: str
    client_id: str

    @property
    def field(self) -> str:
        """Its field in the lesson's hash of unverified claims."""
        return claim_field(self.user_id, self.client_id)


Entry = TeacherEntry | ParticipantEntry | RosterEntry | ClaimEntry


def is_record(entry: Entry) -> bool:
    """Whether `entry` is a record like a roster record (a roster record or an unverified claim),
    which the scripts keep and clear by the roster's rules."""
    return isinstance(entry, RosterEntry | ClaimEntry)


def held_field(entry: Entry) -> str:
    """The field naming `entry` in a held record: JSON `[kind, lesson_id, id]` (`[kind,
    lesson_id, user_id, client_id]` for a claim), unambiguous whatever the ids hold, and enough
    for a survivor to find the entry's keys. Built from the C string encoder of the json module:
    it runs once per join."""
    if isinstance(entry, ClaimEntry):
        return (
            f'["{KIND_CLAIM}",{json_string(entry.lesson_id)},{json_string(entry.user_id)},'
            f"{json_string(entry.client_id)}]"
        )
    if isinstance(entry, TeacherEntry):
        kind, ident = KIND_TEACHER, entry.user_id
    elif isinstance(entry, RosterEntry):
        kind, ident = KIND_ROSTER, entry.user_id
    else:
        kind, ident = KIND_PARTICIPANT, entry.client_id
    return f'["{kind}",{json_string(entry.lesson_id)},{json_string(ident)}]'


def parse_held_field(field: str) -> Entry | None:
    """The entry a held field names, or None if it is not one `held_field` writes."""
    try:
        value = json.loads(field)
    except ValueError:
        return None
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return None
    if len(value) == 4 and value[0] == KIND_CLAIM:
        return ClaimEntry(value[1], value[2], value[3])
    if len(value) != 3:
        return None
    kind, lesson_id, ident = value
    if kind == KIND_TEACHER:
        return TeacherEntry(lesson_id, ident)
    if kind == KIND_PARTICIPANT:
        return ParticipantEntry(lesson_id, ident)
    if kind == KIND_ROSTER:
        return RosterEntry(lesson_id, ident)
    return None


def new_process_id() -> str:
    """A random id for one start of a process (or for it again after it was swept)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class ParticipantJoin:
    """Steps 5 and 7-9 for a participant with a verified access token."""

    lesson_id: str
    seat_count: int
    sid: str
    client_id: str
    role: str
    #: the request's user_id (student_attend's student_id): whose roster record the join keeps
    user_id: str
    #: whether the token vouches for `user_id`; if not, the join keeps an unverified claim
    #: instead, and the user's roster record is left alone
    verified: bool = True
    leaving: tuple[Entry, ...] = ()
    successors: tuple[str, ...] = ()

    @property
    def entries(self) -> tuple[Entry, ...]:
        """What the join writes that the sid then holds."""
        record: Entry = (
            RosterEntry(self.lesson_id, self.user_id)
            if self.verified
            else ClaimEntry(self.lesson_id, self.user_id, self.client_id)
        )
        return ParticipantEntry(self.lesson_id, self.client_id), record


@dataclass(frozen=True, slots=True)
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
    lesson's roster hash and hash of unverified claims (raw: store.roster parses them)."""

    teachers: dict[str, str]
    students: dict[str, str]
    seats: dict[str, str]
    profiles: dict[str, dict[str, str]]
    roster: dict[str, str]
    unverified: dict[str, str]


class PresenceStore:
    """Writes the presence keys of the join_lesson contract (see docs/redis-keys.md), the
    lessons' rosters (`roster_ttl` 0 turns them off), and this process's held record of both."""

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
        self._roster_ttl = roster_ttl
        #: one permit per pooled connection: see MAX_CONNECTIONS
        self._connections = asyncio.Semaphore(MAX_CONNECTIONS)
        self._health_connections = asyncio.Semaphore(HEALTH_CONNECTIONS)
        #: calls inside `available()`, waiting for a connection or for Redis
        self.in_flight = 0
        self._bookkeeping = Bookkeeping("", ("", "", ""), ("", "", ""))
        #: whose held record the scripts keep; store/liveness.py renews it and replaces it
        self.process_id = new_process_id()
        #: set when a join script found this process swept (the process must start over)
        self.swept = asyncio.Event()
        self._joins: Coalescer[Join, JoinOutcome] = Coalescer(self.join_many)
        self._leaves: Coalescer[Leave, int] = Coalescer(self.leave_many)
        self._handovers: Coalescer[Leave, int] = Coalescer(self.hand_over_many)

    @property
    def roster_ttl(self) -> int:
        """Seconds a lesson's roster outlives its last change; 0: the roster is off."""
        return self._roster_ttl

    @property
    def process_id(self) -> str:
        return self._process_id

    @process_id.setter
    def process_id(self, process_id: str) -> None:
        self._process_id = process_id
        keys = (
            self.key(HELD_KEY.format(process_id=process_id)),
            self.key(SWEPT_KEY.format(process_id=process_id)),
            self.key(PROCESSES_KEY),
        )
        argv = (str(RECORD_TTL), process_id, str(self._roster_ttl))
        self._bookkeeping = Bookkeeping(process_id, keys, argv)

    @classmethod
    def open(
        cls, url: str, timeout: float, key_prefix: str = "", roster_ttl: int = ROSTER_TTL
    ) -> PresenceStore:
        client = redis_packing.from_url(
            url,
            decode_responses=True,
            # Every call goes through available(), which bounds the whole call (a batch's
            # pipeline included) by `timeout`; a socket_timeout too would enter a timeout of its
            # own for each reply of a pipeline and run each send in a task of its own, ~3% of a
            # join's CPU for nothing. Said explicitly: redis-py 8.2 made 5 s the default.
            socket_timeout=None,
            socket_connect_timeout=timeout,
            max_connections=MAX_CONNECTIONS + HEALTH_CONNECTIONS,
            # No retries: an outage must answer UNAVAILABLE within `timeout`, and a retried
            # pipeline could run a join's script twice. Stale pooled connections are replaced
            # when they are checked out.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, timeout, key_prefix, roster_ttl)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers PING in time; on the health probe's own
        connection (HEALTH_CONNECTIONS), not behind the calls waiting for one."""
        async with self._guarded(self._health_connections):
            await self._redis.ping()

    async def join(self, join: Join) -> JoinOutcome:
        """Write one join's keys; batched with concurrent joins into one pipeline."""
        return await self._joins.submit(join)

    async def join_many(self, joins: Sequence[Join]) -> list[JoinOutcome | Exception]:
        """Run the join script once per join in one pipeline; each join gets its own outcome.

        A join whose script fails (e.g. a key of the wrong type) gets the error and writes
        nothing; the others are not affected. A Redis that does not answer fails them all with
        StoreUnavailable; a process that has been swept gets ProcessSwept for each.
        """
        book = self._bookkeeping
        calls = [self._script_call(j, book) for j in joins]
        results = await self.run_script(JOIN_SCRIPT, calls)
        return [self._join_outcome(result, book.process_id) for result in results]

    def _join_outcome(self, result: object, process_id: str) -> JoinOutcome | Exception:
        if isinstance(result, Exception):
            return self.script_error(result, process_id)
        assert isinstance(result, list)
        return JoinOutcome(seat_map_created=bool(result[0]), reconnect=bool(result[1]))

    def script_error(self, error: Exception, process_id: str) -> Exception:
        """What a script's error reply means: ProcessSwept when the script found `process_id`
        swept (and the swept event set, unless that id was replaced meanwhile), else itself."""
        if isinstance(error, ResponseError) and str(error).startswith(SWEPT_REPLY):
            if process_id == self.process_id:  # not an identity already replaced
                self.swept.set()
            return ProcessSwept(process_id)
        return error

    async def leave(self, leave: Leave) -> int:
        """Clear what a disconnected sid still holds; returns the number of fields cleared.
        Batched with concurrent leaves into one pipeline."""
        return await self._leaves.submit(leave)

    async def leave_many(self, leaves: Sequence[Leave]) -> list[int | Exception]:
        """Run the leave script once per leave in one pipeline; each gets its own outcome."""
        book = self._bookkeeping
        calls = []
        for leave in leaves:
            keys, argv = self.entry_list(leave.entries, leave.successors)
            calls.append(
                (str(len(keys) + 3), *book.keys, *keys, leave.sid, *book.argv, *argv)
            )
        return await self.run_script(LEAVE_SCRIPT, calls)

    async def hand_over(self, leave: Leave) -> int:
        """For a connection that a stopping process closed and hands over instead of leaving
        (hand_over.lua): its fields stay, and each roster record it holds notes when it ended;
        returns how many did. Batched with concurrent ones into one pipeline."""
        return await self._handovers.submit(leave)

    async def hand_over_many(self, leaves: Sequence[Leave]) -> list[int | Exception]:
        """Run the hand-over script once per closed connection in one pipeline."""
        calls = []
        for leave in leaves:
            keys, argv = self.entry_list([entry for entry in leave.entries if is_record(entry)])
            calls.append((str(len(keys)), *keys, leave.sid, str(self._roster_ttl), *argv))
        return await self.run_script(HAND_OVER_SCRIPT, calls)

    async def run_script(self, script: Script, calls: Sequence[tuple[str | int, ...]]) -> list:
        """EVALSHA `script` once per call in one pipeline: a result or an error for each.
        Raises StoreUnavailable when Redis does not answer in time."""
        async with self.available():
            results = await self._evalsha_all(script, calls)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:
                # Redis restarted or its script cache was flushed: load the script, run those again.
                await self._redis.script_load(script.text)
                retried = await self._evalsha_all(script, [calls[i] for i in missing])
                for i, result in zip(missing, retried, strict=True):
                    results[i] = result
        return results

    async def _evalsha_all(
        self, script: Script, calls: Sequence[tuple[str | int, ...]]
    ) -> list:
        async with self._redis.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.execute_command("EVALSHA", script.sha, *args)
            return await pipe.execute(raise_on_error=False)

    def entry_list(
        self, entries: Sequence[Entry], sids: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """The KEYS and ARGV of an entry list (presence_lib.lua); `sids` parallels `entries`
        (the successors of a leave, the recorded sids of a sweep), missing ones meaning none."""
        keys: list[str] = []
        argv: list[str] = []
        padded = (*sids, *(NO_SUCCESSOR,) * (len(entries) - len(sids)))
        for entry, sid in zip(entries, padded, strict=True):
            if isinstance(entry, TeacherEntry):
                keys.append(self.key(TEACHER_KEY.format(lesson_id=entry.lesson_id)))
                argv += (KIND_TEACHER, entry.user_id, sid, held_field(entry))
            elif isinstance(entry, RosterEntry | ClaimEntry):
                key, field = self.record_place(entry)
                keys.append(key)
                argv += (KIND_ROSTER, field, sid, held_field(entry))
            else:
                keys += (
                    self.key(STUDENTS_KEY.format(lesson_id=entry.lesson_id)),
                    self.key(entry.client_id),
                )
                argv += (KIND_PARTICIPANT, entry.client_id, sid, held_field(entry))
        return keys, argv

    def record_place(self, entry: Entry) -> tuple[str, str]:
        """The key and field of a roster record, or of an unverified claim."""
        if isinstance(entry, ClaimEntry):
            return self.key(UNVERIFIED_KEY.format(lesson_id=entry.lesson_id)), entry.field
        assert isinstance(entry, RosterEntry)
        return self.key(ROSTER_KEY.format(lesson_id=entry.lesson_id)), entry.user_id

    def _script_call(self, join: Join, book: Bookkeeping) -> tuple[str | int, ...]:
        """EVALSHA's arguments after the SHA: numkeys, KEYS, then ARGV (see join_lesson.lua);
        numbers as they are, which the packer writes in decimal as str() would."""
        keys: tuple[str, ...] = (self.key(SEAT_KEY.format(lesson_id=join.lesson_id)), *book.keys)
        common = (join.seat_count, join.sid, PRESENCE_TTL, *book.argv)
        argv: tuple[str | int, ...]
        if isinstance(join, TeacherJoin):
            keys += (
                self.key(TEACHER_KEY.format(lesson_id=join.lesson_id)),
                self.key(join.user_id),
            )
            (entry,) = join.entries
            argv = (MODE_TEACHER, *common, held_field(entry), join.user_id, join.lesson_id)
        elif isinstance(join, ParticipantJoin):
            entry, record = join.entries
            # the record kept: the user's in the roster, or else a claim among the unverified
            record_key, record_field = self.record_place(record)
            keys += (
                self.key(join.client_id),
                self.key(STUDENTS_KEY.format(lesson_id=join.lesson_id)),
                record_key,
            )
            argv = (
                MODE_PARTICIPANT,
                *common,
                held_field(entry),
                join.client_id,
                join.role,
                record_field,
                held_field(record),
            )
        else:
            argv = (MODE_SEATS, *common, NOT_HELD)
        if not join.leaving:  # the common join: nothing held elsewhere to clear first
            return (str(len(keys)), *keys, *argv)
        leaving_keys, leaving_argv = self.entry_list(join.leaving, join.successors)
        return (str(len(keys) + len(leaving_keys)), *keys, *leaving_keys, *argv, *leaving_argv)

    async def read_lesson(self, lesson_id: str) -> LessonKeys:
        """What the lesson's keys hold now, in two pipelined round trips (the admin view)."""
        async with self.available():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.key(TEACHER_KEY.format(lesson_id=lesson_id)))
                pipe.hgetall(self.key(STUDENTS_KEY.format(lesson_id=lesson_id)))
                pipe.hgetall(self.key(SEAT_KEY.format(lesson_id=lesson_id)))
                pipe.hgetall(self.key(ROSTER_KEY.format(lesson_id=lesson_id)))
                pipe.hgetall(self.key(UNVERIFIED_KEY.format(lesson_id=lesson_id)))
                teachers, students, seats, roster, unverified = await pipe.execute()
            profiles: dict[str, dict[str, str]] = {}
            if students:
                client_ids = sorted(students)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for client_id in client_ids:
                        pipe.hgetall(self.key(client_id))
                    profiles = dict(zip(client_ids, await pipe.execute(), strict=True))
        return LessonKeys(teachers, students, seats, profiles, roster, unverified)

    def key(self, name: str) -> str:
        """The Redis key of `name`, with the configured prefix (empty by default)."""
        return self._prefix + name

    @property
    def bookkeeping(self) -> Bookkeeping:
        """The held record, swept key and registry of the current process id, for scripts that
        keep them besides the join and leave scripts (store/reassertion.py)."""
        return self._bookkeeping

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client, for the bookkeeping of store/liveness.py (inside `available()`)."""
        return self._redis

    async def drop_idle_connections(self) -> None:
        """Close the pooled connections not in use (new ones are opened as needed): after one
        of them was found closed by Redis (a restart, a failover), the others likely are too,
        and each would fail a join once."""
        await self._redis.connection_pool.disconnect(inuse_connections=False)

    def available(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Turns a Redis that does not answer in time, or refuses, into StoreUnavailable; the
        wait for a free connection counts in the time. Calls do not nest: each holds one."""
        return self._guarded(self._connections)

    @contextlib.asynccontextmanager
    async def _guarded(self, permits: asyncio.Semaphore) -> AsyncIterator[None]:
        self.in_flight += 1
        try:
            with metrics.store_call(BACKEND):
                async with asyncio.timeout(self._timeout), permits:
                    yield
        except TimeoutError:
            raise StoreUnavailable(BACKEND, "timed out") from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(BACKEND, str(exc)) from exc
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        await asyncio.gather(self._joins.close(), self._leaves.close(), self._handovers.close())
        await self._redis.aclose()
