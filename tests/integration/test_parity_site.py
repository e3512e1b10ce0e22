"""Parity without a corpus: the async engine and Scrapy mode crawl the same small local site, and their records
agree field by field, timings aside.

The site has what the engines must agree on (``enrich.policy``, ``enrich.state``): a repeated input line, redirect
chains, answers retried and then good, a 5xx that stays one, final 4xx, a PDF, credentials in a URL (the page
echoes the ``Authorization`` it got), a robots.txt refusal; beside it a refused connection and invalid URLs. Each
engine gets a fresh server (retry counters start again); URLs are compared with the server's address taken out.
Both engines run in this process, in the reactor pytest-twisted runs (``tests/reactor.py``): the async engine is
asyncio code like any other.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.settings import Settings

from crawler import run_async_enrichment
from crawler.demo import make_pdf
from crawler.localsite import ServerThread
from crawler.scrapy_mode.spiders.enrich import EnrichSpider
from enrich.config import EnrichConfig
from enrich.sinks import MemorySink
from tests.integration.conftest import article
from tests.reactor import in_reactor

if TYPE_CHECKING:
    from pathlib import Path

TIMINGS = frozenset({"fetched_at", "enriched_at", "fetch_duration_ms", "process_duration_ms", "timings"})

PATHS = [
    "/page/a",
    "/page/a",  # a repeated input line: one record
    "/moved",  # 301 -> 302 -> /page/final
    "/flaky/503",  # 503, then 200
    "/flaky/500",  # 500, then 200
    "/always/502",  # retried, then final
    "/always/404",
    "/always/410",
    "/doc.pdf",
    "/private/secret",  # robots.txt says no
    "/auth",
    "/page/b#fragment",
    "/slow",  # past the timeout, twice
]


def site_app() -> web.Application:
    hits: dict[str, int] = {}
    pdf = make_pdf()

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        hits[path] = hits.get(path, 0) + 1
        if path == "/robots.txt":
            return web.Response(text="User-agent: *\nDisallow: /private/\n")
        if path == "/moved":
            raise web.HTTPMovedPermanently("/found")
        if path == "/found":
            raise web.HTTPFound("/page/final")
        if path.startswith("/flaky/") and hits[path] == 1:
            return web.Response(status=int(path.rsplit("/", 1)[1]), text="again")
        if path.startswith("/always/"):
            return web.Response(status=int(path.rsplit("/", 1)[1]), text="no")
        if path == "/slow":
            await asyncio.sleep(2)
        if path == "/doc.pdf":
            return web.Response(body=pdf, content_type="application/pdf")
        if path == "/auth":
            heard = request.headers.get("Authorization", "none")
            return web.Response(body=article("Credentials", f"The server heard {heard}."), content_type="text/html")
        return web.Response(body=article(f"Page {path}"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


def inputs(base: str, refused: str) -> list[str]:
    authority = base.removeprefix("http://")
    urls = [base + path for path in PATHS if path != "/auth"]
    return [*urls, f"http://user:p%C3%A4ss@{authority}/auth", refused, "not a url", "ftp://example.com/file.txt"]


CONFIG = {
    "fetch": {"retries": 1, "backoff_base_s": 0.05, "backoff_jitter": 0, "timeout_s": 1, "max_concurrency": 4},
    "nlp": {"enabled": False},
}


def comparable(records: list[dict[str, Any]], base: str) -> dict[str, dict[str, Any]]:
    """Records by URL, the server's address replaced, timings left out (but whether each is measured kept)."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        text = json.dumps(record).replace(base, "SITE").replace(base.removeprefix("http://"), "HOST")
        plain: dict[str, Any] = json.loads(text)
        key = plain["url"]
        assert key not in out, f"two records for {key}"
        out[key] = {k: v for k, v in plain.items() if k not in TIMINGS}
        out[key]["measured"] = {k: record[k] is not None for k in sorted(TIMINGS)}
    return out


async def crawl_async(tmp_path: Path, refused: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    sink = MemorySink()
    with ServerThread(site_app) as server:
        config = EnrichConfig().replace(**CONFIG, output={"path": str(tmp_path / "unused.jsonl")})
        urls = inputs(server.url, refused)
        stats = await run_async_enrichment(urls, config=config, sinks=[sink], progress_interval_s=0)
        return comparable([r.to_dict() for r in sink.records], server.url), stats.to_dict()


async def crawl_scrapy(tmp_path: Path, refused: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    with ServerThread(site_app) as server:
        input_file, stats_file = tmp_path / "urls.txt", tmp_path / "stats.json"
        input_file.write_text("\n".join(inputs(server.url, refused)) + "\n", encoding="utf-8")
        items, stats = await scrapy_items(input_file, stats_file, CONFIG)
        return comparable(items, server.url), stats


async def scrapy_items(
    input_file: Path, stats_file: Path, config: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The enrich spider in this process (a real Crawler) over ``input_file`` with ``config`` (``ENRICH_CONFIG``):
    the items it scraped and its stats file."""
    settings = Settings()
    settings.setmodule("crawler.scrapy_mode.settings", priority="project")
    settings.setdict({"LOG_LEVEL": "WARNING", "ENRICH_CONFIG": config}, priority="cmdline")
    crawler = Crawler(EnrichSpider, settings)
    items: list[dict[str, Any]] = []

    def collect(item: dict[str, Any]) -> None:
        items.append(item)

    crawler.signals.connect(collect, signal=signals.item_scraped, weak=False)
    await crawler.crawl_async(input=str(input_file), stats_file=str(stats_file))
    with open(stats_file, encoding="utf-8") as handle:  # noqa: ASYNC230 - a small file, after the crawl
        return items, json.load(handle)


@in_reactor
async def test_both_engines_write_the_same_records(tmp_path: Path, unreachable_url: str) -> None:
    expected, async_stats = await crawl_async(tmp_path / "async", unreachable_url)
    (tmp_path / "scrapy").mkdir()
    actual, scrapy_stats = await crawl_scrapy(tmp_path / "scrapy", unreachable_url)

    assert sorted(actual) == sorted(expected)
    assert len(expected) == len(set(PATHS)) + 3  # the repeated line gave no second record
    assert expected["SITE/slow"]["error"]["message"] == "Fetch failed after 2 attempts: Timeout after 1s"
    refused = expected[unreachable_url]
    assert refused["error"]["message"].startswith("Connection refused"), refused["error"]
    for url, record in expected.items():
        record["engine"] = actual[url]["engine"] = "-"
        assert actual[url] == record, url
    assert async_stats["duplicates_skipped"] == scrapy_stats["duplicates_skipped"] == 1
