"""The Prometheus metrics of a run: names, labels, what records and the live stats feed them, the text file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from enrich.metrics import RunMetrics
from enrich.record import ErrorInfo, Record
from enrich.stats import RunStats

if TYPE_CHECKING:
    from pathlib import Path


def samples(metrics: RunMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def fed_metrics() -> tuple[RunMetrics, RunStats]:
    stats = RunStats(engine="async", total=5, concurrency=lambda: 3)
    stats.skipped_input = 1
    metrics = RunMetrics(
        engine="async",
        stats=lambda: stats,
        figures=lambda: {
            "stage_busy_s": {"extract": 1.5, "nlp": 4.0},
            "stage_workers": {"extract": 1, "nlp": 2},
            "nlp_batches": 7,
            "nlp_compute_s": 3.5,
        },
    )
    stats.listeners.append(metrics.observe)
    timings = {"queue_ms": 5.0, "ttfb_ms": 120.0, "nlp_ms": None}
    stats.observe(Record(url="https://a.example/1", size_bytes=1000, fetch_duration_ms=150.0, timings=timings))
    stats.observe(Record(url="https://a.example/2", size_bytes=500, fetch_duration_ms=30.0, timings=timings))
    stats.observe(Record(url="https://b.example/", error=ErrorInfo("HTTPError", "HTTP 404", "fetch")))
    return metrics, stats


def test_records_feed_counters_and_histograms() -> None:
    metrics, _ = fed_metrics()
    got = samples(metrics)
    assert got["webenrich_records_total", labels(engine="async", outcome="success")] == 2
    assert got["webenrich_records_total", labels(engine="async", outcome="failed")] == 1
    assert got["webenrich_errors_total", labels(engine="async", type="HTTPError", stage="fetch")] == 1
    assert got["webenrich_fetched_bytes_total", labels(engine="async")] == 1500
    assert got["webenrich_fetch_duration_seconds_count", labels(engine="async")] == 2
    assert got["webenrich_fetch_duration_seconds_sum", labels(engine="async")] == 0.18
    assert got["webenrich_stage_duration_seconds_count", labels(engine="async", stage="ttfb")] == 2
    bucket = labels(engine="async", stage="ttfb", le="0.25")
    assert got["webenrich_stage_duration_seconds_bucket", bucket] == 2
    assert ("webenrich_stage_duration_seconds_count", labels(engine="async", stage="nlp")) not in got


def test_live_figures_are_read_when_scraped() -> None:
    metrics, _ = fed_metrics()
    got = samples(metrics)
    assert got["webenrich_in_flight_requests", labels(engine="async")] == 3
    assert got["webenrich_input_expected_records", labels(engine="async")] == 4
    assert got["webenrich_input_skipped_total", labels(engine="async")] == 1
    assert got["webenrich_stage_busy_seconds_total", labels(engine="async", stage="nlp")] == 4.0
    assert got["webenrich_stage_workers", labels(engine="async", stage="nlp")] == 2
    assert got["webenrich_nlp_batches_total", labels(engine="async")] == 7
    assert got["webenrich_nlp_worker_seconds_total", labels(engine="async")] == 3.5


def test_names_follow_prometheus_conventions() -> None:
    metrics, _ = fed_metrics()
    text = generate_latest(metrics.registry).decode()
    families = list(text_string_to_metric_families(text))
    for family in families:
        assert family.name.startswith("webenrich_")
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
    for sample in (s for f in families for s in f.samples):
        assert "url" not in sample.labels  # no unbounded labels
        assert "site" not in sample.labels


def test_a_failing_live_read_does_not_break_a_scrape() -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("stage gone")

    metrics = RunMetrics(engine="scrapy", stats=lambda: None, figures=broken)
    metrics.observe(Record(url="https://a.example/"))
    got = samples(metrics)
    assert got["webenrich_records_total", labels(engine="scrapy", outcome="success")] == 1


def test_textfile_for_node_exporter(tmp_path: Path) -> None:
    metrics, _ = fed_metrics()
    path = tmp_path / "webenrich.prom"
    metrics.write_textfile(path)
    text = path.read_text()
    assert 'webenrich_records_total{engine="async",outcome="success"} 2.0' in text
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left behind
