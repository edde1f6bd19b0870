#!/usr/bin/env bash
# `make run`: a local rollcall with its own Redis and PostgreSQL under .run/dev and demo data.
# REDIS_URL / DATABASE_URL, when set, are used instead of starting local ones.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=.run/dev
REDIS_PORT=6390
PG_PORT=5440
PY=.venv/bin/python
: "${ACCESS_TOKEN_SECRET:?set ACCESS_TOKEN_SECRET (the Makefile sets a demo one)}"
export CORS_ALLOWED_ORIGINS=${CORS_ALLOWED_ORIGINS:-*}

started=()
cleanup() {
    for what in "${started[@]}"; do scripts/services.sh "$what" "$DIR" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

if [ -z "${REDIS_URL:-}" ]; then
    scripts/services.sh redis-start "$DIR" "$REDIS_PORT"
    started+=(redis-stop)
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi
if [ -z "${DATABASE_URL:-}" ]; then
    scripts/services.sh pg-start "$DIR" "$PG_PORT"
    started+=(pg-stop)
    export DATABASE_URL="postgresql://rollcall@127.0.0.1:$PG_PORT/rollcall"
fi
PGOPTIONS=--client-min-messages=warning psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f store/schema.sql -f scripts/demo.sql >/dev/null

host=${ROLLCALL_HOST:-127.0.0.1}
port=${ROLLCALL_PORT:-8000}
token=$($PY scripts/demo_token.py demo-student)
teacher_token=$($PY scripts/demo_token.py --teacher demo-teacher)
cat <<INFO

rollcall on http://$host:$port  (Socket.IO path /socket.io/, health http://$host:$port/healthz)
Demo lesson: demo-lesson (30 seats); demo student demo-student has seat 7.
Tokens (HS256, secret from ACCESS_TOKEN_SECRET):
  participant demo-student:  $token
  teacher demo-teacher:      $teacher_token
Join it, e.g. from python-socketio:
  sio.emit("join_lesson", {"user_id": "demo-student", "lesson_id": "demo-lesson",
           "access_token": "<participant token>", "role": "student"}, callback=print)
  sio.emit("join_lesson", {"user_id": "demo-teacher", "lesson_id": "demo-lesson",
           "access_token": "<teacher token>", "role": "teacher"}, callback=print)
A teacher's join needs the teacher's own token (role "teacher", client id = user_id) unless the
server runs with --teacher-auth none. \`make demo\` performs both joins.
Ctrl-C stops the server and the local Redis and PostgreSQL.

INFO
$PY server.py "$@" &
server=$!
trap 'kill -INT $server 2>/dev/null || true' INT TERM
wait $server || true
wait $server 2>/dev/null || true
