"""Baseline join_lesson server: the design document implemented straightforwardly.

This is what the event would look like written directly from join_lesson.design.md with
python-socketio (AsyncServer, tornado mode, default asyncio loop), aiopg and redis.asyncio: one
call per step of the sequence diagrams, in their order. It is an honest baseline, not a strawman:
both stores are pooled (aiopg pool of --pool-size, redis.asyncio's connection pool), there are no
waits, and Mixpanel is off (as in the benchmark of our server, which runs without a token).

Steps (the numbers of join_lesson.design.md):
  2. SELECT the lesson (its seat_count, needed in step 5); none -> LESSON_NOT_FOUND
  3. enter_room(sid, lesson_id)
  4. SELECT the seat from student_attend; get_session, set "seat" if any, save_session
  5. EXISTS lesson_seat_{lesson_id}; if not, HSET it with fields "1".."seat_count" = ""
  teacher:     HSET lesson_teacher_{lesson_id} {user_id} sid; EXPIRE 86400; HSET {user_id} lesson_id
  participant (token not null): decode the HS256 JWT -> client_id; get_session, set client_id and
               role, save_session; EXISTS {client_id} (reconnect -> Mixpanel, off here);
               HSET {client_id} sid/client_id/role; EXPIRE 86400; HSET lesson_student_{lesson_id}
Then ack {"status": "SUCCESS", "data": {}}.

Run: python bench/baseline_join_server.py --port P --redis-url URL --database-url URL
     --access-token-secret S
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

import aiopg
import jwt
import redis.asyncio as aioredis
import socketio
import tornado.httpserver
import tornado.web
from servers.common import until_signal

PRESENCE_TTL = 86400
TEACHER = "teacher"


def error(code: str, message: str) -> dict[str, Any]:
    return {"status": "ERROR", "data": {"code": code, "message": message}}


class BaselineJoin:
    """The join_lesson handler, one awaited call per design step."""

    def __init__(self, sio: socketio.AsyncServer, pool: aiopg.Pool, redis: aioredis.Redis,
                 secret: str, participant_roles: frozenset[str]) -> None:
        self.sio = sio
        self.pool = pool
        self.redis = redis
        self.secret = secret
        self.participant_roles = participant_roles

    async def query_one(self, sql: str, params: tuple) -> tuple | None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchone()

    async def handle(self, sid: str, data: Any = None) -> dict[str, Any]:
        # 1. the request
        if not isinstance(data, dict):
            return error("INVALID_REQUEST", "expected an object")
        user_id, lesson_id = data.get("user_id"), data.get("lesson_id")
        role, token = data.get("role"), data.get("access_token")
        if not (isinstance(user_id, str) and isinstance(lesson_id, str)
                and (role == TEACHER or role in self.participant_roles)):
            return error("INVALID_REQUEST", "bad user_id, lesson_id or role")

        # 2. check_lesson_exists
        lesson = await self.query_one("SELECT seat_count FROM lesson WHERE id = %s", (lesson_id,))
        if lesson is None:
            return error("LESSON_NOT_FOUND", "no such lesson")
        seat_count = lesson[0]

        # 3. enter_room
        await self.sio.enter_room(sid, lesson_id)

        # 4. query the seat, update and save the session
        row = await self.query_one(
            "SELECT seat FROM student_attend WHERE lesson_id = %s AND student_id = %s",
            (lesson_id, user_id))
        session = await self.sio.get_session(sid)
        if row is not None and row[0] is not None:
            session["seat"] = row[0]
        await self.sio.save_session(sid, session)

        # 5. the lesson's seat map, created once
        seat_key = f"lesson_seat_{lesson_id}"
        if not await self.redis.exists(seat_key):
            await self.redis.hset(seat_key, mapping={str(n): "" for n in range(1, seat_count + 1)})

        if role == TEACHER:
            teacher_key = f"lesson_teacher_{lesson_id}"
            await self.redis.hset(teacher_key, user_id, sid)
            await self.redis.expire(teacher_key, PRESENCE_TTL)
            await self.redis.hset(user_id, "lesson_id", lesson_id)
        elif token is not None:
            try:
                claims = jwt.decode(token, self.secret, algorithms=["HS256"])
            except jwt.InvalidTokenError:
                return error("INVALID_TOKEN", "the access token does not verify")
            client_id = claims.get("client_id") or claims.get("sub")
            if not isinstance(client_id, str):
                return error("INVALID_TOKEN", "the access token carries no client id")
            session = await self.sio.get_session(sid)
            session["client_id"] = client_id
            session["role"] = role
            await self.sio.save_session(sid, session)
            await self.redis.exists(client_id)  # a reconnect would be tracked; Mixpanel is off
            await self.redis.hset(client_id,
                                  mapping={"sid": sid, "client_id": client_id, "role": role})
            await self.redis.expire(client_id, PRESENCE_TTL)
            await self.redis.hset(f"lesson_student_{lesson_id}", client_id, sid)
        return {"status": "SUCCESS", "data": {}}


async def serve(args: argparse.Namespace) -> None:
    pool = await aiopg.create_pool(args.database_url, minsize=1, maxsize=args.pool_size)
    redis = aioredis.Redis.from_url(args.redis_url, decode_responses=True)
    sio = socketio.AsyncServer(async_mode="tornado")
    roles = frozenset(r.strip() for r in args.participant_roles.split(",") if r.strip())
    sio.on("join_lesson", BaselineJoin(sio, pool, redis, args.access_token_secret, roles).handle)
    app = tornado.web.Application([(r"/socket.io/", socketio.get_tornado_handler(sio))])
    server = tornado.httpserver.HTTPServer(app)
    server.listen(args.port, "127.0.0.1")

    await until_signal()
    server.stop()
    pool.close()
    await pool.wait_closed()
    await redis.aclose()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--access-token-secret", required=True)
    p.add_argument("--participant-roles", default="student")
    p.add_argument("--pool-size", type=int, default=10, help="aiopg pool size (ours uses 10)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(serve(parse_args()))
