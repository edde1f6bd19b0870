"""Lessons and seat assignments, read from the platform's PostgreSQL through aiopg."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aiopg
import psycopg2

import metrics
from store.coalesce import Coalescer
from store.errors import StoreUnavailable

BACKEND = "postgres"
POOL_MAX_SIZE = 10
#: the most seats a lesson's seat map may have (docs/redis-keys.md): the join script builds the
#: map in one run, during which Redis serves nobody else, so a seat_count off by orders of
#: magnitude in the row must not reach it (10 000 seats: 18 ms of Redis time, measured with
#: SLOWLOG on the shared 2-core test machine; 10^9 would be hours and ~100 GB)
MAX_SEAT_COUNT = 10_000

# One round trip for a whole batch of joins: the lesson and the caller's seat of each
# (lesson_id, user_id) pair, numbered so that every pair gets its own row back, found or not.
LOOKUP_QUERY = """
SELECT q.i, l.seat_count, sa.seat
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS q(lesson_id, user_id, i)
LEFT JOIN lesson l ON l.id = q.lesson_id
LEFT JOIN student_attend sa ON sa.lesson_id = l.id AND sa.student_id = q.user_id
ORDER BY q.i
"""

# The lesson and every student_attend row of it (the roster view): one row per student, or one
# row with a NULL student_id for a lesson nobody is enrolled in, or none for no lesson.
ENROLMENT_QUERY = """
SELECT l.seat_count, sa.student_id, sa.seat
FROM lesson l
LEFT JOIN student_attend sa ON sa.lesson_id = l.id
WHERE l.id = %s
"""


@dataclass(frozen=True)
class LessonSeat:
    """What a join needs from PostgreSQL: the lesson's size and the caller's seat, if any."""

    seat_count: int
    seat: int | None


@dataclass(frozen=True)
class Enrolment:
    """Who is expected in a lesson: its size, and each enrolled student's seat (None: no seat)."""

    seat_count: int
    seats: dict[str, int | None]


class LessonStore:
    """Read-only access to `lesson` and `student_attend`.

    The pool opens connections lazily (minsize 0), so the server starts while PostgreSQL is down
    and recovers by itself when it comes back. Lookups that arrive together share one query.
    """

    def __init__(self, pool: aiopg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        #: queries waiting for a connection or for PostgreSQL
        self.in_flight = 0
        self._lookups: Coalescer[tuple[str, str], LessonSeat | None] = Coalescer(
            self.lookup_many
        )

    @classmethod
    async def open(cls, dsn: str, store_timeout: float) -> LessonStore:
        pool = await aiopg.create_pool(
            dsn, minsize=0, maxsize=POOL_MAX_SIZE, timeout=store_timeout
        )
        return cls(pool, store_timeout)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless PostgreSQL answers a trivial query in time."""
        await self._fetchall("SELECT 1", ())

    async def lookup(self, lesson_id: str, user_id: str) -> LessonSeat | None:
        """The lesson and `user_id`'s seat in it; None when the lesson does not exist.

        Batched with the lookups of concurrent joins (see store/coalesce.py).
        """
        return await self._lookups.submit((lesson_id, user_id))

    async def lookup_many(
        self, pairs: Sequence[tuple[str, str]]
    ) -> list[LessonSeat | None]:
        """`lookup` for many (lesson_id, user_id) pairs in one query, in the pairs' order."""
        lesson_ids = [lesson_id for lesson_id, _ in pairs]
        user_ids = [user_id for _, user_id in pairs]
        rows = await self._fetchall(LOOKUP_QUERY, (lesson_ids, user_ids))
        return [
            None if seat_count is None else LessonSeat(seat_count, seat)
            for _, seat_count, seat in rows
        ]

    async def enrolment(self, lesson_id: str) -> Enrolment | None:
        """The lesson's seat_count and every student_attend row of it; None when there is no
        such lesson. One query, not batched: the admin views ask for it, not the joins."""
        rows = await self._fetchall(ENROLMENT_QUERY, (lesson_id,))
        if not rows:
            return None
        return Enrolment(
            seat_count=rows[0][0],
            seats={student: seat for _, student, seat in rows if student is not None},
        )

    async def _fetchall(self, query: str, params: tuple) -> list[tuple]:
        self.in_flight += 1
        try:
            with metrics.store_call(BACKEND):
                async with asyncio.timeout(self._timeout):
                    async with self._pool.acquire() as conn, conn.cursor() as cur:
                        await cur.execute(query, params)
                        return await cur.fetchall()
        except TimeoutError:
            raise StoreUnavailable(BACKEND, "timed out") from None
        except (psycopg2.OperationalError, psycopg2.InterfaceError, OSError) as exc:
            raise StoreUnavailable(BACKEND, _first_line(exc)) from exc
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        await self._lookups.close()
        self._pool.close()
        await self._pool.wait_closed()


def _first_line(exc: BaseException) -> str:
    """libpq's messages span several lines; the first one says what happened."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
