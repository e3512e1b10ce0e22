"""Smoke test of ``tools/benchmark_enrichment.py``: both engines, two profiles, a few generated pages, one round.

The tool runs as a subprocess, as people run it; the test reads the JSON it writes. It checks the shape of the
report and that every figure is there and sane, not how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = REPO_ROOT / "tools" / "benchmark_enrichment.py"
URLS = 8
CONCURRENCY = 4


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_benchmark_runs_both_engines_and_writes_a_complete_report(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    plot_path = tmp_path / "bench.png"
    html_path = tmp_path / "bench.html"
    cmd = [
        sys.executable,
        str(TOOL),
        *("--urls", str(URLS), "--runs", "1", "--engines", "async,scrapy", "--profile", "fetch,full"),
        *("--concurrency", str(CONCURRENCY), "--page-bytes", "2500", "--latency-ms", "5"),
        *("--json", str(report_path), "--plot", str(plot_path), "--workdir", str(tmp_path / "work"), "--quiet"),
        *("--report", str(html_path)),
    ]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=230, check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
    assert "async/full/c4" in done.stdout  # the terminal table

    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert set(report) >= {"meta", "ceilings", "configurations"}
    assert report["meta"]["urls"] == URLS

    configurations = {c["key"]: c for c in report["configurations"]}
    expected = {f"{e}/{p}/c{CONCURRENCY}" for e in ("async", "scrapy") for p in ("fetch", "full")}
    assert set(configurations) == expected
    for key, conf in configurations.items():
        assert conf["runs"] == 1, key
        assert conf["failed_runs"] == 0, (key, conf["errors"])
        assert conf["success_rate"] == 1.0, key
        assert conf["throughput_urls_per_s"]["median"] > 0, key
        assert conf["duration_s"]["min"] <= conf["duration_s"]["median"] <= conf["duration_s"]["max"], key
        assert conf["speedup_vs_scrapy"] > 0, key
        assert conf["ceiling_urls_per_s"] > 0, key
        assert conf["efficiency"] > 0, key
        assert conf["fetch_p50_ms"] is not None, key
        assert conf["fetch_p95_ms"] >= conf["fetch_p50_ms"], key
        assert conf["peak_rss_mb"] > 0, key
        assert conf["server_max_inflight"] >= 1, key
    assert configurations[f"scrapy/full/c{CONCURRENCY}"]["speedup_vs_scrapy"] == 1.0
    assert configurations[f"async/full/c{CONCURRENCY}"]["ceiling_step"] in {"fetch", "extract", "nlp"}
    assert configurations[f"async/full/c{CONCURRENCY}"]["avg_process_ms"] > 0

    ceilings = report["ceilings"]
    assert ceilings["fetch"][str(CONCURRENCY)]["urls_per_s"]["median"] > 0
    assert ceilings["fetch"][str(CONCURRENCY)]["success_rate"] == 1.0
    assert ceilings["extract"]["pages"] == URLS
    assert ceilings["extract"]["urls_per_s"]["median"] > 0
    for name in ("nlp", "naive_nlp"):
        assert ceilings[name]["words_per_s"]["median"] > 0, name
        assert ceilings[name]["pages_per_s"]["median"] > 0, name
    assert "ner" in ceilings["naive_nlp"]["pipeline"]
    assert ceilings["naive_nlp"]["same_texts"]  # the naive figure reads the NLP stage's texts
    assert ceilings["naive_nlp"]["stage_speedup"] > 0
    bound = ceilings["cpu_bound"]
    assert bound["extract_cpu_s"] > 0
    assert bound["nlp_cpu_s"] > 0
    assert bound["duration_s"]["median"] > 0
    for key, conf in configurations.items():
        if conf["profile"] == "full":
            assert conf["cpu_bound_s"] == bound["duration_s"]["median"], key
            assert conf["cpu_bound_ratio"] > 0, key
            assert conf["cpu_s"] > 0, key
            assert conf["nlp_cache"]["nlp_cache_misses"] > 0, key
            # each run against its own round's bound and against the CPU-s of the work it did itself
            assert len(conf["cpu_bound_ratio_by_round"]) == 1, key
            assert conf["cpu_bound_ratio_by_round"][0] > 0, key
            assert conf["work_bound_ratios"][0] > 0, key
            # the median is rounded to 2 digits, each run to 3: 0.125 and 0.13 are the same run
            assert conf["work_bound_ratio"] == pytest.approx(conf["work_bound_ratios"][0], abs=0.0051), key
            assert conf["nlp_compute_cpu_s"] > 0, key
            assert conf["per_run"][0]["engine_stats"]["extract_cpu_s"] > 0, key
        else:
            assert conf["cpu_bound_ratio"] is None, key
    assert "CPU bound of the full profile" in done.stdout
    assert plot_path.stat().st_size > 0
    html = html_path.read_text(encoding="utf-8")
    for key in expected:  # one section per engine run, each with its plots and per-stage breakdown
        assert f"{key}, round 1" in html, key
    assert f"async/full/c{CONCURRENCY}, round 1: " in html  # its duration against the CPU bound
    assert html.count("of the bound of its own work") == 2  # both engines' full runs
    assert html.count(">Where the time goes</h2>") == len(expected)


@pytest.mark.timeout(120)
def test_the_discovery_benchmark_runs_both_engines(tmp_path: Path) -> None:
    pages = 40
    cmd = [sys.executable, str(REPO_ROOT / "tools" / "benchmark_discover.py"), "--pages", str(pages)]
    cmd += ["--latency-ms", "2", "--per-site", "4", "--json", str(tmp_path / "d.json")]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["engine"]: row for row in json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))}
    assert set(rows) == {"async", "scrapy"}
    for row in rows.values():
        assert row["urls"] == pages
        assert row["requests"] >= pages  # every page, its sitemap and a 404 or two
        assert 1 <= row["peak_in_flight"] <= 4
        assert 0 < row["bound_s"] < row["wall_s"]
    assert "| async | 40 |" in done.stdout
