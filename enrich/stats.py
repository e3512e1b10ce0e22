"""Live run statistics: counters, rates, the progress line and the JSON summary, the same for both engines."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from enrich.runlog import SiteTable, Timeline
from enrich.timing import LABELS, StageTotals, bottleneck, utilization

if TYPE_CHECKING:
    from collections.abc import Callable

    from enrich.record import Record

__all__ = ["RunStats"]


@dataclass
class RunStats:
    """Counts records as they are finished. ``concurrency`` is a callable so the figure is always current.

    ``skipped_input`` counts input entries that get no record in this run (a repeated URL, one already done in
    this job); the progress total leaves them out. ``fetch_slots`` is how many requests the engine runs at once,
    for the fetch side's share in :func:`enrich.timing.utilization`. Each function in ``listeners`` is called with
    every finished record (the Prometheus metrics, :mod:`enrich.metrics`).
    """

    engine: str = "async"
    total: int | None = None
    clock: Callable[[], float] = time.monotonic
    concurrency: Callable[[], int] | None = None
    started: float = field(init=False)
    processed: int = 0
    success: int = 0
    failed: int = 0
    skipped_input: int = 0
    bytes_fetched: int = 0
    fetch_ms_total: float = 0.0
    fetch_count: int = 0
    process_ms_total: float = 0.0
    fetch_busy_s: float = 0.0
    fetch_slots: int | None = None
    stages: StageTotals = field(default_factory=StageTotals)
    timeline: Timeline = field(default_factory=Timeline)
    sites: SiteTable = field(default_factory=SiteTable)
    listeners: list[Callable[[Record], None]] = field(default_factory=list)
    errors_by_type: Counter[str] = field(default_factory=Counter)
    errors_by_stage: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def observe(self, record: Record) -> None:
        """Count one finished record. A record with an error from the fetch counts as failed; one whose
        extraction or NLP failed still counts as processed and failed, with the stage noted."""
        self.processed += 1
        if record.error is None:
            self.success += 1
        else:
            self.failed += 1
            self.errors_by_type[record.error.type] += 1
            self.errors_by_stage[record.error.stage] += 1
        if record.fetch_duration_ms is not None and record.status is not None:
            self.fetch_ms_total += record.fetch_duration_ms
            self.fetch_count += 1
        if record.fetch_duration_ms is not None:
            self.fetch_busy_s += record.fetch_duration_ms / 1000
        if record.process_duration_ms is not None:
            self.process_ms_total += record.process_duration_ms
        self.bytes_fetched += record.size_bytes or 0
        self.stages.observe(record.timings)
        concurrency = self.concurrency() if self.concurrency is not None else None
        self.timeline.observe(self.clock() - self.started, failed=record.error is not None, concurrency=concurrency)
        self.sites.observe(record)
        for listener in self.listeners:
            listener(record)

    @property
    def expected(self) -> int | None:
        """Records this run will write: the input's entries less those skipped (``None`` when not known)."""
        return None if self.total is None else max(self.total - self.skipped_input, 0)

    @property
    def elapsed_s(self) -> float:
        return max(self.clock() - self.started, 1e-9)

    @property
    def success_rate(self) -> float:
        return self.success / self.processed if self.processed else 1.0

    @property
    def throughput(self) -> float:
        return self.processed / self.elapsed_s

    @property
    def avg_fetch_ms(self) -> float:
        return self.fetch_ms_total / self.fetch_count if self.fetch_count else 0.0

    @property
    def avg_process_ms(self) -> float:
        return self.process_ms_total / self.processed if self.processed else 0.0

    def progress_line(self) -> str:
        parts = [f"Processed: {self.processed}" + (f"/{self.expected}" if self.total else "")]
        parts.append(f"Success: {self.success_rate:.1%}")
        if self.concurrency is not None:
            parts.append(f"Concurrency: {self.concurrency()}")
        parts.append(f"Avg fetch: {self.avg_fetch_ms:.0f}ms")
        parts.append(f"Rate: {self.throughput:.1f} URLs/s")
        return " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        figures = self._figures()
        busy = {"fetch": round(self.fetch_busy_s, 3), **(self.extra.get("stage_busy_s") or {})}
        workers = {
            **({"fetch": self.fetch_slots} if self.fetch_slots else {}),
            **(self.extra.get("stage_workers") or {}),
        }
        figures["stage_times"] = self.stages.to_dict()
        figures["stage_busy_s"] = busy
        figures["stage_workers"] = workers
        figures["utilization"] = utilization(figures)
        figures["bottleneck"] = bottleneck(figures)
        figures["timeline"] = self.timeline.to_dict()
        figures["sites"] = self.sites.to_dict()
        return figures

    def _figures(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "processed": self.processed,
            "success": self.success,
            "failed": self.failed,
            "skipped_input": self.skipped_input,
            "success_rate": round(self.success_rate, 4),
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_urls_per_s": round(self.throughput, 3),
            "avg_fetch_ms": round(self.avg_fetch_ms, 1),
            "avg_process_ms": round(self.avg_process_ms, 1),
            "bytes_fetched": self.bytes_fetched,
            "concurrency": self.concurrency() if self.concurrency is not None else None,
            "errors_by_type": dict(self.errors_by_type.most_common()),
            "errors_by_stage": dict(self.errors_by_stage.most_common()),
            **self.extra,
        }

    def summary(self) -> str:
        """A short multi-line summary for the end of a run."""
        d = self.to_dict()
        lines = [
            f"Engine:      {d['engine']}",
            f"Processed:   {d['processed']} in {d['elapsed_s']:.1f}s ({d['throughput_urls_per_s']:.1f} URLs/s)",
            f"Success:     {d['success']} ({d['success_rate']:.1%}), failed: {d['failed']}",
            f"Avg fetch:   {d['avg_fetch_ms']:.0f} ms, avg process: {d['avg_process_ms']:.0f} ms",
        ]
        if d["errors_by_type"]:
            lines.append("Errors:      " + ", ".join(f"{k}: {v}" for k, v in d["errors_by_type"].items()))
        if d["stage_times"]:
            lines.append(
                "Per record:  " + ", ".join(f"{LABELS[k]} {v['mean_ms']:.0f} ms" for k, v in d["stage_times"].items())
            )
        if d["bottleneck"]:
            lines.append(f"Bottleneck:  {d['bottleneck']}")
        return "\n".join(lines)
