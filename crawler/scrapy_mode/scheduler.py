"""Scrapy mode's scheduler: the shared :class:`~enrich.frontier.Frontier` decides which request is downloaded next.

Every request Scrapy schedules goes through :class:`FrontierScheduler`: the input's requests (from the spider's
``start()``), and the redirect hops and retries Scrapy's middlewares re-schedule. Each is queued under its own
site, so every hop and every attempt obeys that site's rules (in-flight cap, ``Crawl-delay``, backoff, circuit),
exactly as in the async engine, and no request ever sleeps holding a place: a site that must wait is simply not
ready, and the engine gets another site's request.

How the parts meet:

* :meth:`FrontierScheduler.next_request` polls the frontier; the :class:`~enrich.frontier.Lease` travels in the
  request's meta (:data:`LEASE_META`) and :class:`~crawler.scrapy_mode.middlewares.PolicyMiddleware` releases it
  with the attempt's outcome. A lease refused by an open circuit comes out flagged (:data:`CIRCUIT_META`), and
  PolicyMiddleware turns it into the URL's ``CircuitOpenError`` record at once.
* A retry carries its not-before time (:data:`RETRY_AT_META`, set by ``BackoffRetryMiddleware``): it waits in the
  frontier, not in a middleware.
* When nothing is ready but something will be (a ``Crawl-delay`` turn, a backoff, a retry's time), a timer wakes
  Scrapy's engine then: by itself the engine asks again only when a download ends or on its 5 s heartbeat.
* The middleware and the spider find the scheduler with :func:`scheduler_of` (it registers itself per crawler).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from typing import TYPE_CHECKING, Self
from weakref import WeakKeyDictionary

from scrapy.core.scheduler import BaseScheduler
from scrapy.utils.request import request_from_dict

from crawler.scrapy_mode.config import run_of
from crawler.scrapy_mode.timing import add_wait
from enrich.frontier import Frontier, Lease, SiteGate

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler

__all__ = [
    "CIRCUIT_META",
    "LEASE_META",
    "RETRY_AT_META",
    "FrontierScheduler",
    "release_request",
    "scheduler_of",
]

logger = logging.getLogger(__name__)

LEASE_META = "enrich_lease"
"""Request meta key: the frontier lease of the attempt the request is (released once its outcome is known)."""

CIRCUIT_META = "enrich_circuit_open"
"""Request meta key: the site's circuit is open; the value is the refusal, which becomes the URL's record."""

RETRY_AT_META = "enrich_retry_at"
"""Request meta key: the ``time.monotonic()`` time before which a retry must not start (the frontier's clock);
set by ``BackoffRetryMiddleware``, read here as the frontier's ``not_before``."""

REQUEST_BYTES = 1536
"""What a queued Scrapy request costs (the object, its headers and meta), for the frontier's memory bound."""

WAKE_SLACK_S = 0.002
"""Added to a wake-up timer, so the frontier's clock has passed the ready time when the engine asks."""

_SCHEDULERS: WeakKeyDictionary[Crawler, FrontierScheduler] = WeakKeyDictionary()


def scheduler_of(crawler: Crawler | None) -> FrontierScheduler | None:
    """The :class:`FrontierScheduler` of ``crawler``; ``None`` when another scheduler is configured."""
    return _SCHEDULERS.get(crawler) if crawler is not None else None


def release_request(crawler: Crawler | None, request: Request | None) -> None:
    """Release the lease of ``request`` without an outcome if it is still held (a safety net: every path that
    made an attempt has released it with its outcome already). Harmless when there is none."""
    if request is None:
        return
    lease = request.meta.pop(LEASE_META, None)
    scheduler = scheduler_of(crawler)
    if isinstance(lease, Lease) and scheduler is not None:
        scheduler.frontier.release(lease)


class _RequestCodec:
    """Spills an input request not yet started (:mod:`enrich.frontier.spill`) as Scrapy serializes requests for its
    disk queues (``Request.to_dict``), pickled; callbacks are the spider's methods, found by name on the way back."""

    scheduler: FrontierScheduler | None = None

    def encode(self, request: Request, /) -> bytes:
        return pickle.dumps(request.to_dict(spider=self._spider()), protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes, /) -> Request:
        return request_from_dict(pickle.loads(data), spider=self._spider())  # our own temporary file: trusted

    def _spider(self) -> Spider | None:
        return self.scheduler.spider if self.scheduler is not None else None


class FrontierScheduler(BaseScheduler):
    """Scrapy's scheduler interface over a :class:`~enrich.frontier.Frontier` (see the module docstring).

    Args:
        crawler: the running crawler (its engine is woken when a queued request becomes ready).
        frontier: the per-site queues and rules; its payloads are Scrapy requests.
    """

    def __init__(self, crawler: Crawler, frontier: Frontier[Request]) -> None:
        self.crawler = crawler
        self.frontier = frontier
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._closed = False
        self.spider: Spider | None = None
        self.not_started = 0
        """Requests of input URLs drained unstarted when the spider closed (a stop before the end)."""
        self.interrupted = 0
        """Retries and redirect hops drained when the spider closed."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        codec = _RequestCodec()
        gate = cls.site_gate(crawler)
        frontier: Frontier[Request] = Frontier.from_config(
            run_of(crawler).config,
            spill_codec=codec if gate is None else None,  # a distributed worker reads ahead from the job's queue
            gate=gate,
        )
        scheduler = cls(crawler, frontier)
        codec.scheduler = scheduler
        _SCHEDULERS[crawler] = scheduler
        return scheduler

    @classmethod
    def site_gate(cls, crawler: Crawler) -> SiteGate | None:
        """Per-site permits shared with other workers; none here (see ``redis_scheduler.py``)."""
        return None

    # --- Scrapy's interface ----------------------------------------------------------------------------------

    def open(self, spider: Spider) -> None:
        self._closed = False
        self.spider = spider

    def close(self, reason: str) -> None:
        """Cancel the wake-up timer and drain what is still queued (a stop before the end; the sink pipeline drained
        it already unless the output failed): input requests never started are counted as not started, waiting
        retries and redirect hops left over as interrupted."""
        self._closed = True
        self._cancel_timer()
        self.interrupted += len(self.drain())
        if self.not_started or self.interrupted:
            logger.info(
                "spider closed (%s): %d queued URLs not started, %d retries or redirects not made",
                reason,
                self.not_started,
                self.interrupted,
            )
        self.frontier.close()
        stats = self.crawler.stats
        if stats is not None:
            stats.set_value("enrich/not_started", self.not_started)
            stats.set_value("enrich/interrupted", self.interrupted)

    def drain(self) -> list[Request]:
        """Take everything still queued out of the frontier (the run is stopping): input requests never started are
        counted as not started; the started ones (a retry waiting for its time, a redirect hop) are returned, for
        records of their last outcome."""
        self.frontier.close_input()
        started = []
        for request in self.frontier.drain():
            if request.meta.get("retry_times") or request.meta.get("redirect_times"):
                started.append(request)
            else:
                self.not_started += 1
        return started

    def has_pending_requests(self) -> bool:
        # requests in flight are Scrapy's downloader's to track; queued ones (delayed retries included) are ours
        return self.frontier.pending > 0

    def __len__(self) -> int:
        return self.frontier.pending

    def enqueue_request(self, request: Request) -> bool:
        """Queue ``request`` under its site: an input request counts against the look-ahead bound; a retry waits
        for its not-before time; a redirect hop is a new request for its target's site."""
        stale = request.meta.pop(LEASE_META, None)
        if isinstance(stale, Lease):  # the previous attempt's (a retry or a hop copies the meta): already released
            self.frontier.release(stale)  # a no-op unless a middleware re-scheduled it before its outcome
        request.meta.pop(CIRCUIT_META, None)
        retry_at = request.meta.pop(RETRY_AT_META, None)
        not_before = float(retry_at) if isinstance(retry_at, (int, float)) else 0.0
        is_input = not (request.meta.get("retry_times") or request.meta.get("redirect_times") or not_before)
        if is_input:
            # the spider's start() waits for room (wait_for_room) before yielding, so the bound holds
            self.frontier.add(request.url, request, priority=request.priority, size=REQUEST_BYTES)
        else:
            self.frontier.push(
                request.url, request, priority=request.priority, size=REQUEST_BYTES, not_before=not_before
            )
        return True

    def next_request(self) -> Request | None:
        """The best request that may start now; ``None`` (after arming a wake-up) when none may yet."""
        lease = self.frontier.poll()
        if lease is None:
            wait = self.frontier.wait_s()
            if wait is not None:
                self._wake_in(wait + WAKE_SLACK_S)
            return None
        request = lease.payload
        if lease.refusal is not None:  # open circuit: no slot held; PolicyMiddleware writes the refusal
            request.meta[CIRCUIT_META] = lease.refusal
        else:
            request.meta[LEASE_META] = lease
        add_wait(request.meta, lease.waited_s)
        return request

    # --- for the spider and the middleware -------------------------------------------------------------------

    async def wait_for_room(self) -> None:
        """Wait until the frontier wants more input (:meth:`~enrich.frontier.Frontier.wants_input`): the spider
        reads the input only as fast as that."""
        await self.frontier.wait_for_room()

    def wake(self) -> None:
        """Ask Scrapy's engine for the next requests now (e.g. a site's robots.txt rules just became known)."""
        # Scrapy has no public way to make the engine call next_request() again: it does so after a download
        # ends and on a 5 s heartbeat. nextcall (a CallLaterOnce) is what both of those schedule; it is private,
        # so it is looked up defensively and a missing one only costs latency (the heartbeat still comes).
        engine = self.crawler.engine
        slot = getattr(engine, "_slot", None)
        nextcall = getattr(slot, "nextcall", None)
        schedule = getattr(nextcall, "schedule", None)
        if callable(schedule):
            schedule()

    def _wake_in(self, seconds: float) -> None:
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not under the asyncio reactor: the engine's heartbeat will ask again
            return
        at = loop.time() + seconds
        if self._timer is not None and not self._timer.cancelled() and self._timer_at <= at:
            return  # an earlier (or equal) wake-up is armed already
        self._cancel_timer()
        self._timer_at = at
        self._timer = loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.wake()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stats(self) -> dict[str, object]:
        """The frontier's figures for the run's stats (counts, peaks, sites that backed off or failed)."""
        return {**self.frontier.stats(), "not_started": self.not_started, "interrupted": self.interrupted}
