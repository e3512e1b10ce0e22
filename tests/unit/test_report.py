"""The HTML run report: built from a run's figures, self-contained, hostile text escaped, parts left out when
there is nothing to show."""

from __future__ import annotations

import re

from report_figures import sample_figures

from enrich.record import Record
from enrich.report import render_report, render_reports
from enrich.runlog import MAX_BUCKETS, MAX_SITES, OTHER_SITES, SiteTable, Timeline
from enrich.stats import RunStats


def test_report_holds_every_part() -> None:
    html = render_report(sample_figures(), title="Nightly crawl")
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>Nightly crawl</title>" in html
    for heading in ("Overview", "Over time", "Where the time goes", "Errors", "By site", "Slowest sites"):
        assert f">{heading}</h" in html, heading
    assert html.count("<svg") == 5  # throughput, concurrency, stage times, utilization, errors
    assert html.count("<polyline") >= 3
    assert "Duplicates skipped" in html
    assert "Fetch busy" in html  # the bottleneck line
    assert "site0.example" in html
    slowest = html[html.index("Slowest sites") :]
    assert slowest.index("site2.example") < slowest.index("site0.example")


def test_report_is_self_contained() -> None:
    html = render_report(sample_figures())
    assert not re.search(r"(src|href)\s*=", html)  # nothing to load
    assert "<script" not in html
    assert "default-src 'none'" in html


def test_hostile_text_is_escaped() -> None:
    figures = sample_figures()
    figures["errors_by_type"] = {"<script>alert(1)</script>": 1}
    html = render_report(figures, title="<img src=x onerror=alert(1)>")
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_empty_run_has_a_report_without_plots() -> None:
    html = render_report(RunStats().to_dict())
    assert "No record was written" in html
    assert "No errors" in html
    assert "<polyline" not in html


def test_several_runs_in_one_report() -> None:
    html = render_reports([("async", sample_figures()), ("scrapy", sample_figures())], title="Benchmark")
    assert html.count("<h2 style") == 2
    assert html.count(">Overview</h2>") == 2


def test_timeline_stays_bounded() -> None:
    timeline = Timeline()
    for second in range(10 * MAX_BUCKETS):
        timeline.observe(second + 0.5, failed=False, concurrency=2)
    figures = timeline.to_dict()
    assert len(figures["done"]) <= MAX_BUCKETS
    assert sum(figures["done"]) == 10 * MAX_BUCKETS
    assert figures["bucket_s"] == 16.0
    assert set(figures["concurrency"]) == {2.0}


def test_site_table_stays_bounded() -> None:
    table = SiteTable()
    for n in range(MAX_SITES + 10):
        table.observe(Record(url=f"https://s{n}.example/", status=200, fetch_duration_ms=1.0))
    assert len(table.sites) == MAX_SITES + 1
    assert table.sites[OTHER_SITES].records == 10
