"""Scrapy mode in process: a real :class:`~scrapy.crawler.Crawler` with Scrapy mode's settings, in the reactor
pytest-twisted runs (``tests/reactor.py``), against a real loopback server in a thread.

What a subprocess cannot show is read here directly: the items Scrapy hands to its feed exports
(``item_scraped``), the crawler's stats, and the components Scrapy built.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.settings import Settings

from crawler.localsite import ServerThread
from crawler.scrapy_mode.config import run_of
from crawler.scrapy_mode.middlewares import POLICY_STATS, BackoffRetryMiddleware
from crawler.scrapy_mode.spiders.enrich import EnrichSpider
from enrich.record import RECORD_FIELDS
from tests.integration.conftest import article
from tests.reactor import in_reactor

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from scrapy import Spider

ROBOTS = b"User-agent: *\nDisallow: /private/\n"


@dataclass
class Seen:
    """Server-side: when each path was requested (``time.monotonic``)."""

    times: dict[str, list[float]] = field(default_factory=dict)

    def hit(self, path: str) -> int:
        self.times.setdefault(path, []).append(time.monotonic())
        return len(self.times[path])


def make_app(seen: Seen) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        count = seen.hit(path)
        if path == "/robots.txt":
            return web.Response(body=ROBOTS, content_type="text/plain")
        if path.startswith("/status/"):
            return web.Response(status=int(path.rsplit("/", 1)[1]), text="no")
        if path.startswith("/flaky/") and count == 1:
            return web.Response(status=int(path.rsplit("/", 1)[1]), text="try again")
        if path == "/moved":
            raise web.HTTPMovedPermanently("/page/final")
        if path.startswith("/gzip/"):
            size = int(path.rsplit("/", 1)[1])
            html = article("Compressed", "word " * (size // 5))
            headers = {"Content-Encoding": "gzip"}
            return web.Response(body=gzip.compress(html), headers=headers, content_type="text/html")
        if path == "/big":
            return web.Response(body=article("Big", "word " * 20_000), content_type="text/html")
        return web.Response(body=article(f"Page {path}"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


@pytest.fixture(scope="module")
def server(seen: Seen) -> Iterator[str]:
    with ServerThread(lambda: make_app(seen)) as thread:
        yield thread.url


@dataclass
class Crawled:
    crawler: Crawler
    items: list[Any]

    def by_url(self, url: str) -> dict[str, Any]:
        matches = [item for item in self.items if item["url"] == url]
        assert len(matches) == 1, f"{url}: {len(matches)} items"
        found: dict[str, Any] = matches[0]
        return found

    def stat(self, key: str) -> Any:
        assert self.crawler.stats is not None
        return self.crawler.stats.get_value(key)


def project_settings(**overrides: Any) -> Settings:
    settings = Settings()
    settings.setmodule("crawler.scrapy_mode.settings", priority="project")
    settings.setdict({"LOG_LEVEL": "WARNING", **overrides}, priority="cmdline")
    return settings


async def crawl(spider: type[Spider], settings: Settings, **arguments: Any) -> Crawled:
    """Run one crawl to its end in this process; the items are what Scrapy's feed exports would get."""
    crawler = Crawler(spider, settings)
    items: list[Any] = []

    def collect(item: Any) -> None:
        items.append(item)

    crawler.signals.connect(collect, signal=signals.item_scraped, weak=False)
    await crawler.crawl_async(**arguments)
    return Crawled(crawler=crawler, items=items)


