"""A Scrapy add-on that runs the enrichment stages on the responses of any project's spiders.

Enable it in a project's settings (or a spider's ``custom_settings``)::

    ADDONS = {"crawler.scrapy_mode.addon.EnrichAddon": 0}

Each response a spider's callback receives then also becomes one record (extraction, NLP, sinks: the stages of
Scrapy mode and of the async engine), handed on as an item beside whatever the callback yields: the records reach
the project's feed exports and later pipelines as ``dict`` items in the record schema's order. The spider's own
items pass the enrichment pipelines untouched. Settings: ``docs/scrapy.md``.

What the add-on does not bring: Scrapy mode's crawl policies (the shared frontier as scheduler, robots.txt and
address checks, the async engine's retry wording); the project's own scheduler, middlewares and settings decide
what is fetched and how.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from crawler.scrapy_mode.config import run_of
from crawler.scrapy_mode.pipelines import ExtractPipeline, NLPPipeline, SinkPipeline
from crawler.scrapy_mode.responses import response_item
from enrich.errors import ConfigError
from enrich.urls import redact_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings

    from enrich.stages import WorkItem

__all__ = ["ENRICH_META", "PIPELINES", "EnrichAddon", "ResponseItemsMiddleware"]

ENRICH_META = "enrich"
"""Request meta key: ``False`` leaves a response out; with ``ENRICH_RESPONSES = "marked"``, only responses to
requests with ``True`` are enriched."""

ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

PIPELINES: dict[type[Any], int] = {ExtractPipeline: 10, NLPPipeline: 20, SinkPipeline: 30}
"""Before a project's own pipelines (300 by convention), so those get the records, not the work items."""

MIDDLEWARE_PRIORITY = 100
"""In ``SPIDER_MIDDLEWARES``: near the engine, so the record is added after the other middlewares have filtered
the callback's output."""


class EnrichAddon:
    """Adds the enrichment pipelines and :class:`ResponseItemsMiddleware` to a project's settings, where they are
    not set already (a project may give them other priorities, or ``None`` to turn one off)."""

    def update_settings(self, settings: BaseSettings) -> None:
        """Scrapy's add-on hook.

        Raises:
            ConfigError: another Twisted reactor is configured: the stages are asyncio code.
        """
        reactor = settings.get("TWISTED_REACTOR")
        if reactor and reactor != ASYNCIO_REACTOR:
            raise ConfigError(f"the enrich add-on needs TWISTED_REACTOR = {ASYNCIO_REACTOR!r}, got {reactor!r}")
        for pipeline, priority in PIPELINES.items():
            settings.setdefault_in_component_priority_dict("ITEM_PIPELINES", pipeline, priority)
        settings.setdefault_in_component_priority_dict(
            "SPIDER_MIDDLEWARES", ResponseItemsMiddleware, MIDDLEWARE_PRIORITY
        )


class ResponseItemsMiddleware:
    """Adds one work item (a page, or the ``HTTPError`` record of an error status a callback accepted) for each
    response a spider's callback gets, before what the callback yields.

    The record's ``url`` is the URL first requested (before redirects, credentials removed), ``final_url`` the
    response's. The body is cut at ``fetch.max_response_bytes``.

    Args:
        max_bytes: ``fetch.max_response_bytes``.
        marked_only: enrich only responses to requests whose meta has ``enrich: True`` (:data:`ENRICH_META`).
    """

    def __init__(self, *, max_bytes: int, marked_only: bool = False) -> None:
        self.max_bytes = max_bytes
        self.marked_only = marked_only

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        run = run_of(crawler)
        return cls(max_bytes=run.config.fetch.max_response_bytes, marked_only=run.options.responses == "marked")

    def item_for(self, response: Response) -> WorkItem | None:
        """The response's work item, or ``None`` when it is left out (:data:`ENRICH_META`)."""
        wanted = response.meta.get(ENRICH_META)
        if wanted is False or (self.marked_only and wanted is not True):
            return None
        redirects = response.meta.get("redirect_urls")
        first = redirects[0] if isinstance(redirects, list) and redirects else response.url
        return response_item(response, url=redact_url(first), max_bytes=self.max_bytes)

    def process_spider_output(self, response: Response, result: Iterable[Any]) -> Iterator[Any]:
        item = self.item_for(response)
        if item is not None:
            yield item
        yield from result

    async def process_spider_output_async(self, response: Response, result: AsyncIterator[Any]) -> AsyncIterator[Any]:
        item = self.item_for(response)
        if item is not None:
            yield item
        async for element in result:
            yield element
