"""The ``discover`` spider: stage 1 in Scrapy mode, on the same plan as the async engine's stage 1
(:class:`crawler.discover.DiscoveryPlan`) and the same frontier scheduler and policy middleware as the ``enrich``
spider, so its requests keep every per-site rule of stage 3.

Usage, from the repository root::

    scrapy crawl discover -a input=seeds.txt -a urls_out=urls.txt [-a report=report.json] [-a discover=stage.json]
        [-a config=config.yml] [-a max_depth=2] [-a max_pages=1000]

``discover`` is a JSON file of the stage's settings (:class:`~crawler.discover.DiscoverConfig`, YAML
``stages.discover``); ``max_depth`` and ``max_pages`` override it. The other ``-a`` arguments are the ``enrich``
spider's (fetching and politeness). No items are written: the URLs found go to ``urls_out`` (one per line, written
when the crawl closes, also after Ctrl-C) and the counts to ``report``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pydantic import ValidationError
from scrapy import Request
from scrapy.exceptions import CloseSpider

from crawler.discover import DiscoverConfig, DiscoveryPlan, discovery_config
from crawler.scrapy_mode.config import remember_run, store_run
from crawler.scrapy_mode.middlewares import PolicyMiddleware
from crawler.scrapy_mode.responses import INPUT_URL_META
from crawler.scrapy_mode.scheduler import scheduler_of
from crawler.scrapy_mode.spiders.enrich import EnrichSpider
from enrich.config import config_error_message
from enrich.errors import ConfigError
from enrich.policy import RobotsPolicy
from enrich.urls import iter_input_lines

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.python.failure import Failure

__all__ = ["DiscoverSpider"]

OWN_ARGUMENTS = ("discover", "urls_out", "report", "max_depth", "max_pages")


def _stage_config(own: dict[str, Any]) -> DiscoverConfig:
    try:
        data = json.loads(Path(own["discover"]).read_text(encoding="utf-8")) if "discover" in own else {}
        for name in ("max_depth", "max_pages"):
            if name in own:
                data[name] = own[name]
        return DiscoverConfig.model_validate(data)
    except (OSError, ValueError) as exc:
        detail = config_error_message(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"invalid discover settings (-a discover=, -a max_depth=, -a max_pages=): {detail}") from None


class DiscoverSpider(EnrichSpider):
    """Requests what the plan asks for, hands it every answer, and writes what it listed when the crawl closes."""

    name = "discover"
    custom_settings: dict[str, Any] | None = {"ITEM_PIPELINES": {}}  # noqa: RUF012 - Scrapy reads it off the class

    stage: DiscoverConfig
    urls_out: Path
    report: Path | None
    plan: DiscoveryPlan | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        """Take the stage's own arguments, then the ``enrich`` spider's; the run's config becomes stage 1's
        (:func:`~crawler.discover.discovery_config`: the stage's timeout, size cap and concurrency).

        Raises:
            ConfigError: a bad argument; the crawl does not start.
        """
        own = {name: kwargs.pop(name) for name in OWN_ARGUMENTS if name in kwargs}
        try:
            if "urls_out" not in own:
                raise ConfigError("no output for the URLs found: pass -a urls_out=FILE")
            stage = _stage_config(own)
        except ConfigError as exc:
            print(f"scrapy crawl discover: {exc}", file=sys.stderr)
            raise
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.config = discovery_config(stage, spider.config)
        store_run(crawler.settings, spider.config, spider.options)
        remember_run(crawler, spider.config, spider.options)
        spider.stage = stage
        spider.urls_out = Path(own["urls_out"])
        spider.report = Path(own["report"]) if "report" in own else None
        return spider

    def _robots(self) -> RobotsPolicy:
        """The policy middleware's robots.txt rules; one of its own (same transport) when they are off, since
        the ``Sitemap:`` lines are read all the same."""
        assert self.crawler.engine is not None
        middlewares = self.crawler.engine.downloader.middleware.middlewares
        policy = next(m for m in middlewares if isinstance(m, PolicyMiddleware))
        if policy.robots.enabled:
            return policy.robots
        return RobotsPolicy(fetch_robots=policy.fetch_robots, user_agent=policy.robots.user_agent)

    async def start(self) -> AsyncIterator[Request]:
        """The seeds (the ``input`` file) and their sites' sitemaps."""
        assert self.options.input is not None
        plan = self.plan = DiscoveryPlan(self.stage, robots=self._robots())
        seeds = [raw for _number, raw in iter_input_lines(self.options.input, fmt="text")]
        for url in await plan.start(seeds):
            yield self._ask(url)

    def _ask(self, url: str) -> Request:
        return Request(
            url, callback=self.read_answer, errback=self.read_failure, dont_filter=True, meta={INPUT_URL_META: url}
        )

    async def read_answer(self, response: Response) -> list[Request]:
        assert self.plan is not None
        urls = [url for item in self.parse_page(response) for url in await self.plan.answered(item)]
        if self.plan.full:
            raise CloseSpider("max_pages")
        return [self._ask(url) for url in urls]

    def read_failure(self, failure: Failure) -> list[Request]:
        assert self.plan is not None
        for item in self.fetch_failed(failure):
            self.plan.failed(item)
        return []

    def closed(self, reason: str) -> None:
        """Write the URLs found and the report, however the crawl ended."""
        result = self.plan.result if self.plan is not None else None
        urls = result.urls if result is not None else []
        part = self.urls_out.with_name(self.urls_out.name + ".part")
        part.write_text("".join(url + "\n" for url in urls), encoding="utf-8")
        part.replace(self.urls_out)
        if self.report is None:
            return
        scheduler = scheduler_of(self.crawler)
        report: dict[str, Any] = result.to_dict() if result is not None else {"urls": 0}
        report["frontier"] = scheduler.frontier.stats() if scheduler is not None else {}
        report["interrupted"] = reason == "shutdown"
        report["finish_reason"] = reason
        self.report.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
