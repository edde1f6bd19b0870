"""Both join_lesson flows against a running `make run`: a teacher join and a participant join
with python-socketio's client, printing each ack and the Redis keys the join wrote.

    .venv/bin/python scripts/demo.py [--url http://127.0.0.1:8000] [--redis-url redis://...]

Both carry a token signed like scripts/demo_token.py's, with ACCESS_TOKEN_SECRET (the Makefile
gives `make run` and `make demo` the same demo secret): the teacher its own teacher token, the
participant a participant token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import redis
import socketio
from demo_token import make_teacher_token, make_token

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6390/0"
LESSON = "demo-lesson"
STUDENT = "demo-student"
TEACHER = "demo-teacher"
ACK_TIMEOUT = 10


def show_keys(db: redis.Redis, keys: list[str]) -> None:
    for key in keys:
        kind = db.type(key)
        value: Any = db.hgetall(key) if kind == "hash" else db.get(key)
        if kind == "hash" and len(value) > 8:
            value = {**dict(list(value.items())[:3]), "…": f"{len(value)} fields"}
        print(f"  {key}  {kind}  ttl={db.ttl(key)}  {json.dumps(value, ensure_ascii=False)}")


async def join(url: str, payload: dict[str, Any]) -> tuple[socketio.AsyncClient, Any]:
    """Connect and join; the caller disconnects (which takes the presence back), so the keys
    are shown while the client is still connected."""
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=["websocket"])
    return client, await client.call("join_lesson", payload, timeout=ACK_TIMEOUT)


async def main(url: str, redis_url: str) -> int:
    db = redis.Redis.from_url(redis_url, decode_responses=True)
    secret = os.environ["ACCESS_TOKEN_SECRET"]
    token = make_token(STUDENT, secret)
    flows = [
        ("teacher", {"user_id": TEACHER, "lesson_id": LESSON,
                     "access_token": make_teacher_token(TEACHER, secret), "role": "teacher"},
         [f"lesson_seat_{LESSON}", f"lesson_teacher_{LESSON}", TEACHER]),
        ("participant", {"user_id": STUDENT, "lesson_id": LESSON, "access_token": token,
                         "role": "student"},
         [f"lesson_seat_{LESSON}", STUDENT, f"lesson_student_{LESSON}"]),
    ]
    clients = []
    try:
        for name, payload, keys in flows:
            client, ack = await join(url, payload)
            clients.append(client)
            print(f"{name} join (sid {client.get_sid()}): ack {json.dumps(ack)}")
            show_keys(db, keys)
            if ack.get("status") != "SUCCESS":
                return 1
    finally:
        for client in clients:
            await client.disconnect()
    db.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.redis_url)))
