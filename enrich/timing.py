"""Where the time of a run goes: per-stage times of each record, their totals, and which stage limits the run.

Each URL's :class:`StageTimes` is filled as it goes (the engine measures the fetch side, the shared stages their
own) and lands in its record as ``timings`` (milliseconds, ``null`` where the engine cannot measure a step).
:class:`StageTotals` adds them up for :class:`~enrich.stats.RunStats`; :func:`utilization` and :func:`bottleneck`
turn the stages' busy time into the one line a user wants: what limits this run.

The stages, in the order a URL meets them:

========== =========================================================================================
queue      waiting in the frontier (per-site queue, ``Crawl-delay``, backoff, cap), every attempt summed
connect    DNS lookup and TCP/TLS connect (0 on a reused connection; async engine only)
ttfb       request sent to response headers (Scrapy mode: its ``download_latency``, connect included)
body       reading the body (async engine only)
extract    text and metadata extraction
nlp_wait   waiting for an NLP batch to start (queued texts, a worker being busy)
nlp        the batch the text was analyzed in, as the worker measured it
sink       handing the record to the sinks (waits only when the previous batch is still being written)
========== =========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["LABELS", "STAGES", "UTILIZATION_NAMES", "StageTimes", "StageTotals", "bottleneck", "utilization"]

STAGES: tuple[str, ...] = ("queue", "connect", "ttfb", "body", "extract", "nlp_wait", "nlp", "sink")
"""The timed steps, in the order a URL meets them (the keys of a record's ``timings``, with ``_ms``)."""

LABELS: dict[str, str] = {
    "queue": "Frontier wait",
    "connect": "DNS + connect",
    "ttfb": "First byte",
    "body": "Body",
    "extract": "Extraction",
    "nlp_wait": "NLP wait",
    "nlp": "NLP",
    "sink": "Sink",
}

UTILIZATION_NAMES: dict[str, str] = {"fetch": "fetch", "extract": "extraction", "nlp": "NLP", "sink": "sink"}


@dataclass(slots=True)
class StageTimes:
    """Seconds one URL spent in each step; ``None`` where nothing was measured."""

    queue: float | None = None
    connect: float | None = None
    ttfb: float | None = None
    body: float | None = None
    extract: float | None = None
    nlp_wait: float | None = None
    nlp: float | None = None
    sink: float | None = None

    def add(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` to ``stage`` (a URL's retries and redirect hops add up)."""
        current = getattr(self, stage)
        setattr(self, stage, max(seconds, 0.0) + (current or 0.0))

    def to_record(self) -> dict[str, float | None]:
        """The record's ``timings``: ``{"queue_ms": 1.2, ..., "sink_ms": None}``, every key present."""
        out: dict[str, float | None] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            out[f"{item.name}_ms"] = None if value is None else round(value * 1000, 1)
        return out


@dataclass(slots=True)
class StageTotals:
    """Sums of the per-record times of a run, per stage (seconds), and how many records each covers."""

    total_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))

    def observe(self, timings: dict[str, float | None] | None) -> None:
        """Add one record's ``timings`` (milliseconds)."""
        if not timings:
            return
        for stage in STAGES:
            value = timings.get(f"{stage}_ms")
            if value is not None:
                self.total_s[stage] += value / 1000
                self.count[stage] += 1

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{stage: {"total_s", "mean_ms", "count"}}`` for the stages that were measured at least once."""
        return {
            stage: {
                "total_s": round(self.total_s[stage], 3),
                "mean_ms": round(self.total_s[stage] * 1000 / self.count[stage], 1),
                "count": self.count[stage],
            }
            for stage in STAGES
            if self.count[stage]
        }


def utilization(figures: dict[str, Any]) -> dict[str, float]:
    """How busy each part of the engine was over the run, from 0 to 1: busy seconds over elapsed seconds times
    its workers. ``fetch`` is requests in flight (the sum of fetch durations) over the engine's request slots.

    Args:
        figures: a run's figures (:meth:`RunStats.to_dict`): ``elapsed_s``, ``stage_busy_s``, ``stage_workers``.
    """
    elapsed = figures.get("elapsed_s") or 0.0
    busy: dict[str, float] = figures.get("stage_busy_s") or {}
    workers: dict[str, int] = figures.get("stage_workers") or {}
    if elapsed <= 0:
        return {}
    out: dict[str, float] = {}
    for name in UTILIZATION_NAMES:
        if name in busy and workers.get(name):
            out[name] = round(min(busy[name] / (elapsed * workers[name]), 1.0), 4)
    return out


def bottleneck(figures: dict[str, Any]) -> str | None:
    """One line naming what limits the run, e.g. ``NLP busy 96 % of the run; fetch idle 60 %``.

    The busiest part is named first; the fetch side's idle share follows, since idle request slots are the
    throughput the other part costs. ``None`` when nothing was measured.
    """
    shares = utilization(figures)
    if not shares:
        return None
    name, share = max(shares.items(), key=lambda kv: kv[1])
    line = f"{UTILIZATION_NAMES[name]} busy {share:.0%} of the run".replace("%", " %")
    if name != "fetch" and "fetch" in shares:
        line += f"; fetch idle {1 - shares['fetch']:.0%}".replace("%", " %")
    elif name == "fetch" and len(shares) > 1:
        others = max((v, k) for k, v in shares.items() if k != "fetch")
        line += f"; {UTILIZATION_NAMES[others[1]]} busy {others[0]:.0%}".replace("%", " %")
    return line[0].upper() + line[1:]
