#!/usr/bin/env bash
# Set up, then run the main job on the embedded demo site (served on loopback): prints a summary, writes JSONL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m crawler demo "$@"
