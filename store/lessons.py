"""Lessons and seat assignments, read from the platform's PostgreSQL through aiopg."""

from __future__ import annotations

import asyncio

import aiopg
import psycopg2

from store.errors import StoreUnavailable

BACKEND = "postgres"
POOL_MAX_SIZE = 10


class LessonStore:
    """Read-only access to `lesson` and `student_attend`.

    The pool opens connections lazily (minsize 0), so the server starts while PostgreSQL is down
    and recovers by itself when it comes back.
    """

    def __init__(self, pool: aiopg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout

    @classmethod
    async def open(cls, dsn: str, timeout: float) -> LessonStore:
        pool = await aiopg.create_pool(dsn, minsize=0, maxsize=POOL_MAX_SIZE, timeout=timeout)
        return cls(pool, timeout)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless PostgreSQL answers a trivial query in time."""
        await self._fetchone("SELECT 1", ())

    async def _fetchone(self, query: str, params: tuple) -> tuple | None:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute(query, params)
                    return await cur.fetchone()
        except TimeoutError:
            raise StoreUnavailable(BACKEND, "timed out") from None
        except (psycopg2.OperationalError, psycopg2.InterfaceError, OSError) as exc:
            raise StoreUnavailable(BACKEND, str(exc).strip().splitlines()[0]) from exc

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()
