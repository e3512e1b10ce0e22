"""Where extraction runs changes no record: ``extract.executor`` thread against process, in both engines.

With ``process`` and NLP in processes, extraction runs in the NLP stage's worker processes (real spawned workers
with the tripwire model, which tags a few names); with NLP off, in a process pool of its own. Each crawl gets the
same small local site: HTML pages, a PDF, a plain-text file, an empty page and a 404. Records are compared field
by field, timings aside (the helpers of ``test_parity_site.py``).
"""

from __future__ import annotations

import multiprocessing
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from crawler import run_async_enrichment
from crawler.demo import make_pdf
from crawler.localsite import ServerThread
from enrich.config import EnrichConfig
from enrich.pipeline import build_enrichment
from enrich.record import FetchedPage
from enrich.sinks import MemorySink
from enrich.stages import StageChain, WorkItem
from tests.integration.conftest import article
from tests.integration.test_parity_site import comparable, scrapy_items
from tests.reactor import in_reactor

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

PATHS = ["/page/bergen", "/page/ibsen", "/doc.pdf", "/notes.txt", "/empty", "/missing"]


def site_app() -> web.Application:
    pdf = make_pdf()

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/robots.txt":
            return web.Response(text="User-agent: *\nAllow: /\n")
        if path == "/doc.pdf":
            return web.Response(body=pdf, content_type="application/pdf")
        if path == "/notes.txt":
            return web.Response(text="Ibsen wrote in Norway.\nBergen has a theatre.", content_type="text/plain")
        if path == "/empty":
            return web.Response(body=b"", content_type="text/html")
        if path == "/missing":
            return web.Response(status=404, text="no")
        name = path.rsplit("/", 1)[1].capitalize()
        body = f"{name} is a name the tripwire model knows. Ibsen lived in Bergen, on the coast of Norway."
        return web.Response(body=article(f"About {name}", body), content_type="text/html")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


def config_for(model: str, executor: str, *, nlp: bool) -> dict[str, Any]:
    return {
        "fetch": {"retries": 0, "max_concurrency": 4},
        "extract": {"executor": executor},
        "nlp": {"enabled": nlp, "model": model, "executor": "process", "workers": 2, "detect_language": False},
    }


async def crawl_async(tmp_path: Path, overrides: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    sink = MemorySink()
    with ServerThread(site_app) as server:
        config = EnrichConfig().replace(**overrides, output={"path": str(tmp_path / "unused.jsonl")})
        urls = [server.url + path for path in PATHS]
        stats = await run_async_enrichment(urls, config=config, sinks=[sink], progress_interval_s=0)
        return comparable([r.to_dict() for r in sink.records], server.url), stats.to_dict()


async def crawl_scrapy(tmp_path: Path, overrides: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:

    with ServerThread(site_app) as server:
        input_file, stats_file = tmp_path / "urls.txt", tmp_path / "stats.json"
        input_file.write_text("".join(f"{server.url}{path}\n" for path in PATHS), encoding="utf-8")
        items, stats = await scrapy_items(input_file, stats_file, overrides)
        return comparable(items, server.url), stats


def assert_same(actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    assert sorted(actual) == sorted(expected)
    for url, record in expected.items():
        assert actual[url] | {"engine": "-"} == record | {"engine": "-"}, url


async def test_async_engine_records_are_the_same_wherever_extraction_runs(tripwire_model: str, tmp_path: Path) -> None:
    expected, threads = await crawl_async(tmp_path / "a", config_for(tripwire_model, "thread", nlp=True))
    actual, processes = await crawl_async(tmp_path / "b", config_for(tripwire_model, "process", nlp=True))
    assert_same(actual, expected)
    assert threads["extract_executor"] == "thread"
    assert processes["extract_executor"] == "nlp_workers"
    page = expected["SITE/page/bergen"]
    assert page["error"] is None
    assert {e["text"] for e in page["entities"]} == {"Ibsen", "Bergen", "Norway"}  # NLP ran on the extracted text
    assert expected["SITE/doc.pdf"]["page_count"] == actual["SITE/doc.pdf"]["page_count"] is not None
    assert expected["SITE/empty"]["error"]["stage"] == "extract"
    assert multiprocessing.active_children() == []


async def test_once_the_nlp_workers_are_up_every_page_is_extracted_there(tripwire_model: str) -> None:
    config = EnrichConfig().replace(**config_for(tripwire_model, "process", nlp=True))
    extract, nlp = build_enrichment(config)
    page = FetchedPage(
        url="https://example.org/",
        final_url="https://example.org/",
        status=200,
        headers={"content-type": "text/html"},
        body=article("Bergen", "Ibsen lived in Bergen, a town of Norway, for years."),
        fetched_at="2026-01-01T00:00:00Z",
        fetch_duration_ms=1.0,
    )
    async with StageChain([extract, nlp]) as chain:
        await nlp.ready()
        items = [await chain.process(WorkItem.from_page(page, engine="async")) for _ in range(3)]
    assert extract.in_workers == 3
    assert {e.text for e in items[0].record.entities} == {"Ibsen", "Bergen", "Norway"}
    assert items[0].record.title == "Bergen"


async def test_without_nlp_extraction_runs_in_its_own_processes(tripwire_model: str, tmp_path: Path) -> None:
    expected, _ = await crawl_async(tmp_path / "a", config_for(tripwire_model, "thread", nlp=False))
    actual, stats = await crawl_async(tmp_path / "b", config_for(tripwire_model, "process", nlp=False))
    assert_same(actual, expected)
    assert stats["extract_executor"] == "process"
    assert expected["SITE/page/ibsen"]["title"] == "About Ibsen"
    assert multiprocessing.active_children() == []


@in_reactor
async def test_scrapy_mode_extracts_in_the_nlp_workers_with_the_same_records(
    tripwire_model: str, tmp_path: Path
) -> None:
    (tmp_path / "scrapy").mkdir()
    expected, _ = await crawl_async(tmp_path / "async", config_for(tripwire_model, "thread", nlp=True))
    actual, stats = await crawl_scrapy(tmp_path / "scrapy", config_for(tripwire_model, "process", nlp=True))
    assert_same(actual, expected)
    assert stats["extract_executor"] == "nlp_workers"
