"""``python -m crawler``: the orchestrator command line (see :mod:`crawler.cli`)."""

from __future__ import annotations

import sys

from crawler.cli import main

if __name__ == "__main__":
    sys.exit(main())
