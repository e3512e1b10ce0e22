"""Both engines on a small web of several sites (``tools/multisite_web.py``), politeness measured at the server.

The sites sit on distinct 127.0.0.x addresses with their own latencies: one with a robots.txt ``Crawl-delay``
(and a ``/private/`` it disallows) listed first, so a grouped input starts with it; one throttled (429 with
``Retry-After`` past a rate); one that always answers 503; one whose address refuses connections; one host that
does not resolve; and cross-site redirects into the delayed site and into its ``/private/``. Global concurrency is
kept small (4), so an engine that parks its workers on the delayed site would visibly starve the others.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from crawler import run_async_enrichment
from enrich.config import EnrichConfig
from enrich.record import dumps_record
from enrich.sinks import MemorySink

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))
from multisite_web import MultiSiteWeb, SiteSpec, plan  # noqa: E402

CAP = 2
"""Requests in flight per site."""

DELAY_S = 0.3

SPECS = [
    SiteSpec("delayed", "127.0.0.40", 4, 10, crawl_delay_s=DELAY_S, not_found_rate=0, redirect_rate=0),
    SiteSpec("fast", "127.0.0.41", 10, 5, not_found_rate=0.1, redirect_rate=0),
    SiteSpec("redirecting", "127.0.0.42", 8, 20, not_found_rate=0, redirect_rate=0.25),
    SiteSpec("throttled", "127.0.0.43", 8, 5, "throttled", max_rps=4, not_found_rate=0, redirect_rate=0),
    SiteSpec("broken", "127.0.0.44", 4, 5, "always503", redirect_rate=0),
    SiteSpec("refused", "127.0.0.45", 2, 0, "refused"),
    SiteSpec("dead", "dead-1.invalid", 1, 0, "unresolvable"),
]

CONFIG: dict[str, Any] = {
    "fetch": {
        "max_concurrency": 4,
        "timeout_s": 10,
        "retries": 1,
        "backoff_base_s": 0.05,
        "backoff_cap_s": 0.2,
        "retry_after_cap_s": 2.0,
    },
    "politeness": {
        "per_domain_concurrency": CAP,
        "circuit_failures": 3,
        "circuit_cooldown_s": 30,
        "max_crawl_delay_s": 1.0,
    },
    "nlp": {"enabled": False},
}


@pytest.fixture(scope="module")
def web() -> Iterator[MultiSiteWeb]:
    with MultiSiteWeb(SPECS) as running:
        yield running


def crawl_async(urls: list[str], out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records and the frontier's figures of an async run."""
    sink = MemorySink()
    stats = asyncio.run(run_async_enrichment(urls=urls, sinks=[sink], config=EnrichConfig.from_mapping(CONFIG)))
    return [json.loads(dumps_record(record)) for record in sink.records], stats.to_dict()["frontier"]


