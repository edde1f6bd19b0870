"""Print a participant access token for the demo data, signed with ACCESS_TOKEN_SECRET."""

import os
import sys
import time

import jwt

TOKEN_LIFETIME = 7 * 86400

if __name__ == "__main__":
    client_id = sys.argv[1] if len(sys.argv) > 1 else "demo-student"
    secret = os.environ["ACCESS_TOKEN_SECRET"]
    claims = {"client_id": client_id, "sub": client_id, "exp": int(time.time()) + TOKEN_LIFETIME}
    print(jwt.encode(claims, secret, algorithm="HS256"))
