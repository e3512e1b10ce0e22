"""The enrich add-on in a project of its own: Scrapy's default settings plus ``ADDONS``, a spider that knows
nothing of the enrichment, a real loopback server, a real in-process crawl (pytest-twisted, ``tests/reactor.py``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.settings import Settings

from crawler.demo import make_pdf
from crawler.localsite import ServerThread
from crawler.scrapy_mode.addon import EnrichAddon
from crawler.scrapy_mode.pipelines import ExtractPipeline, SinkPipeline
from enrich.errors import ConfigError
from enrich.record import RECORD_FIELDS
from tests.integration.conftest import article
from tests.reactor import in_reactor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from scrapy.http import Response

LINKS = b"<html><body><a href='/a'>a</a> <a href='/b'>b</a> <a href='/doc.pdf'>doc</a></body></html>"


def make_app() -> web.Application:
    pdf = make_pdf()

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/":
            return web.Response(body=LINKS, content_type="text/html")
        if path == "/b":
            raise web.HTTPFound("/c")
        if path == "/doc.pdf":
            return web.Response(body=pdf, content_type="application/pdf")
        return web.Response(body=article(f"Page {path}"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with ServerThread(make_app) as thread:
        yield thread.url


class SiteSpider(Spider):
    """A project's own spider: its items, its links; the add-on adds the records."""

    name = "site"

    def __init__(self, base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = base

    async def start(self) -> AsyncIterator[Request]:
        yield Request(f"{self.base}/", callback=self.parse)
        yield Request(f"{self.base}/skipped", callback=self.parse, meta={"enrich": False})
        yield Request(f"{self.base}/marked", callback=self.parse, meta={"enrich": True})

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"kind": "mine", "page": response.url}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)


async def crawl_with_addon(server: str, **settings: Any) -> tuple[list[dict[str, Any]], Crawler]:
    crawler = Crawler(
        SiteSpider,
        Settings(
            {
                "ADDONS": {EnrichAddon: 0},
                "ENRICH_CONFIG": {"nlp": {"enabled": False}},
                "LOG_LEVEL": "WARNING",
                **settings,
            }
        ),
    )
    items: list[dict[str, Any]] = []

    def collect(item: Any) -> None:
        items.append(item)

    crawler.signals.connect(collect, signal=signals.item_scraped, weak=False)
    await crawler.crawl_async(base=server)
    return items, crawler


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def records_of(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    records = [item for item in items if "kind" not in item]
    by_url = {record["url"]: record for record in records}
    assert len(by_url) == len(records), "one record per response"
    return by_url


@in_reactor
async def test_every_response_of_a_projects_spider_becomes_a_record(server: str, tmp_path: Path) -> None:
    output = tmp_path / "records.jsonl"
    items, crawler = await crawl_with_addon(server, ENRICH_OUTPUT=str(output))

    pages = [f"{server}/", f"{server}/skipped", f"{server}/marked", f"{server}/a", f"{server}/c", f"{server}/doc.pdf"]
    mine = [item for item in items if item.get("kind") == "mine"]
    assert sorted(item["page"] for item in mine) == sorted(pages)  # the spider's own items, untouched
    assert all(set(item) == {"kind", "page"} for item in mine)

    records = records_of(items)
    expected = {f"{server}/", f"{server}/marked", f"{server}/a", f"{server}/b", f"{server}/doc.pdf"}
    assert set(records) == expected  # not the one whose request said enrich: False
    for record in records.values():
        assert tuple(record) == RECORD_FIELDS
        assert record["error"] is None
        assert record["engine"] == "scrapy"
    assert records[f"{server}/a"]["title"] == "Page /a"
    assert records[f"{server}/b"]["final_url"] == f"{server}/c"  # the URL asked for, and where it led
    assert records[f"{server}/doc.pdf"]["content_type"] == "application/pdf"
    assert records[f"{server}/doc.pdf"]["page_count"] == 1
    assert f"{server}/a" in records[f"{server}/"]["links"]

    written = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert {r["url"]: r for r in written} == records  # the add-on's sinks wrote what the feeds got
    pipelines = crawler.settings.getdict("ITEM_PIPELINES")
    assert pipelines[ExtractPipeline] < pipelines[SinkPipeline] < 300  # before the project's own


@in_reactor
async def test_marked_mode_enriches_only_marked_requests_and_writes_no_file_unasked(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    items, _ = await crawl_with_addon(server, ENRICH_RESPONSES="marked")
    assert set(records_of(items)) == {f"{server}/marked"}
    assert listing(tmp_path) == []  # no output configured: nothing written (no data/ folder)


def test_another_reactor_is_refused() -> None:
    settings = Settings({"TWISTED_REACTOR": "twisted.internet.epollreactor.EPollReactor"})
    with pytest.raises(ConfigError, match="needs TWISTED_REACTOR"):
        EnrichAddon().update_settings(settings)
