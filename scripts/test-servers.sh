#!/usr/bin/env bash
# The servers and programs the integration tests use: PostgreSQL and Redis (started on loopback in a temporary
# folder, stopped afterwards) and headless Chromium (loads the HTML run report), from Debian's packages (postgresql,
# redis-server, chromium), installed here where they are missing. Not fatal: where one cannot be installed, the tests
# that need it are skipped and say why. Used by test.sh; the demo needs none of it.
set -uo pipefail

apt_install() {  # apt_install PACKAGE PURPOSE: install a Debian package when we can (root, apt-get)
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing $1 (Debian package) for $2..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$1" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$1" >/dev/null 2>&1; }
  fi
}
have_postgres() { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

have_postgres || apt_install postgresql "the PostgreSQL tests"
have_postgres || echo "warning: PostgreSQL is not installed: its tests will be skipped (apt-get install postgresql)"
have_redis || apt_install redis-server "the distributed tests"
have_redis || echo "warning: redis-server is not installed: the distributed tests will be skipped (apt-get install redis-server)"
have_chromium || apt_install chromium "the HTML report's browser test"
have_chromium || echo "warning: Chromium is not installed: the HTML report's browser test will be skipped (apt-get install chromium)"
exit 0
