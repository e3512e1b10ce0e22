"""One page fetched with the crawl's policies, outside the frontier's queue: for the contacts stage
(:data:`enrich.contacts.ContactFetch`).

A site's contact pages are a few extra requests per site, made while a stage worker waits for them; they do not
go through the frontier's queue, since a stage worker waiting for a lease could deadlock the run (request tasks
keep their place until a stage worker takes their item). It keeps the frontier's policies all the same: the
address check, robots.txt (refusal and ``Crawl-delay``, spacing the requests of a site, one at a time), the size
cap, redirects followed by hand with every hop checked, and the run's WARC output (the same fetcher).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from crawler.async_engine.fetcher import (
    TRANSPORT_ERRORS,
    RedirectProblem,
    describe_error,
    follow_location,
    translate_error,
)
from enrich.errors import FetchError, SinkError
from enrich.policy import failure_message
from enrich.record import FetchedPage, utc_now_iso
from enrich.urls import redact_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from crawler.async_engine.fetcher import AiohttpFetcher, Answer
    from enrich.policy import RobotsPolicy

__all__ = ["PoliteFetcher"]

MAX_SITES = 10_000
"""Sites whose pacing is remembered; past it the idle ones, least recent first, are forgotten."""


class PoliteFetcher:
    """``await fetcher(url)``: the page at ``url`` after redirects, or a :class:`FetchError` saying why not (a
    :class:`~enrich.errors.SinkError` from the WARC output passes untouched: it stops the run).

    Args:
        fetcher: the run's transport (entered by the engine for the run).
        robots: robots.txt rules; ``None`` obeys none.
        max_redirects: redirects followed.
        timeout_s: time allowed for one request (each redirect hop has its own).
        per_site: requests of one site in flight at once.
        clock: monotonic seconds, for the ``Crawl-delay`` spacing.
    """

    def __init__(
        self,
        *,
        fetcher: AiohttpFetcher,
        robots: RobotsPolicy | None,
        max_redirects: int = 5,
        timeout_s: float = 30.0,
        per_site: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._robots = robots
        self._max_redirects = max_redirects
        self._timeout_s = timeout_s
        self._per_site = per_site
        self._clock = clock
        self._gates: OrderedDict[str, asyncio.Semaphore] = OrderedDict()
        self._next_start: dict[str, float] = {}

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
                raise FetchError(failure_message(1, exc.reason), url=redact_url(url)) from exc
        raise FetchError(f"Too many redirects (more than {self._max_redirects})", url=redact_url(url))

    async def _request(self, url: str, target: URL) -> Answer:
        hop = str(target)
        self._fetcher.check_literal(url, target.host)
        if self._robots is not None:
            refusal = await self._robots.refusal(hop, record_url=url)
            if refusal is not None:
                raise refusal
        site = f"{target.scheme}://{target.host}:{target.port}"
        gate = self._gate(site)
        async with gate:  # at most per_site requests of a site at once, their starts spaced by its Crawl-delay
            delay = await self._robots.crawl_delay(hop) if self._robots is not None else None
            if delay:
                now = self._clock()
                start = max(now, self._next_start.get(site, now))
                self._next_start[site] = start + delay
                if start > now:
                    await asyncio.sleep(start - now)
            try:
                async with asyncio.timeout(self._timeout_s):
                    return await self._fetcher.request(target)
            except SinkError:  # the WARC file cannot be written (an OSError, but no transport failure): stop the run
                raise
            except TRANSPORT_ERRORS as exc:
                reason = describe_error(exc, timeout_s=self._timeout_s)
                raise translate_error(exc, url=redact_url(url), attempts=1, reason=reason) from exc
            except aiohttp.ClientError as exc:
                raise FetchError(failure_message(1, describe_error(exc)), url=redact_url(url)) from exc

    def _gate(self, site: str) -> asyncio.Semaphore:
        gate = self._gates.get(site)
        if gate is None:
            gate = self._gates[site] = asyncio.Semaphore(self._per_site)
            if len(self._gates) > MAX_SITES:  # forget idle sites, least recent first
                for old in [s for s, g in self._gates.items() if not g.locked() and s != site][: MAX_SITES // 10]:
                    del self._gates[old]
                    self._next_start.pop(old, None)
        else:
            self._gates.move_to_end(site)
        return gate
