"""Scrapy mode as a distributed worker: the frontier scheduler, gated per site by Redis and fed by the job's queue.

``python -m crawler worker --no-async-enrichment`` runs ``scrapy crawl enrich`` with
``SCHEDULER = "crawler.scrapy_mode.redis_scheduler.RedisFrontierScheduler"`` and the ``ENRICH_REDIS_*`` settings.
Then, per crawler (:func:`~crawler.scrapy_mode.jobstate.job_of`):

* the spider's ``start()`` reads its input from the job's queue (:class:`~enrich.distributed.QueueFeed`) instead of
  a file, as fast as the frontier wants more, and ends when the job has nothing queued or leased;
* this scheduler's frontier asks the job's :class:`~enrich.distributed.RedisSiteGate` before every request, so all
  workers, of either engine, share each site's cap and ``Crawl-delay``, and stamps the site's turn when the request
  reaches the downloader (``request_reached_downloader``);
* it renews the worker's leases while the spider runs, and when the spider closes puts the URLs it holds but never
  started back into the queue;
* the sink pipeline acknowledges each batch once it is written (``build_sink_stage(acknowledge=...)``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from scrapy import signals

from crawler.scrapy_mode.jobstate import job_of
from crawler.scrapy_mode.scheduler import LEASE_META, FrontierScheduler
from enrich.frontier import Lease

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler

    from enrich.frontier import SiteGate

__all__ = ["RedisFrontierScheduler"]

logger = logging.getLogger(__name__)


class RedisFrontierScheduler(FrontierScheduler):
    """:class:`FrontierScheduler` for a distributed worker (see the module docstring)."""

    _renewal: asyncio.Task[None] | None = None

    @classmethod
    def site_gate(cls, crawler: Crawler) -> SiteGate | None:
        gate = job_of(crawler).gate
        if gate is None:
            raise RuntimeError("RedisFrontierScheduler needs the ENRICH_REDIS_URL and ENRICH_REDIS_JOB settings")
        return gate

    def open(self, spider: Spider) -> None:
        super().open(spider)
        feed = job_of(self.crawler).feed
        assert feed is not None
        feed.queue.register()
        self._renewal = asyncio.ensure_future(feed.renew_leases())
        self.crawler.signals.connect(self._reached_downloader, signal=signals.request_reached_downloader)

    def _reached_downloader(self, request: Request, spider: Spider) -> None:
        """The request leaves for the wire (past its checks and Scrapy's download slot): stamp its site's turn in
        the gate now, so the spacing between workers counts from here."""
        lease = request.meta.get(LEASE_META)
        if isinstance(lease, Lease):
            self.frontier.starting(lease)

    def close(self, reason: str) -> None:
        super().close(reason)
        if self._renewal is not None:
            self._renewal.cancel()
        feed = job_of(self.crawler).feed
        if feed is not None:
            feed.close()
            stats = self.crawler.stats
            if stats is not None:
                for key, value in feed.stats().items():
                    stats.set_value(f"enrich/worker/{key}", value)
