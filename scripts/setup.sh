#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its dev tools and the [transformers] extra (the tests of
# the transformers NLP backend run in CI). Idempotent; used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# torch first, pinned: the CPU build (about 750 MB installed). The extra's range alone would let pip pick a CUDA
# build of several GB; with this one installed, the range is met and nothing more is pulled.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,transformers]"
