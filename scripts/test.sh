#!/usr/bin/env bash
# Set up (with the [transformers] extra, whose backend's tests run here too), then run the whole test suite (unit +
# integration, real spaCy model, tiny transformers models built by the tests, local servers only).
set -euo pipefail
cd "$(dirname "$0")/.."
WEBENRICH_TRANSFORMERS=1 bash scripts/setup.sh
bash scripts/test-servers.sh
exec .venv/bin/python -m pytest "$@"
