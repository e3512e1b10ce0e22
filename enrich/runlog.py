"""What a run did over time and per site, for the HTML report (:mod:`enrich.report`): bounded whatever its length.

:class:`Timeline` keeps records finished, failures and requests in flight per time bucket; past
:data:`MAX_BUCKETS` buckets it merges neighbours and doubles the bucket's length, so a week-long crawl costs the
same few kilobytes as a minute. :class:`SiteTable` keeps per-site counts and fetch times for up to
:data:`MAX_SITES` sites; later sites are counted together as :data:`OTHER_SITES`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from enrich.record import Record

__all__ = ["MAX_BUCKETS", "MAX_SITES", "OTHER_SITES", "SiteTable", "Timeline"]

MAX_BUCKETS = 240
"""Time buckets kept: enough points for a plot several hundred pixels wide."""

MAX_SITES = 5_000
"""Sites with a row of their own (a few hundred bytes each)."""

OTHER_SITES = "(other sites)"

TOP_SITES = 15
"""Rows of the slowest-sites and errors-by-site tables."""


@dataclass(slots=True)
class _Bucket:
    done: int = 0
    failed: int = 0
    concurrency_sum: float = 0.0
    samples: int = 0

    def merge(self, other: _Bucket) -> None:
        self.done += other.done
        self.failed += other.failed
        self.concurrency_sum += other.concurrency_sum
        self.samples += other.samples


@dataclass(slots=True)
class Timeline:
    """Records finished and requests in flight over a run, in buckets of ``bucket_s`` seconds (doubling)."""

    bucket_s: float = 1.0
    buckets: list[_Bucket] = field(default_factory=list)

    def observe(self, elapsed_s: float, *, failed: bool, concurrency: int | None) -> None:
        """One record finished ``elapsed_s`` into the run, with ``concurrency`` requests in flight then."""
        index = int(max(elapsed_s, 0.0) // self.bucket_s)
        while index >= MAX_BUCKETS:
            self._coarsen()
            index = int(max(elapsed_s, 0.0) // self.bucket_s)
        while len(self.buckets) <= index:
            self.buckets.append(_Bucket())
        bucket = self.buckets[index]
        bucket.done += 1
        bucket.failed += failed
        if concurrency is not None:
            bucket.concurrency_sum += concurrency
            bucket.samples += 1

    def _coarsen(self) -> None:
        merged: list[_Bucket] = []
        for start in range(0, len(self.buckets), 2):
            bucket = self.buckets[start]
            if start + 1 < len(self.buckets):
                bucket.merge(self.buckets[start + 1])
            merged.append(bucket)
        self.buckets = merged
        self.bucket_s *= 2

    def to_dict(self) -> dict[str, Any]:
        """``bucket_s`` and, per bucket: ``done``, ``failed``, mean ``concurrency`` (``None``: no sample)."""
        return {
            "bucket_s": self.bucket_s,
            "done": [b.done for b in self.buckets],
            "failed": [b.failed for b in self.buckets],
            "concurrency": [round(b.concurrency_sum / b.samples, 2) if b.samples else None for b in self.buckets],
        }


@dataclass(slots=True)
class _Site:
    records: int = 0
    failed: int = 0
    fetch_s: float = 0.0
    fetches: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class SiteTable:
    """Per-site records, failures (by error type) and fetch times."""

    sites: dict[str, _Site] = field(default_factory=dict)

    def observe(self, record: Record) -> None:
        site = self._row(urlsplit(record.final_url or record.url).hostname or "(no host)")
        site.records += 1
        if record.error is not None:
            site.failed += 1
            site.errors[record.error.type] += 1
        if record.fetch_duration_ms is not None and record.status is not None:
            site.fetch_s += record.fetch_duration_ms / 1000
            site.fetches += 1

    def _row(self, host: str) -> _Site:
        row = self.sites.get(host)
        if row is None:
            host = host if len(self.sites) < MAX_SITES else OTHER_SITES
            row = self.sites.setdefault(host, _Site())
        return row

    def to_dict(self) -> dict[str, Any]:
        """The sites with the slowest mean fetch and those with the most failures, :data:`TOP_SITES` each."""
        timed = [(name, s) for name, s in self.sites.items() if s.fetches]
        slowest = sorted(timed, key=lambda kv: kv[1].fetch_s / kv[1].fetches, reverse=True)[:TOP_SITES]
        failing = sorted((kv for kv in self.sites.items() if kv[1].failed), key=lambda kv: -kv[1].failed)[:TOP_SITES]
        return {
            "count": len(self.sites),
            "slowest": [
                {"site": name, "records": s.records, "mean_fetch_ms": round(s.fetch_s * 1000 / s.fetches, 1)}
                for name, s in slowest
            ],
            "errors": [
                {"site": name, "records": s.records, "failed": s.failed, "by_type": dict(s.errors.most_common())}
                for name, s in failing
            ],
        }