def crawl_scrapy(urls: list[str], out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records and the frontier's figures of a Scrapy-mode run."""
    input_file, config_file, output = out / "urls.txt", out / "config.yml", out / "out.jsonl"
    stats_file = out / "stats.json"
    input_file.write_text("\n".join(urls) + "\n", encoding="utf-8")
    config_file.write_text(yaml.safe_dump({**CONFIG, "output": {"path": str(output)}}), encoding="utf-8")
    argv = [sys.executable, "-m", "scrapy", "crawl", "enrich", "-a", f"input={input_file}"]
    argv += ["-a", f"config={config_file}", "-a", f"stats_file={stats_file}"]
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    return records, stats["policies"]["frontier"]


CRAWLERS = {"async": crawl_async, "scrapy": crawl_scrapy}


@pytest.mark.parametrize("engine", ["async", "scrapy"])
def test_several_sites_are_crawled_completely_and_politely(engine: str, web: MultiSiteWeb, tmp_path: Path) -> None:
    web.reset()
    urls = web.urls("grouped")
    records, _ = CRAWLERS[engine](urls, tmp_path)

    # exactly one record per input URL
    assert Counter(r["url"] for r in records) == Counter(urls)
    by_url = {r["url"]: r for r in records}

    # politeness, measured at the server: caps, Crawl-delay, Retry-After, robots.txt
    report = web.politeness_report(per_site_cap=CAP)
    assert report.breaches == []
    sites = report.sites

    # the delayed site (first in the input) did not stall the others: they were all served while it waited
    delayed_last = max(e.start for e in web.log() if e.site == "delayed" and not e.robots)
    for name in ("fast", "redirecting"):
        assert sites[name].last_end is not None
        assert sites[name].last_end < delayed_last, name

    pages = plan(SPECS)
    base = {s.name: s.base_url(web.port) for s in SPECS}
    redirects = [p for p in pages["redirecting"] if p.target is not None]
    assert [p.target[0] for p in redirects if p.target] == ["delayed", "delayed"]
    into_page, into_private = (base["redirecting"] + p.path for p in redirects)
    # a redirect into the delayed site is one of its requests, under its Crawl-delay (checked by the report)
    assert (by_url[into_page]["status"], by_url[into_page]["error"]) == (200, None)
    assert by_url[into_page]["final_url"].startswith(base["delayed"])
    # a redirect into what the target's robots.txt disallows is refused, and never fetched
    error = by_url[into_private]["error"]
    assert error["type"] == "RobotsDisallowedError", error
    assert "/private/" in error["message"]
    assert sites["delayed"].disallowed_fetched == 0

    # dead links name their root cause
    for page in pages["refused"]:
        error = by_url[base["refused"] + page.path]["error"]
        assert error["type"] == "FetchError"
        assert error["message"].startswith("Connection refused"), error
    for page in pages["dead"]:
        error = by_url[base["dead"] + page.path]["error"]
        assert "DNS lookup failed for dead-1.invalid" in error["message"], error

    # the broken site ends in 503 records or circuit refusals, after at most circuit_failures + cap requests
    for page in pages["broken"]:
        error = by_url[base["broken"] + page.path]["error"]
        assert error["type"] in {"HTTPError", "CircuitOpenError"}, error
    assert sites["broken"].requests <= 3 + CAP

    # the throttled site was slowed down as asked, and every URL there got through
    throttled = [by_url[base["throttled"] + p.path] for p in pages["throttled"]]
    assert all(r["status"] == 200 for r in throttled), [r["error"] for r in throttled]
    assert sites["throttled"].retry_after_ignored == 0


LONG_RUN = [
    SiteSpec("slow", "127.0.0.50", 24, 5, crawl_delay_s=0.1, not_found_rate=0, redirect_rate=0),
    SiteSpec("quick", "127.0.0.51", 12, 5, not_found_rate=0, redirect_rate=0),
]


@pytest.mark.parametrize("engine", ["async", "scrapy"])
def test_a_long_run_of_one_slow_sites_urls_does_not_starve_the_next_site(engine: str, tmp_path: Path) -> None:
    """Grouped input, the slow site's 24 URLs first, and room in memory for 4 of them: the rest are read ahead into
    the spill file, so the quick site's URLs are found and fetched while the slow site waits out its delay."""
    global CONFIG
    saved = CONFIG
    CONFIG = {**CONFIG, "frontier": {"max_pending": 6, "max_site_pending": 4}}
    try:
        with MultiSiteWeb(LONG_RUN) as long_run:
            urls = long_run.urls("grouped")
            records, frontier = CRAWLERS[engine](urls, tmp_path)
            log = long_run.log()
            report = long_run.politeness_report(per_site_cap=CAP)
    finally:
        CONFIG = saved
    assert Counter(r["url"] for r in records) == Counter(urls)
    assert all(r["error"] is None for r in records)
    assert report.breaches == []
    slow_starts = sorted(e.start for e in log if e.site == "slow" and not e.robots)
    quick_ends = [e.end for e in log if e.site == "quick" and not e.robots]
    assert len(quick_ends) == 12
    assert max(quick_ends) < slow_starts[len(slow_starts) // 2]  # done before the slow site got halfway
    # memory held to its bound (a new site's first URL may pass it): the rest waited on disk
    assert frontier["peak_in_memory"] <= 6 + 1
    assert frontier["spilled"] > 0
