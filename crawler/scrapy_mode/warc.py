"""WARC output in Scrapy mode: a downloader middleware hands every exchange to the core's
:class:`~enrich.warc.WarcWriter` (``warc.dir`` set in the config; without it the middleware is not loaded).

Its place in ``DOWNLOADER_MIDDLEWARES`` (675: between :class:`~crawler.scrapy_mode.bodies.SizeCapMiddleware` at 700
and :class:`~crawler.scrapy_mode.middlewares.PolicyMiddleware` at 650) decides what it sees on the way back:

* the body as received: the decompression middleware (590) comes after it, the size cap's cut (700, flagged
  :data:`~crawler.scrapy_mode.bodies.TRUNCATED_FLAG`) before it;
* every attempt's answer before the redirect (600) and retry (550) middlewares turn it into a new request, so each
  redirect hop and each retried answer is archived;
* robots.txt, which :meth:`PolicyMiddleware.fetch_robots` downloads through the same middlewares.

The request headers are ``request.headers`` at that point, after every middleware added its own; the download
handler adds ``Host`` on the wire, which the writer restores from the URL. Times: the request is taken as sent
``download_latency`` seconds before its headers came back (the ``headers_received`` signal), since the
``request_reached_downloader`` signal fires before a download slot's delay.

A write failure (disk full) stops the crawl like a sink failure: logged, printed on standard error, the spider
closed, and the run's exit status non-zero (:data:`~crawler.scrapy_mode.commands.crawl.RUN_FAILED_STAT`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, Self

from scrapy import signals
from scrapy.exceptions import NotConfigured

from crawler.scrapy_mode.bodies import TRUNCATED_FLAG
from crawler.scrapy_mode.config import run_of
from enrich.errors import SinkError
from enrich.warc import Exchange, WarcWriter

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Request, Response
    from scrapy.http.headers import Headers


__all__ = ["WarcMiddleware"]

logger = logging.getLogger(__name__)

TIMES_META = "enrich_warc_times"
"""Request meta key: ``(sent_at, received_at)`` of the current attempt, in seconds since the epoch."""


def _pairs(headers: Headers) -> list[tuple[str, str]]:
    """Scrapy's headers as (name, value) pairs, a repeated header once per value."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, values in headers.items() for value in values]


class WarcMiddleware:
    """Archives each attempt's request and answer (see the module docstring).

    Args:
        writer: the WARC writer, opened when the spider opens and closed when it closes.
        crawler: the running crawler, stopped when the writer fails; ``None`` in tests of the middleware alone.
    """

    def __init__(self, *, writer: WarcWriter, crawler: Crawler | None = None) -> None:
        self.writer = writer
        self.crawler = crawler
        self._error: SinkError | None = None
        self._stopping: asyncio.Task[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        writer = WarcWriter.from_config(run_of(crawler).config)
        if writer is None:
            raise NotConfigured("WARC output is off (warc.dir is not set)")
        middleware = cls(writer=writer, crawler=crawler)
        crawler.signals.connect(middleware.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(middleware.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(middleware.headers_received, signal=signals.headers_received)
        return middleware

    async def spider_opened(self) -> None:
        try:
            await self.writer.open()
        except SinkError as exc:
            self._fail(exc)

    async def spider_closed(self) -> None:
        try:
            await self.writer.close()
        except SinkError as exc:
            if self._error is None:  # else: the failure already reported
                self._fail(exc, stop=False)
        if self.crawler is not None and self.crawler.stats is not None:
            for key, value in self.writer.stats().items():
                self.crawler.stats.set_value(f"enrich/warc/{key}", value)

    def headers_received(self, request: Request) -> None:
        """Note when this attempt's answer began and, from Scrapy's ``download_latency``, when it was sent."""
        received_at = time.time()
        latency = request.meta.get("download_latency")
        sent_at = received_at - latency if isinstance(latency, (int, float)) else None
        request.meta[TIMES_META] = (sent_at, received_at)

    async def process_response(self, request: Request, response: Response) -> Response:
        """Archive the exchange, then hand the response on unchanged."""
        sent_at, received_at = request.meta.pop(TIMES_META, (None, None))  # a redirect hop must not inherit them
        if self._error is not None:
            return response  # the crawl is stopping; what is still in flight is not archived
        exchange = Exchange(
            url=request.url,
            method=request.method,
            request_headers=_pairs(request.headers),
            status=response.status,
            http_version=response.protocol or "HTTP/1.1",
            response_headers=_pairs(response.headers),
            body=response.body,
            peer_ip=str(response.ip_address) if response.ip_address is not None else None,
            sent_at=sent_at,
            received_at=received_at,
            truncated=TRUNCATED_FLAG in response.flags,
        )
        try:
            await self.writer.write(exchange)
        except SinkError as exc:
            self._fail(exc)
        return response

    def _fail(self, exc: SinkError, *, stop: bool = True) -> None:
        """Report the failure once, mark the run failed (exit status) and close the spider."""
        from crawler.scrapy_mode.commands.crawl import RUN_FAILED_STAT  # deferred: a command module

        if self._error is not None:
            return
        self._error = exc
        message = f"WARC output failed: {exc}"
        logger.error("%s; stopping the crawl", message, exc_info=exc)
        print(f"scrapy crawl enrich: {message}", file=sys.stderr)
        if self.crawler is None:
            return
        if self.crawler.stats is not None:
            self.crawler.stats.set_value(RUN_FAILED_STAT, message)
        if stop and self._stopping is None:
            # not awaited here: closing the spider waits for the downloads in flight, this one included
            self._stopping = asyncio.get_running_loop().create_task(
                self.crawler.engine.close_spider_async(reason="warc_error")
            )
