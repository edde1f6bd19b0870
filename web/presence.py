"""Reads one lesson's live presence back from the Redis keys that join_lesson writes.

The admin view shows exactly what the platform's other services would read, so it reads the
same keys (named in store.presence) rather than any in-process state: with several rollcall
processes behind a load balancer, any one of them shows the whole lesson.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import metrics
from store.errors import StoreUnavailable
from store.presence import BACKEND, SEAT_KEY, STUDENTS_KEY, TEACHER_KEY


@dataclass(frozen=True)
class Teacher:
    user_id: str
    sid: str


@dataclass(frozen=True)
class Participant:
    """A participant of the lesson; `role` is None once their `{client_id}` key has expired."""

    client_id: str
    sid: str
    role: str | None


@dataclass(frozen=True)
class LessonPresence:
    lesson_id: str
    teachers: list[Teacher]
    participants: list[Participant]
    seats: dict[str, str]

    def as_json(self) -> dict[str, object]:
        """The document GET /lessons/{lesson_id} answers."""
        return {
            "lesson_id": self.lesson_id,
            "teachers": [{"user_id": t.user_id, "sid": t.sid} for t in self.teachers],
            "participants": [
                {"client_id": p.client_id, "sid": p.sid, "role": p.role}
                for p in self.participants
            ],
            "seats": self.seats,
        }


def _seat_order(seat: str) -> tuple[int, int | str]:
    """Seats "1" … "n" in numeric order, any other field after them."""
    return (0, int(seat)) if seat.isdigit() else (1, seat)


class PresenceReader:
    """Reads the presence keys of one lesson in two pipelined round trips."""

    def __init__(self, client: aioredis.Redis, timeout: float, key_prefix: str = "") -> None:
        self._redis = client
        self._timeout = timeout
        self._prefix = key_prefix

    @classmethod
    def open(cls, url: str, timeout: float, key_prefix: str = "") -> PresenceReader:
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        return cls(client, timeout, key_prefix)

    async def lesson(self, lesson_id: str) -> LessonPresence:
        """The lesson's teachers, participants and seat map; empty when nobody has joined."""
        async with self._available():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._prefix + TEACHER_KEY.format(lesson_id=lesson_id))
                pipe.hgetall(self._prefix + STUDENTS_KEY.format(lesson_id=lesson_id))
                pipe.hgetall(self._prefix + SEAT_KEY.format(lesson_id=lesson_id))
                teachers, students, seats = await pipe.execute()
            client_ids = sorted(students)
            profiles: list[dict[str, str]] = []
            if client_ids:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for client_id in client_ids:
                        pipe.hgetall(self._prefix + client_id)
                    profiles = await pipe.execute()
        return LessonPresence(
            lesson_id=lesson_id,
            teachers=[Teacher(user_id, sid) for user_id, sid in sorted(teachers.items())],
            participants=[
                Participant(client_id, students[client_id], profile.get("role"))
                for client_id, profile in zip(client_ids, profiles, strict=True)
            ],
            seats={seat: seats[seat] for seat in sorted(seats, key=_seat_order)},
        )

    @contextlib.asynccontextmanager
    async def _available(self) -> AsyncIterator[None]:
        """Times the reads, and turns a Redis that does not answer into StoreUnavailable."""
        with metrics.store_call(BACKEND):
            try:
                async with asyncio.timeout(self._timeout):
                    yield
            except TimeoutError:
                raise StoreUnavailable(BACKEND, "timed out") from None
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                raise StoreUnavailable(BACKEND, str(exc)) from exc

    async def close(self) -> None:
        await self._redis.aclose()
