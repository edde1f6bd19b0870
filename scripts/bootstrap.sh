#!/usr/bin/env bash
# Installs the system packages rollcall needs when they are missing: as root through apt-get,
# otherwise one clear line saying what to install. Usage: scripts/bootstrap.sh [run|test]
set -euo pipefail

purpose=${1:-run}
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v psql >/dev/null || missing+=(postgresql-client)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ "$purpose" = test ]; then
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    # headless browser for the lesson page's test (tests/integration/operations/test_lesson_page.py)
    command -v chromium >/dev/null || missing+=(chromium)
    # the proxy of the scale-out deployment test (tests/integration/scaleout/test_nginx.py)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    # the official protocol suite's own network namespace brings its loopback up with ip
    command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
fi

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "rollcall: missing system packages; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "rollcall: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
