"""Scrapy mode's share of the per-stage times (:mod:`enrich.timing`): what a request's meta tells of its fetch.

The scheduler adds each lease's wait in the frontier to the request's meta (:data:`QUEUE_META`; a retry or a
redirect hop copies the meta, so the waits of every attempt add up); Scrapy's ``download_latency`` (request sent
to response headers, connecting included) is the time to first byte. Scrapy does not expose DNS + connect or the
body's read time apart, so those stay unmeasured (``null``) in Scrapy mode's records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from enrich.timing import StageTimes

if TYPE_CHECKING:
    from enrich.stages import WorkItem

__all__ = ["QUEUE_META", "add_wait", "with_fetch_times"]

QUEUE_META = "enrich_queue_s"
"""Request meta key: seconds the request's attempts have spent queued in the frontier."""


def add_wait(meta: dict[str, Any], waited_s: float) -> None:
    """Add one lease's wait in the frontier to the request's meta."""
    meta[QUEUE_META] = float(meta.get(QUEUE_META) or 0.0) + waited_s


def with_fetch_times(items: list[WorkItem], meta: dict[str, Any]) -> list[WorkItem]:
    """``items`` with the fetch side's times from ``meta``; returned for the callbacks' ``return``."""
    for item in items:
        times = StageTimes()
        queued = meta.get(QUEUE_META)
        if isinstance(queued, float):
            times.add("queue", queued)
        latency = meta.get("download_latency")
        if isinstance(latency, (int, float)):
            times.add("ttfb", float(latency))
        item.times = times
    return items
