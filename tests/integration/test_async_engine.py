"""The asyncio engine against real loopback servers: every scenario ends as exactly one checked record."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from crawler import AsyncEnrichmentProcessor, run_async_enrichment
from crawler.demo import demo_urls
from crawler.localsite import ServerThread
from enrich.config import EnrichConfig
from enrich.policy import AddressPolicy
from enrich.record import Record, load_schema
from enrich.sinks import JsonlSink, MemorySink
from enrich.urls import InputURL, read_urls

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from enrich.stats import RunStats
    from tests.integration.conftest import Hits

BASE = EnrichConfig().replace(
    nlp={"enabled": False},
    fetch={
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "backoff_jitter": 0.0,
        "retry_after_cap_s": 5.0,
        "timeout_s": 10.0,
        "max_concurrency": 20,
    },
    aimd={"interval_s": 0.2},
)


def key() -> str:
    return uuid.uuid4().hex[:12]


def inputs(urls: Iterable[str]) -> Iterator[InputURL]:
    return read_urls(enumerate(urls, 1))


async def crawl(
    urls: Iterable[str], config: EnrichConfig = BASE, sections: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, Record], RunStats, AsyncEnrichmentProcessor]:
    if sections:
        config = config.replace(**sections)
    sink = MemorySink()
    processor = AsyncEnrichmentProcessor.from_config(config, sinks=[sink], progress_interval_s=0)
    stats = await processor.run(inputs(urls))
    records = {record.url: record for record in sink.records}
    assert len(records) == len(sink.records), "one record per URL"
    return records, stats, processor


async def crawl_one(url: str, **sections: dict[str, Any]) -> Record:
    records, stats, _ = await crawl([url], sections=sections)
    assert stats.processed == 1
    return records[url]


async def test_plain_success(site: ServerThread) -> None:
    url = f"{site.url}/ok/first"
    record = await crawl_one(url)
    assert record.error is None
    assert (record.status, record.final_url, record.content_type, record.attempts) == (200, url, "text/html", 1)
    assert record.title == "Page first"
    assert record.text is not None
    assert "lighthouse" in record.text
    assert record.word_count > 20
    assert record.language == "en"
    assert record.engine == "async"
    assert record.fetched_at is not None
    assert record.enriched_at is not None
    assert record.fetch_duration_ms is not None
    assert record.fetch_duration_ms > 0
    assert record.size_bytes is not None
    assert record.size_bytes > 100


async def test_user_agent_from_config(site: ServerThread) -> None:
    record = await crawl_one(f"{site.url}/ua", fetch={"user_agent": "testbot/1.0", "contact": "ops@example.org"})
    assert record.text == "testbot/1.0 contact: ops@example.org"


async def test_slow_server(site: ServerThread) -> None:
    record = await crawl_one(f"{site.url}/slow/300")
    assert record.error is None
    assert record.status == 200
    assert record.title == "Slow page"
    assert record.fetch_duration_ms is not None
    assert record.fetch_duration_ms >= 300


async def test_500_then_success_is_retried(site: ServerThread, hits: Hits) -> None:
    path = f"/flaky/{key()}"
    record = await crawl_one(site.url + path)
    assert record.error is None
    assert (record.status, record.attempts, record.title) == (200, 2, "Recovered page")
    assert hits[path] == 2


async def test_429_retry_after_is_honoured(site: ServerThread, hits: Hits) -> None:
    path = f"/ratelimited/{key()}/1"
    record = await crawl_one(site.url + path)
    assert record.error is None
    assert (record.status, record.attempts, record.title) == (200, 2, "Patient page")
    assert record.fetch_duration_ms is not None
    assert record.fetch_duration_ms >= 1000
    assert hits[path] == 2


async def test_retry_after_past_the_cap_is_not_retried_early(site: ServerThread) -> None:
    """Retrying at the cap would come back before the time the server named: the URL is given up, and says so."""
    record = await crawl_one(f"{site.url}/ratelimited/{key()}/3600", fetch={"retry_after_cap_s": 0.2})
    assert (record.status, record.attempts) == (429, 1)
    assert record.error is not None
    assert "retry after 3600 s, longer than fetch.retry_after_cap_s (0.2 s)" in record.error.message


async def test_dropped_connection(site: ServerThread, hits: Hits) -> None:
    path = f"/drop/{key()}"
    record = await crawl_one(site.url + path)
    assert record.error is not None
    assert record.error.type == "FetchError"
    assert record.error.stage == "fetch"
    assert record.error.message == "Fetch failed after 3 attempts: Server disconnected"
    assert (record.status, record.attempts, record.text) == (None, 3, None)
    assert hits[path] >= 3  # aiohttp may itself resend once on a dropped connection, inside one attempt


async def test_timeout(site: ServerThread, hits: Hits) -> None:
    path = f"/hang/{key()}"
    record = await crawl_one(site.url + path, fetch={"timeout_s": 0.3, "retries": 1})
    assert record.error is not None
    assert record.error.type == "FetchTimeoutError"
    assert record.error.message.startswith("Fetch failed after 2 attempts: ")
    assert "timeout" in record.error.message.lower()
    assert (record.status, record.attempts) == (None, 2)
    assert record.fetch_duration_ms is not None
    assert record.fetch_duration_ms >= 600
    assert hits[path] == 2


async def test_connection_refused(unreachable_url: str) -> None:
    # robots.txt on: an unreachable robots.txt disallows the site for a while (RFC 9309, docs/hostile-web.md);
    # the record names the root cause (the host refuses connections), with robots.txt as context
    record = await crawl_one(unreachable_url)
    assert record.error is not None
    assert (record.error.type, record.error.message, record.error.stage) == (
        "FetchError",
        f"Connection refused (fetching robots.txt of {unreachable_url.rstrip('/')}; the site is not fetched for 60 s)",
        "fetch",
    )
    assert (record.status, record.attempts) == (None, 0)


async def test_connection_refused_without_robots(unreachable_url: str) -> None:
    record = await crawl_one(unreachable_url, politeness={"respect_robots": False})
    assert record.error is not None
    assert (record.error.type, record.error.message) == (
        "FetchError",
        "Fetch failed after 3 attempts: Connection refused",
    )
    assert (record.status, record.attempts) == (None, 3)


async def test_redirect_chain(site: ServerThread) -> None:
    url = f"{site.url}/redirect/3"
    record = await crawl_one(url)
    assert record.error is None
    assert record.url == url
    assert record.final_url == f"{site.url}/ok/final"
    assert (record.status, record.title, record.attempts) == (200, "Page final", 1)


async def test_too_many_redirects_is_final(site: ServerThread) -> None:
    record = await crawl_one(f"{site.url}/redirect/5", fetch={"max_redirects": 2})
    assert record.error is not None
    assert record.error.type == "FetchError"
    assert record.error.message == "Fetch failed after 1 attempt: Too many redirects (more than 2)"
    assert record.attempts == 1


async def test_pdf(site: ServerThread) -> None:
    record = await crawl_one(f"{site.url}/report.pdf")
    assert record.error is None
    assert (record.status, record.content_type, record.page_count) == (200, "application/pdf", 1)
    assert record.title == "Harbour Town Survey Report"
    assert record.author == "Ingrid Solberg"
    assert record.file_name == "report.pdf"
    assert record.text is not None
    assert "lighthouse" in record.text


async def test_image(site: ServerThread) -> None:
    record = await crawl_one(f"{site.url}/map.png")
    assert record.error is None
    assert (record.status, record.content_type, record.file_name) == (200, "image/png", "map.png")
    assert record.metadata["width"] == 64
    assert record.metadata["height"] == 48
    assert record.text is None


async def test_404_is_not_retried(site: ServerThread, hits: Hits) -> None:
    path = f"/missing/{key()}"
    record = await crawl_one(site.url + path)
    assert record.error is not None
    assert (record.error.type, record.error.message, record.error.stage) == ("HTTPError", "HTTP 404 Not Found", "fetch")
    assert (record.status, record.attempts, record.final_url) == (404, 1, site.url + path)
    assert hits[path] == 1


async def test_invalid_urls_get_records_without_fetch(site: ServerThread) -> None:
    urls = ["ftp://example.org/file", "not a url", "http://", f"{site.url}/ok/valid"]
    records, stats, processor = await crawl(urls)
    assert len(records) == 4
    ftp = records["ftp://example.org/file"]
    assert ftp.error is not None
    assert (ftp.error.type, ftp.error.stage) == ("InvalidURLError", "input")
    assert "unsupported scheme 'ftp'" in ftp.error.message
    for url in urls[:3]:
        bad = records[url]
        assert bad.error is not None
        assert bad.error.stage == "input"
        assert (bad.attempts, bad.status, bad.fetched_at) == (0, None, None)
    assert records[f"{site.url}/ok/valid"].error is None
    assert stats.errors_by_stage == {"input": 3}
    assert processor.frontier.counts["started"] == 1  # only the valid URL was fetched


async def test_body_over_size_cap_is_truncated(site: ServerThread) -> None:
    record = await crawl_one(f"{site.url}/big", fetch={"max_response_bytes": 4096})
    assert record.status == 200
    assert record.size_bytes == 4096
    assert record.metadata.get("truncated") is True
    assert record.attempts == 1


async def test_streamed_large_input_gives_one_record_per_url(site: ServerThread) -> None:
    total = 2000
    config = BASE.replace(frontier={"max_pending": 100, "max_lookahead": 100})
    processor = AsyncEnrichmentProcessor.from_config(config, sinks=[sink := MemorySink()], progress_interval_s=0)
    lead = 0

    def generate() -> Iterator[InputURL]:
        nonlocal lead
        for n in range(total):
            lead = max(lead, n - processor.stats.processed)
            url = f"{site.url}/ok/{n}" if n % 100 else f"gopher://bad/{n}"
            yield from read_urls([(n + 1, url)])

    stats = await processor.run(generate())
    urls = [record.url for record in sink.records]
    assert len(urls) == total
    assert len(set(urls)) == total
    assert stats.processed == total
    assert stats.failed == total // 100
    assert stats.errors_by_type == {"InvalidURLError": total // 100}
    # the producer never runs far ahead of the stages: the frontier's look-ahead (in memory, and while the one site
    # is at its cap, a bounded search for other sites into the spill file), the item queue and the tasks in between
    # bound the lead
    frontier = processor.frontier
    bound = frontier.max_pending + frontier.max_probe + processor.queue_size + processor.max_concurrency
    bound += processor.stage_workers
    assert lead <= bound + 2 < total
    assert processor.peak_active <= BASE.fetch.max_concurrency


async def test_site_cap_backs_off_under_503_burst_then_recovers(site: ServerThread, hits: Hits) -> None:
    route = key()
    burst = 150
    config = BASE.replace(
        fetch={"retries": 0, "max_concurrency": 20, "backoff_base_s": 0.01, "backoff_cap_s": 0.05},
        aimd={"interval_s": 0.05, "increase_step": 2},
        # congestion control is under test: the site's circuit breaker must not end the burst early
        politeness={"circuit_failures": 10_000, "per_domain_concurrency": 16},
    )
    urls = [f"{site.url}/overload/{route}/{burst}/{n}" for n in range(800)]
    records, stats, processor = await crawl(urls, config)
    assert len(records) == 800
    failed = [r for r in records.values() if r.error is not None]
    assert len(failed) == burst
    assert all(r.error is not None and r.error.type == "HTTPError" and r.status == 503 for r in failed)
    assert stats.errors_by_type == {"HTTPError": burst}
    state = processor.frontier.site(site.url)
    assert state.decreases >= 1
    assert state.lowest_cwnd < 16
    assert state.cwnd > state.lowest_cwnd  # raised again once the server recovered
    assert state.peak_in_flight <= 16
    assert hits.peak_in_flight <= 20 * 2  # shared server: other tests ran before, never concurrently


async def test_run_async_enrichment_writes_valid_jsonl(site: ServerThread, tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    out = tmp_path / "out.jsonl"
    urls = [f"{site.url}/ok/{n}" for n in range(30)] + ["mailto:someone@example.org", f"{site.url}/missing/{key()}"]
    progress: list[int] = []
    stats = await run_async_enrichment(
        urls=urls,
        output_file=out,
        nlp_config={"enabled": False},
        max_concurrency=8,
        timeout=5,
        batch_size=7,
        config=BASE,
        progress_callback=lambda s: progress.append(s.processed),
    )
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(urls) == stats.processed
    schema = load_schema()
    rows = [json.loads(line) for line in lines]
    for row in rows:
        jsonschema.validate(row, schema)
    assert {row["url"] for row in rows} == set(urls)
    assert stats.success == 30
    assert progress[-1] == len(urls)  # the callback hears the end of the run
    summary = stats.to_dict()
    assert summary["peak_in_flight"] <= 8
    assert summary["frontier"]["started"] == 31  # 30 pages and the missing one; the mailto: is never fetched
    assert summary["processed"] == len(urls)
    json.dumps(summary)


async def test_run_async_enrichment_reads_an_input_file(site: ServerThread, tmp_path: Path) -> None:
    source = tmp_path / "urls.txt"
    source.write_text(f"# comment\n{site.url}/ok/a\n\n{site.url}/ok/b\nnot-a-url\n", encoding="utf-8")
    sink = MemorySink()
    stats = await run_async_enrichment(urls=source, sinks=[sink], config=BASE)
    assert sorted(r.url for r in sink.records) == sorted([f"{site.url}/ok/a", f"{site.url}/ok/b", "not-a-url"])
    assert stats.failed == 1


async def test_stop_finishes_in_flight_and_leaves_valid_jsonl(site: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "stopped.jsonl"
    config = BASE.replace(fetch={"max_concurrency": 4}, output={"batch_size": 1000})
    processor = AsyncEnrichmentProcessor.from_config(config, sinks=[JsonlSink(path=out)], progress_interval_s=0)
    taken = 0

    def generate() -> Iterator[InputURL]:
        nonlocal taken
        for n in range(10_000):
            taken += 1
            if n == 40:
                processor.stop()
            yield from read_urls([(n + 1, f"{site.url}/slow/20?n={n}")])

    stats = await processor.run(generate())
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == stats.processed
    assert 0 < stats.processed <= 41
    assert stats.processed + processor.not_started == taken
    assert all(row["error"] is None and row["status"] == 200 for row in rows)


async def test_cancelled_run_flushes_what_it_processed(site: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "cancelled.jsonl"
    config = BASE.replace(output={"batch_size": 1000})
    processor = AsyncEnrichmentProcessor.from_config(config, sinks=[JsonlSink(path=out)], progress_interval_s=0)
    urls = (f"{site.url}/slow/50?n={n}" for n in range(100_000))
    task = asyncio.create_task(processor.run(inputs(urls)))
    while processor.stats.processed < 10:  # noqa: ASYNC110 - polls a counter the run owns; no event to wait on
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == processor.stats.processed >= 10
    assert all(row["status"] == 200 for row in rows)


async def test_progress_lines_are_logged(site: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="crawler.async_engine.processor")
    processor = AsyncEnrichmentProcessor.from_config(BASE, sinks=[MemorySink()], progress_interval_s=0.05)
    await processor.run(inputs(f"{site.url}/slow/10?n={n}" for n in range(60)))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Processed: ")]
    assert lines, "at least one progress line"
    assert " | Success: " in lines[0]
    assert " | Concurrency: " in lines[0]
    assert " | Avg fetch: " in lines[0]


@pytest.mark.slow
async def test_nlp_on_the_demo_site(demo_site: ServerThread) -> None:
    urls = demo_urls(demo_site.url)
    config = BASE.replace(nlp={"enabled": True})
    records, stats, _ = await crawl(urls, config)
    assert set(records) == set(urls)
    lighthouse = records[f"{demo_site.url}/lighthouse.html"]
    assert lighthouse.error is None
    labels = {entity.label for entity in lighthouse.entities}
    texts = {entity.text for entity in lighthouse.entities}
    assert lighthouse.entities, "entities found"
    assert labels & {"GPE", "PERSON", "DATE", "ORG", "FAC", "LOC"}
    assert any("Harbour Town" in text for text in texts)
    assert lighthouse.keywords
    assert lighthouse.summary
    report = records[f"{demo_site.url}/survey-report.pdf"]
    assert report.entities
    missing = records[f"{demo_site.url}/missing-page.html"]
    assert missing.error is not None
    assert missing.error.message == "HTTP 404 Not Found"
    assert stats.failed == 1


async def test_dead_links_do_not_lower_concurrency(site: ServerThread, unreachable_url: str) -> None:
    """A normal list holds 5-10 % dead links: 404s, refused hosts, names that do not resolve. None of them is a sign
    of load, so the live site keeps its full per-site cap."""
    tag = key()
    urls = []
    for n in range(200):
        urls.append(f"{site.url}/slow/40?k={tag}-{n}")
        if n % 10 == 0:
            urls += [f"{site.url}/missing/{tag}-{n}", f"{unreachable_url}x{n}", f"http://dead-{n}.invalid/"]
    config = BASE.replace(politeness={"per_domain_concurrency": 8, "respect_robots": False}, fetch={"retries": 0})
    records, stats, processor = await crawl(urls, config)
    assert len(records) == len(urls)
    assert stats.success == 200
    state = processor.frontier.site(site.url)
    assert state.decreases == 0
    assert processor.frontier.policy.cap(state) == 8
    assert state.peak_in_flight == 8
    assert processor.frontier.stats()["cap_decreases"] == 0
    refused = [r for url, r in records.items() if url.startswith(unreachable_url)]
    assert all(r.error is not None and "Connection refused" in r.error.message for r in refused)


class _OnlyHostPublic(AddressPolicy):
    """Treats one loopback address as public, so a redirect from it to another loopback address can be tested on
    this machine: the real policy with one exception, not a fake transport."""

    def __init__(self, public: str) -> None:
        super().__init__(allow_private=False)
        self.public = public

    def check_host(self, host: str) -> str | None:
        return None if host.strip("[]") == self.public else super().check_host(host)


async def test_robots_txt_redirect_to_a_private_address_is_refused() -> None:
    seen: list[str] = []

    def app() -> web.Application:
        async def handler(request: web.Request) -> web.StreamResponse:
            seen.append(f"{request.host}{request.path}")
            if request.path == "/robots.txt" and request.host.startswith("127.0.0.62"):
                raise web.HTTPFound(f"http://127.0.0.63:{request.url.port}/robots.txt")
            return web.Response(text="<html><body><p>page</p></body></html>", content_type="text/html")

        application = web.Application()
        application.router.add_get("/{tail:.*}", handler)
        return application

    with ServerThread(app, host="127.0.0.62") as public, ServerThread(app, host="127.0.0.63", port=public.port):
        config = BASE.replace(politeness={"allow_private_addresses": False})
        processor = AsyncEnrichmentProcessor.from_config(config, sinks=[sink := MemorySink()], progress_interval_s=0)
        processor.fetcher.addresses = _OnlyHostPublic("127.0.0.62")
        await processor.run(inputs([f"{public.url}/page"]))
    (record,) = sink.records
    assert record.error is not None
    assert record.error.type == "BlockedAddressError"
    assert "127.0.0.63" in record.error.message
    assert seen == [f"127.0.0.62:{public.port}/robots.txt"]  # the hop was never made, the page never fetched


async def test_records_carry_per_stage_timings(site: ServerThread) -> None:
    """Every step the async engine measures is in the record, and the run's stats add them up."""
    url = f"{site.url}/slow/300"
    records, stats, _ = await crawl([url], sections={"politeness": {"respect_robots": False}})  # a new connection
    timings = records[url].timings
    assert timings is not None
    for name in ("queue_ms", "connect_ms", "ttfb_ms", "body_ms", "extract_ms", "sink_ms"):
        assert timings[name] is not None, name
    assert timings["nlp_ms"] is None  # NLP is off in these tests: not measured, not zero
    assert timings["connect_ms"] > 0  # the first request opens its connection
    assert timings["ttfb_ms"] >= 300  # the server waits before answering
    figures = stats.to_dict()
    assert figures["stage_times"]["ttfb"]["count"] == 1
    assert set(figures["utilization"]) >= {"fetch", "extract", "sink"}
    assert figures["bottleneck"]
