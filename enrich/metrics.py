"""Prometheus metrics of a run (prometheus-client), the same for both engines.

:class:`RunMetrics` is fed from what both engines already have: each finished record (a
:attr:`RunStats.listeners <enrich.stats.RunStats.listeners>` entry: its outcome, size, fetch time and per-stage
times from :mod:`enrich.timing`) and, when scraped, the live :class:`~enrich.stats.RunStats` and the stages' own
figures (:func:`enrich.pipeline.run_figures`: busy seconds, NLP batches and the time NLP workers report with their
results, so worker processes need no multiprocess registry). ``--metrics-port`` serves them on ``/metrics`` while a
run goes (:meth:`RunMetrics.serve`); ``--metrics-textfile`` writes them once at the end for node_exporter's
textfile collector (:meth:`RunMetrics.write_textfile`).

Names follow Prometheus conventions: a ``webenrich_`` prefix, base units (``_seconds``, ``_bytes``), counters
ending in ``_total``, histograms for latencies. Labels are bounded: a stage, an outcome, an error type (exception
class names), an engine. There are no per-URL or per-site labels: the sites of a crawl are unbounded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from enrich.timing import STAGES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from threading import Thread
    from wsgiref.simple_server import WSGIServer

    from enrich.record import Record
    from enrich.stats import RunStats

__all__ = ["LATENCY_BUCKETS_S", "RunMetrics"]

logger = logging.getLogger(__name__)

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
"""Histogram buckets: from a millisecond (a sink hand-off, a small extraction) to two minutes (a fetch with its
retries and backoffs, a frontier wait behind a long ``Crawl-delay``)."""


class RunMetrics:
    """The metrics of one run, in a registry of their own (several runs in one process never collide).

    Args:
        engine: the ``engine`` label (``async`` or ``scrapy``).
        stats: the live run statistics (the engine may replace them when a run starts, hence a callable).
        figures: the stages' own figures when scraped (:func:`enrich.pipeline.run_figures`); ``None``: none.
    """

    def __init__(
        self,
        *,
        engine: str,
        stats: Callable[[], RunStats | None],
        figures: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self._stats = stats
        self._figures = figures
        self._server: tuple[WSGIServer, Thread] | None = None
        self.records = Counter(
            "webenrich_records_total",
            "Records written, by outcome (success: no error; failed: an error from any step).",
            ["engine", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "webenrich_errors_total",
            "Failed records by error type and the step that failed.",
            ["engine", "type", "stage"],
            registry=self.registry,
        )
        self.fetched_bytes = Counter(
            "webenrich_fetched_bytes_total", "Body bytes fetched.", ["engine"], registry=self.registry
        )
        self.fetch_seconds = Histogram(
            "webenrich_fetch_duration_seconds",
            "Time from a URL's first request to its answer (retries and redirects included).",
            ["engine"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "webenrich_stage_duration_seconds",
            "Time one record spent in each step: " + ", ".join(STAGES) + " (see enrich.timing).",
            ["engine", "stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(self))

    def observe(self, record: Record) -> None:
        """Count one finished record (a :attr:`RunStats.listeners` entry)."""
        engine = self.engine
        if record.error is None:
            self.records.labels(engine, "success").inc()
        else:
            self.records.labels(engine, "failed").inc()
            self.errors.labels(engine, record.error.type, record.error.stage).inc()
        if record.size_bytes:
            self.fetched_bytes.labels(engine).inc(record.size_bytes)
        if record.fetch_duration_ms is not None:
            self.fetch_seconds.labels(engine).observe(record.fetch_duration_ms / 1000)
        for stage in STAGES:
            value = (record.timings or {}).get(f"{stage}_ms")
            if value is not None:
                self.stage_seconds.labels(engine, stage).observe(value / 1000)

    def serve(self, port: int, *, address: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``address:port`` in a daemon thread until :meth:`close`; return the port (useful
        with port 0, which picks a free one).

        Raises:
            OSError: the port cannot be bound.
        """
        server, thread = start_http_server(port, addr=address, registry=self.registry)
        self._server = (server, thread)
        bound = int(server.server_address[1])
        logger.info("serving Prometheus metrics on http://%s:%d/metrics", address, bound)
        return bound

    def write_textfile(self, path: Path | str) -> None:
        """Write the metrics for node_exporter's textfile collector (atomically: a temporary file renamed).

        Raises:
            OSError: the file cannot be written.
        """
        write_to_textfile(str(path), self.registry)

    def close(self) -> None:
        """Stop serving (the run's last figures were there until now)."""
        if self._server is not None:
            server, thread = self._server
            self._server = None
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    def live(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The figures read when scraped: progress, concurrency, stages' busy time, NLP workers' time."""
        stats = self._stats()
        engine = [self.engine]
        if stats is not None:
            gauge = GaugeMetricFamily("webenrich_in_flight_requests", "Requests in flight now.", labels=["engine"])
            gauge.add_metric(engine, stats.concurrency() if stats.concurrency is not None else 0)
            yield gauge
            gauge = GaugeMetricFamily(
                "webenrich_run_elapsed_seconds", "Seconds since the run started.", labels=["engine"]
            )
            gauge.add_metric(engine, stats.elapsed_s)
            yield gauge
            if stats.expected is not None:
                gauge = GaugeMetricFamily(
                    "webenrich_input_expected_records",
                    "Records the input will give (skipped entries left out).",
                    labels=["engine"],
                )
                gauge.add_metric(engine, stats.expected)
                yield gauge
            counter = CounterMetricFamily(
                "webenrich_input_skipped", "Input entries given no record (repeats, done before).", labels=["engine"]
            )
            counter.add_metric(engine, stats.skipped_input)
            yield counter
            counter = CounterMetricFamily(
                "webenrich_fetch_busy_seconds", "Seconds of requests in flight, summed.", labels=["engine"]
            )
            counter.add_metric(engine, stats.fetch_busy_s)
            yield counter
        figures = self._figures() if self._figures is not None else {}
        busy: dict[str, float] = figures.get("stage_busy_s") or {}
        if busy:
            counter = CounterMetricFamily(
                "webenrich_stage_busy_seconds",
                "Seconds each stage was busy (summed over its workers).",
                labels=["engine", "stage"],
            )
            for stage, seconds in busy.items():
                counter.add_metric([self.engine, stage], seconds)
            yield counter
        workers: dict[str, int] = figures.get("stage_workers") or {}
        if workers:
            gauge = GaugeMetricFamily(
                "webenrich_stage_workers", "Items each stage works on at once.", labels=["engine", "stage"]
            )
            for stage, count in workers.items():
                gauge.add_metric([self.engine, stage], count)
            yield gauge
        for key, name, text in (
            ("nlp_batches", "webenrich_nlp_batches", "NLP batches analyzed."),
            ("nlp_compute_s", "webenrich_nlp_worker_seconds", "Seconds NLP workers spent on batches, as they report."),
            ("nlp_cache_hits", "webenrich_nlp_cache_hits", "Analyses reused from the NLP cache."),
        ):
            if key in figures:
                counter = CounterMetricFamily(name, text, labels=["engine"])
                counter.add_metric(engine, figures[key])
                yield counter


class _LiveCollector(Collector):
    """Adapts :meth:`RunMetrics.live` to prometheus-client's collector interface."""

    def __init__(self, metrics: RunMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            yield from self._metrics.live()
        except Exception:  # a scrape must never break the run; the next one tries again
            logger.warning("reading the live metrics failed", exc_info=True)

    def describe(self) -> list[Any]:
        return []  # the families vary with what the run has (no NLP, no stats yet): nothing to check up front
