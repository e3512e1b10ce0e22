#!/usr/bin/env bash
# Every check in one place: format, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
WEBENRICH_TRANSFORMERS=1 bash scripts/setup.sh  # as CI: the transformers backend is tested too
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
