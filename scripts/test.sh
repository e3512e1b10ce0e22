#!/usr/bin/env bash
# Set up, then run the whole test suite (unit + integration, real spaCy model, local servers only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test-servers.sh
exec .venv/bin/python -m pytest "$@"
