#!/usr/bin/env bash
# The servers the integration tests start on loopback (in a temporary folder, stopped afterwards): PostgreSQL and
# Redis, from Debian's packages (postgresql, redis-server), installed here where they are missing. Not fatal: where it cannot be installed, the tests that need
# it are skipped and say why. Used by test.sh; the demo needs none of it.
set -uo pipefail
have_postgres() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if ! have_postgres; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing PostgreSQL (Debian package postgresql) for the tests..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1; }
  fi
  have_postgres || echo "warning: PostgreSQL is not installed: its tests will be skipped (apt-get install postgresql)"
fi
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Redis (Debian package redis-server) for the tests..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q redis-server >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1; }
  fi
  command -v redis-server >/dev/null 2>&1 || echo "warning: redis-server is not installed: the distributed tests will be skipped (apt-get install redis-server)"
fi
exit 0
