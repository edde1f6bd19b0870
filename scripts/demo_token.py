"""Print an access token for the demo data, signed with ACCESS_TOKEN_SECRET: a participant's by
default, the teacher's own with --teacher (role "teacher", client id = the teacher's user_id).

    .venv/bin/python scripts/demo_token.py [--teacher] [CLIENT_ID]
"""

import argparse
import os
import time

import jwt

TOKEN_LIFETIME = 7 * 86400
TEACHER_ROLE = "teacher"
DEFAULT_STUDENT = "demo-student"
DEFAULT_TEACHER = "demo-teacher"


def make_token(client_id: str, secret: str, role: str | None = None) -> str:
    """An HS256 access token naming `client_id` (and its `role`, for a teacher's), as the
    platform's auth service issues them."""
    claims: dict[str, object] = {
        "client_id": client_id, "sub": client_id, "exp": int(time.time()) + TOKEN_LIFETIME
    }
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm="HS256")


def make_teacher_token(user_id: str, secret: str) -> str:
    """The teacher's own token: what a teacher's join needs unless --teacher-auth none."""
    return make_token(user_id, secret, TEACHER_ROLE)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="store_true", help="the teacher's own token")
    parser.add_argument("client_id", nargs="?", help="the client id (the teacher's user_id)")
    args = parser.parse_args()
    secret = os.environ["ACCESS_TOKEN_SECRET"]
    if args.teacher:
        print(make_teacher_token(args.client_id or DEFAULT_TEACHER, secret))
    else:
        print(make_token(args.client_id or DEFAULT_STUDENT, secret))
