#!/usr/bin/env bash
# `make test`: the whole suite against a throwaway Redis and PostgreSQL under .run/test.
# Extra arguments go to pytest (e.g. `make test ARGS="-k join -x"`).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=.run/test
export REDIS_PORT=6391
export PG_PORT=5441
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export DATABASE_URL="postgresql://rollcall@127.0.0.1:$PG_PORT/rollcall"
export ROLLCALL_SERVICES_DIR="$PWD/$DIR"

scripts/services.sh stop "$DIR" >/dev/null 2>&1 || true
trap 'scripts/services.sh stop "$DIR" >/dev/null 2>&1 || true' EXIT
scripts/services.sh start "$DIR" "$REDIS_PORT" "$PG_PORT"

.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