def write_input(folder: Path, urls: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "urls.txt"
    path.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return path


async def enrich(tmp_path: Path, urls: list[str], **arguments: str) -> Crawled:
    input_file = write_input(tmp_path, urls)
    options = {"nlp": "off", "retries": "1", "timeout": "5", **arguments}
    return await crawl(EnrichSpider, project_settings(), input=str(input_file), **options)


@in_reactor
async def test_items_are_the_records_and_the_output_is_written_only_when_asked(tmp_path: Path, server: str) -> None:
    urls = [f"{server}/page/a", f"{server}/status/404", f"{server}/moved", f"{server}/private/x", "not a url"]
    fed = await enrich(tmp_path / "feed", urls)
    assert sorted(item["url"] for item in fed.items) == sorted(urls)
    for item in fed.items:
        assert isinstance(item, dict)
        assert tuple(item) == RECORD_FIELDS
    assert fed.by_url(f"{server}/page/a")["title"] == "Page /page/a"
    assert fed.by_url(f"{server}/status/404")["error"]["message"] == "HTTP 404 Not Found"
    assert fed.by_url(f"{server}/moved")["final_url"] == f"{server}/page/final"
    assert fed.by_url(f"{server}/private/x")["error"]["type"] == "RobotsDisallowedError"
    assert not run_of(fed.crawler).options.write_output
    assert sorted(p.name for p in (tmp_path / "feed").iterdir()) == ["urls.txt"]

    output = tmp_path / "out" / "records.jsonl"
    written = await enrich(tmp_path / "out", urls, output=str(output))
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert sorted(lines, key=lambda r: r["url"]) == sorted(written.items, key=lambda r: r["url"])


@in_reactor
async def test_policy_figures_reach_the_stats_through_crawler_stats(tmp_path: Path, server: str) -> None:
    stats_file = tmp_path / "stats.json"
    crawled = await enrich(tmp_path, [f"{server}/page/b", f"{server}/private/y"], stats_file=str(stats_file))
    policies = crawled.stat(POLICY_STATS)
    assert policies["robots"]["enabled"] is True
    assert policies["frontier"]["peak_in_flight_per_site"] >= 1
    assert json.loads(stats_file.read_text(encoding="utf-8"))["policies"] == json.loads(json.dumps(policies))


@pytest.mark.parametrize("status", [500, 501, 429])
@in_reactor
async def test_retries_follow_the_shared_policy_and_wait_the_backoff(
    tmp_path: Path, server: str, seen: Seen, status: int
) -> None:
    url = f"{server}/flaky/{tmp_path.name}/{status}"
    config = tmp_path / "config.yml"
    config.write_text("fetch:\n  backoff_base_s: 0.4\n  backoff_jitter: 0\n", encoding="utf-8")
    crawled = await enrich(tmp_path, [url], config=str(config))
    record = crawled.by_url(url)
    assert (record["status"], record["attempts"], record["error"]) == (200, 2, None)
    assert crawled.stat("retry/count") == 1  # Scrapy's own retry bookkeeping (get_retry_request)
    first, second = seen.times[url.removeprefix(server)]
    assert second - first >= 0.4  # the retry waited in the frontier
    assert record["fetch_duration_ms"] >= 400  # counted from the first attempt, as the async engine counts
    middlewares = crawled.crawler.engine.downloader.middleware.middlewares
    middleware = next(m for m in middlewares if isinstance(m, BackoffRetryMiddleware))
    assert middleware.config is run_of(crawled.crawler).config  # built from the crawler's one config


@in_reactor
async def test_a_final_4xx_is_not_retried(tmp_path: Path, server: str) -> None:
    crawled = await enrich(tmp_path, [f"{server}/status/410"], retries="2")
    record = crawled.by_url(f"{server}/status/410")
    assert (record["status"], record["attempts"]) == (410, 1)
    assert crawled.stat("retry/count") is None


@in_reactor
async def test_size_cap_keeps_the_cut_body(tmp_path: Path, server: str) -> None:
    crawled = await enrich(tmp_path, [f"{server}/big"], max_bytes="4096")
    record = crawled.by_url(f"{server}/big")
    assert record["size_bytes"] == 4096
    assert record["metadata"]["truncated"] is True


@in_reactor
async def test_compressed_bodies_are_decoded_and_cut_at_the_cap(tmp_path: Path, server: str) -> None:
    crawled = await enrich(tmp_path, [f"{server}/gzip/2000", f"{server}/gzip/2000000"], max_bytes="65536")
    small = crawled.by_url(f"{server}/gzip/2000")
    assert (small["title"], small["error"]) == ("Compressed", None)
    assert "truncated" not in small["metadata"]
    bomb = crawled.by_url(f"{server}/gzip/2000000")  # ~7 KB on the wire, 2 MB inflated
    assert bomb["size_bytes"] == 65536
    assert bomb["metadata"]["truncated"] is True
    assert crawled.stat("httpcompression/response_count") == 2
