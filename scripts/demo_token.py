"""Print a participant access token for the demo data, signed with ACCESS_TOKEN_SECRET."""

import os
import sys
import time

import jwt

TOKEN_LIFETIME = 7 * 86400


def make_token(client_id: str, secret: str) -> str:
    """An HS256 access token naming `client_id`, as the platform's auth service issues them."""
    claims = {"client_id": client_id, "sub": client_id, "exp": int(time.time()) + TOKEN_LIFETIME}
    return jwt.encode(claims, secret, algorithm="HS256")


if __name__ == "__main__":
    print(make_token(sys.argv[1] if len(sys.argv) > 1 else "demo-student",
                     os.environ["ACCESS_TOKEN_SECRET"]))
