#!/usr/bin/env bash
# Throwaway Redis and PostgreSQL for `make run` and `make test`.
#
#   scripts/services.sh start DIR REDIS_PORT PG_PORT   start both under DIR (idempotent)
#   scripts/services.sh stop DIR                        stop what DIR holds
#   scripts/services.sh remove DIR                      stop, and delete PostgreSQL's data folder
#   scripts/services.sh redis-start DIR PORT | redis-stop DIR | pg-start DIR PORT | pg-stop DIR
#
# Both listen on 127.0.0.1 only (PostgreSQL's socket is in /tmp). Redis runs as the invoking user,
# with its files in DIR. PostgreSQL refuses to run as root, so:
# - as an ordinary user, the cluster is that user's, in DIR/pg;
# - as root, it belongs to the `postgres` system user that Debian's package creates, and that user
#   may not be able to enter DIR (a clone under /root, mode 700). Its data folder is then a fresh
#   folder of its own under /var/tmp (mktemp: mode 700, owned by postgres), and DIR/pg is a
#   symbolic link to it; `remove` deletes it.
set -euo pipefail

PG_OWNER=postgres
PG_DATA_PARENT=/var/tmp

die() { echo "services: $*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

install_hint() {
    if is_root; then echo "apt-get install $1"; else echo "ask an administrator to install $1 (or run make as root, which installs it)"; fi
}

pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
    done
    command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
    return 1
}

# Runs a PostgreSQL program as the cluster's owner, from / (the invoking folder may be closed to it).
as_pg() {
    if is_root; then (cd / && runuser -u "$PG_OWNER" -- "$@"); else "$@"; fi
}

start_redis() {
    local dir=$1 port=$2
    command -v redis-server >/dev/null || die "redis-server not found: $(install_hint redis-server)"
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

# The cluster's data folder, created empty when there is none yet (see the header).
pg_data() {
    local dir=$1 link="$1/pg"
    if [ -L "$link" ] && [ ! -d "$link" ]; then
        rm -f "$link"  # its folder was removed (a reboot, a temp cleaner): start afresh
    fi
    if [ ! -e "$link" ]; then
        if is_root; then
            id -u "$PG_OWNER" >/dev/null 2>&1 \
                || die "no '$PG_OWNER' system user to run PostgreSQL as root: $(install_hint postgresql)"
            local data
            data=$(mktemp -d "$PG_DATA_PARENT/rollcall-pg.XXXXXXXX")
            chown "$PG_OWNER:" "$data"
            ln -s "$data" "$link"
        else
            mkdir -m 700 "$link"
        fi
    fi
    readlink -f "$link"
}

start_pg() {
    local dir=$1 port=$2 bin data
    bin=$(pg_bindir) || die "PostgreSQL not found: $(install_hint postgresql)"
    data=$(pg_data "$dir")
    if [ ! -f "$data/PG_VERSION" ]; then
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
    as_pg "$bin/pg_ctl" -D "$(readlink -f "$dir/pg")" -m fast -w stop >/dev/null 2>&1 || true
}

remove() {
    local dir=$1
    stop_redis "$dir"
    stop_pg "$dir"
    if [ -L "$dir/pg" ]; then rm -rf "$(readlink -f "$dir/pg")"; fi
    rm -rf "$dir/pg"
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop|remove|redis-start|redis-stop|pg-start|pg-stop DIR [PORT...]"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

case "$cmd" in
    start)
        start_redis "$dir" "${3:?redis port}"
        start_pg "$dir" "${4:?postgres port}"
        ;;
    stop) stop_redis "$dir"; stop_pg "$dir" ;;
    remove) remove "$dir" ;;
    redis-start) start_redis "$dir" "${3:?redis port}" ;;
    redis-stop) stop_redis "$dir" ;;
    pg-start) start_pg "$dir" "${3:?postgres port}" ;;
    pg-stop) stop_pg "$dir" ;;
    *) die "unknown command $cmd" ;;
esac
