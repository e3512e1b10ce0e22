"""This checkout's code in a child process (the CLI, ``scrapy crawl``, a script run from another folder), not the
copy installed in the virtualenv."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def checkout_env(**extra: str) -> dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH``, and ``extra`` variables."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra}
