"""The contacts stage in Scrapy mode: its item pipeline, and its fetch of a site's contact pages.

The fetch goes through Scrapy's downloader (``engine.download_async``), so every downloader middleware applies as
to a page: the policy middleware (address check, robots.txt, the site's ``Crawl-delay`` on its download slot), the
size cap, decompression, redirects (each hop checked again) and WARC output. It does not go through the scheduler:
like a robots.txt fetch, it belongs to the item that asked. Loaded only with ``contacts.enabled``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from scrapy import Request
from scrapy.exceptions import IgnoreRequest, NotConfigured

from crawler.scrapy_mode.config import run_of
from crawler.scrapy_mode.failures import FetchAborted
from crawler.scrapy_mode.jobstate import job_of
from crawler.scrapy_mode.pipelines import StagePipeline
from enrich.contacts import ContactStage
from enrich.errors import FetchError
from enrich.record import FetchedPage, utc_now_iso
from enrich.urls import redact_url

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from enrich.config import EnrichConfig
    from enrich.stages import Stage
    from enrich.state import CrawlState

__all__ = ["ContactPipeline", "ScrapyContactFetch"]


class ScrapyContactFetch:
    """``await fetch(url)``: the page at ``url`` through Scrapy's downloader, or a :class:`FetchError`."""

    def __init__(self, *, crawler: Crawler, max_bytes: int) -> None:
        self._crawler = crawler
        self._max_bytes = max_bytes

    async def __call__(self, url: str) -> FetchedPage:
        engine = self._crawler.engine
        if engine is None:
            raise FetchError("the crawl is not running", url=url)
        request = Request(url, dont_filter=True, meta={"dont_retry": True})
        try:
            response = await engine.download_async(request)
        except FetchAborted as exc:  # refused by robots.txt or the address policy, or a bad redirect
            raise exc.error from exc
        except IgnoreRequest as exc:
            raise FetchError(f"Request ignored: {exc}", url=url) from exc
        except Exception as exc:  # the transport's own errors (timeouts, refused connections, DNS)
            raise FetchError(f"{type(exc).__name__}: {exc}", url=url) from exc
        headers: dict[str, str] = {}
        for key, value in response.headers.to_unicode_dict().items():
            headers[str(key).lower()] = ", ".join(value) if isinstance(value, list) else str(value)
        latency = response.meta.get("download_latency") if response.request is not None else None
        return FetchedPage(
            url=url,
            final_url=redact_url(response.url),
            status=response.status,
            headers=headers,
            body=response.body[: self._max_bytes],
            fetched_at=utc_now_iso(),
            fetch_duration_ms=float(latency) * 1000 if isinstance(latency, (int, float)) else 0.0,
            truncated=len(response.body) > self._max_bytes,
        )


class ContactPipeline(StagePipeline):
    """Emails, phone numbers and social profiles of each page and its site's contact pages (``--contacts``)."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        config = run_of(crawler).config
        if not config.contacts.enabled:
            raise NotConfigured("contacts.enabled is off")
        fetch = ScrapyContactFetch(crawler=crawler, max_bytes=config.fetch.max_response_bytes)
        stage = ContactStage.from_config(config, fetch=fetch)
        job_of(crawler).stages.append(stage)
        return cls(stage=stage)

    @classmethod
    def build_stage(cls, config: EnrichConfig, state: CrawlState | None) -> Stage:
        return ContactStage(config=config.contacts)
