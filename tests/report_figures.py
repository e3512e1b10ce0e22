"""A small run's figures for the report tests (unit and browser): ten records over seven seconds on three sites,
some failed, with per-stage times."""

from __future__ import annotations

from typing import Any

from enrich.record import ErrorInfo, Record
from enrich.stats import RunStats

__all__ = ["sample_figures"]


def sample_figures() -> dict[str, Any]:
    now = [0.0]
    stats = RunStats(total=12, clock=lambda: now[0], concurrency=lambda: 4)
    stats.fetch_slots = 8
    for n in range(10):
        now[0] = n * 0.7
        error = ErrorInfo("HTTPError", "HTTP 503", "fetch") if n % 4 == 0 else None
        stats.observe(
            Record(
                url=f"https://site{n % 3}.example/{n}",
                status=200 if error is None else 503,
                fetch_duration_ms=100.0 * (n % 3 + 1),
                error=error,
                timings={"queue_ms": 10.0, "ttfb_ms": 80.0, "extract_ms": 5.0, "sink_ms": 0.1},
            )
        )
    stats.skipped_input = 2
    stats.extra.update({"stage_busy_s": {"extract": 0.05}, "stage_workers": {"extract": 1}, "duplicates_skipped": 2})
    now[0] = 7.0
    return stats.to_dict()
