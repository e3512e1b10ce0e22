#!/usr/bin/env bash
# The servers and programs the integration tests use: PostgreSQL (started on loopback in a temporary folder, stopped
# afterwards) and headless Chromium (loads the HTML run report), from Debian's packages, installed here where they
# are missing. Not fatal: where one cannot be installed, the tests that need it are skipped and say why. Used by
# test.sh; the demo needs none of it.
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
have_chromium() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}
if ! have_chromium; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Chromium (Debian package chromium) for the HTML report test..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }
  fi
  have_chromium || echo "warning: Chromium is not installed: the HTML report's browser test will be skipped (apt-get install chromium)"
fi
exit 0
