#!/usr/bin/env bash
# `make test`: the whole suite against a throwaway Redis and PostgreSQL under .run/test.
# Extra arguments go to pytest (e.g. `make test ARGS="-k join -x"`).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=.run/test
# Free ports, so that a Redis or PostgreSQL left running by another checkout cannot collide.
read -r REDIS_PORT PG_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
export REDIS_PORT PG_PORT
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DATABASE_URL="postgresql://rollcall@127.0.0.1:$PG_PORT/rollcall"
export ROLLCALL_SERVICES_DIR="$PWD/$DIR"

scripts/services.sh stop "$DIR" >/dev/null 2>&1 || true
trap 'scripts/services.sh stop "$DIR" >/dev/null 2>&1 || true' EXIT
scripts/services.sh start "$DIR" "$REDIS_PORT" "$PG_PORT"

VENV=${ROLLCALL_VENV:-.venv}  # make test-latest runs the suite in its own
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest "$@"
