#!/usr/bin/env bash
# `make run`: a local rollcall with its own Redis and PostgreSQL under .run/dev and the demo class.
# REDIS_URL / DATABASE_URL, when set, are used instead of starting local ones; DEV_REDIS_PORT and
# DEV_PG_PORT move the local ones, ROLLCALL_HOST / ROLLCALL_PORT the server. Without ADMIN_TOKEN a
# throwaway one is made for this run. What `make demo` needs to find this run (its URL, Redis,
# admin token) is kept in .run/dev/run.json, readable by the invoking user only, while it serves.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=.run/dev
RUN_FILE=$DIR/run.json
REDIS_PORT=${DEV_REDIS_PORT:-6390}
PG_PORT=${DEV_PG_PORT:-5440}
LESSON=demo-lesson
TEACHER=ms-rivera
STUDENT=ada
PY=.venv/bin/python
: "${ACCESS_TOKEN_SECRET:?set ACCESS_TOKEN_SECRET (the Makefile sets a demo one)}"
export CORS_ALLOWED_ORIGINS=${CORS_ALLOWED_ORIGINS:-*}
export ROLLCALL_HOST=${ROLLCALL_HOST:-127.0.0.1}
export ROLLCALL_PORT=${ROLLCALL_PORT:-8000}
if [ -z "${ADMIN_TOKEN:-}" ]; then
    ADMIN_TOKEN=$($PY -c 'import secrets; print(secrets.token_urlsafe(24))')
    admin_origin="made for this run; set ADMIN_TOKEN to choose one"
else
    admin_origin="from ADMIN_TOKEN"
fi
export ADMIN_TOKEN

mkdir -p "$DIR"
started=()
cleanup() {
    rm -f "$RUN_FILE"
    for what in "${started[@]}"; do scripts/services.sh "$what" "$DIR" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

if [ -z "${REDIS_URL:-}" ]; then
    started+=(redis-stop)
    scripts/services.sh redis-start "$DIR" "$REDIS_PORT"
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
fi
if [ -z "${DATABASE_URL:-}" ]; then
    started+=(pg-stop)
    scripts/services.sh pg-start "$DIR" "$PG_PORT"
    export DATABASE_URL="postgresql://rollcall@127.0.0.1:$PG_PORT/rollcall"
fi
PGOPTIONS=--client-min-messages=warning psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f store/schema.sql -f scripts/demo.sql >/dev/null

base="http://$ROLLCALL_HOST:$ROLLCALL_PORT"
view="$base/lessons/$LESSON/view?token=$($PY -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$ADMIN_TOKEN")"
attendance="$base/lessons/$LESSON/attendance.csv"
(umask 077 && $PY -c 'import json, sys; print(json.dumps(dict(zip(("url", "redis_url", "admin_token", "lesson_id"), sys.argv[1:]))))' \
    "$base" "$REDIS_URL" "$ADMIN_TOKEN" "$LESSON" >"$RUN_FILE")
token=$($PY scripts/demo_token.py "$STUDENT")
teacher_token=$($PY scripts/demo_token.py --teacher "$TEACHER")
cat <<INFO

rollcall on $base  (Socket.IO path /socket.io/, health $base/healthz)
Demo lesson: $LESSON, 28 seats, 26 enrolled students (24 seated, xavi and zoe without a seat),
teacher $TEACHER.
Tokens (HS256, secret from ACCESS_TOKEN_SECRET):
  participant $STUDENT:      $token
  teacher $TEACHER:  $teacher_token
Join it, e.g. from python-socketio:
  sio.emit("join_lesson", {"user_id": "$STUDENT", "lesson_id": "$LESSON",
           "access_token": "<participant token>", "role": "student"}, callback=print)
  sio.emit("join_lesson", {"user_id": "$TEACHER", "lesson_id": "$LESSON",
           "access_token": "<teacher token>", "role": "teacher"}, callback=print)
A teacher's join needs the teacher's own token (role "teacher", client id = user_id) unless the
server runs with --teacher-auth none. Other tokens: scripts/demo_token.py [--teacher] ID.

Live seating chart (admin token $admin_origin):
  $view
Attendance CSV (in the browser once the chart is open, or with the token as a bearer header):
  $attendance
  curl -H "Authorization: Bearer $ADMIN_TOKEN" $attendance
Fill the class: \`make demo\` in another terminal.
Ctrl-C stops the server and the local Redis and PostgreSQL.

INFO
$PY server.py "$@" &
server=$!
trap 'kill -INT $server 2>/dev/null || true' INT TERM
wait $server || true
wait $server 2>/dev/null || true
