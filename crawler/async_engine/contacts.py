"""The async engine's fetch for the contacts stage (:data:`enrich.contacts.ContactFetch`).

A site's contact pages are a few extra requests per site, made while a stage worker waits for them. They do not
go through the frontier's queue: a stage worker waiting for a lease could deadlock the run (request tasks keep
their place until a stage worker takes their item). They keep its policies all the same: the address check,
robots.txt (refusal and ``Crawl-delay``, spacing the requests of a site), the size cap, redirects followed by hand
with every hop checked, and the run's WARC output (the same fetcher).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from crawler.async_engine.fetcher import TRANSPORT_ERRORS, RedirectProblem, describe_error, follow_location
from enrich.errors import FetchError
from enrich.record import FetchedPage, utc_now_iso
from enrich.urls import redact_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from crawler.async_engine.fetcher import AiohttpFetcher, Answer
    from enrich.policy import RobotsPolicy

__all__ = ["ContactPageFetcher"]


class ContactPageFetcher:
    """``await fetcher(url)``: the page at ``url`` after redirects, or a :class:`FetchError` saying why not.

    Args:
        fetcher: the run's transport (entered by the engine for the run).
        robots: robots.txt rules; ``None`` obeys none.
        max_redirects: redirects followed.
        clock: monotonic seconds, for the ``Crawl-delay`` spacing.
    """

    def __init__(
        self,
        *,
        fetcher: AiohttpFetcher,
        robots: RobotsPolicy | None,
        max_redirects: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._robots = robots
        self._max_redirects = max_redirects
        self._clock = clock
        self._site_locks: dict[str, asyncio.Lock] = {}
        self._last_request: dict[str, float] = {}

    async def __call__(self, url: str) -> FetchedPage:
        started = self._clock()
        target = URL(url)
        for hops in range(self._max_redirects + 1):
            answer = await self._request(url, target)
            if answer.location is None:
                return FetchedPage(
                    url=url,
                    final_url=answer.url,
                    status=answer.status,
                    headers=answer.headers,
                    body=answer.body,
                    fetched_at=utc_now_iso(),
                    fetch_duration_ms=(self._clock() - started) * 1000,
                    truncated=answer.truncated,
                )
            try:
                target = follow_location(
                    target, answer.location, answer.status, redirects=hops, max_redirects=self._max_redirects
                )
            except RedirectProblem as exc:
                raise FetchError(exc.reason, url=url) from exc
        raise FetchError(f"Too many redirects (more than {self._max_redirects})", url=url)

    async def _request(self, url: str, target: URL) -> Answer:
        hop = str(target)
        self._fetcher.check_literal(url, target.host)
        if self._robots is not None:
            refusal = await self._robots.refusal(hop, record_url=url)
            if refusal is not None:
                raise refusal
        site = f"{target.scheme}://{target.host}:{target.port}"
        lock = self._site_locks.setdefault(site, asyncio.Lock())
        async with lock:  # one contact page of a site at a time, spaced by its Crawl-delay
            delay = await self._robots.crawl_delay(hop) if self._robots is not None else None
            if delay:
                wait = self._last_request.get(site, -delay) + delay - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._last_request[site] = self._clock()
            try:
                return await self._fetcher.request(target)
            except TRANSPORT_ERRORS as exc:
                raise FetchError(describe_error(exc), url=redact_url(url)) from exc
            except aiohttp.ClientError as exc:
                raise FetchError(describe_error(exc), url=redact_url(url)) from exc
