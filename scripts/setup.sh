#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its dev tools. Idempotent; used by demo.sh and test.sh.
# WEBENRICH_TRANSFORMERS=1 (test.sh sets it, so CI runs those tests) adds the [transformers] extra, the transformers
# NLP backend: about 50 s and 1.1 GB more (torch alone is 750 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
if [ "${WEBENRICH_TRANSFORMERS:-0}" = 1 ]; then
  # torch first, pinned: the CPU build. The extra's range alone would let pip pick a CUDA build of several GB; with
  # this one installed the range is met and nothing more is pulled.
  "${PIP[@]}" "torch==2.13.0"
  "${PIP[@]}" -e ".[dev,transformers]"
else
  "${PIP[@]}" -e ".[dev]"
fi
