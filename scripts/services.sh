#!/usr/bin/env bash
# Throwaway Redis and PostgreSQL for `make run` and `make test`.
#
#   scripts/services.sh start DIR REDIS_PORT PG_PORT   start both under DIR (idempotent)
#   scripts/services.sh stop DIR                        stop what DIR holds
#   scripts/services.sh redis-start DIR PORT | redis-stop DIR | pg-start DIR PORT | pg-stop DIR
#
# Both listen on 127.0.0.1 only. PostgreSQL refuses to run as root, so as root the cluster belongs
# to the `postgres` system user that Debian's package creates.
set -euo pipefail

die() { echo "services: $*" >&2; exit 1; }

pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
    done
    command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
    return 1
}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_redis() {
    local dir=$1 port=$2
    if redis-cli -p "$port" ping >/dev/null 2>&1; then return; fi
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return
        sleep 0.05
    done
    die "redis-server did not answer on port $port (see $dir/redis.log)"
}

stop_redis() {
    local dir=$1
    [ -f "$dir/redis.pid" ] || return 0
    local pid
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$dir/redis.pid"
}

start_pg() {
    local dir=$1 port=$2 bin
    bin=$(pg_bindir) || die "PostgreSQL binaries not found (apt-get install postgresql)"
    local data="$dir/pg"
    if [ ! -f "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown -R postgres: "$data"
        as_pg "$bin/initdb" -D "$data" -U rollcall --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
            || die "initdb failed (see $dir/initdb.log)"
    fi
    if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 start \
            -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
            >/dev/null || die "PostgreSQL did not start (see $data/server.log)"
    fi
    createdb_if_missing "$bin" "$port" rollcall
}

createdb_if_missing() {
    local bin=$1 port=$2 name=$3
    if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U rollcall -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='$name'" | grep -q 1; then
        "$bin/createdb" -h 127.0.0.1 -p "$port" -U rollcall "$name"
    fi
}

stop_pg() {
    local dir=$1 bin
    [ -f "$dir/pg/PG_VERSION" ] || return 0
    bin=$(pg_bindir) || return 0
    as_pg "$bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop|redis-start|redis-stop|pg-start|pg-stop DIR [PORT...]"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ "$(id -u)" = 0 ] && chmod 755 "$dir"

case "$cmd" in
    start)
        start_redis "$dir" "${3:?redis port}"
        start_pg "$dir" "${4:?postgres port}"
        ;;
    stop) stop_redis "$dir"; stop_pg "$dir" ;;
    redis-start) start_redis "$dir" "${3:?redis port}" ;;
    redis-stop) stop_redis "$dir" ;;
    pg-start) start_pg "$dir" "${3:?postgres port}" ;;
    pg-stop) stop_pg "$dir" ;;
    *) die "unknown command $cmd" ;;
esac
