"""One request of the async engine, from a frontier lease to a record or back into the frontier.

Each lease is one HTTP request to one site: the policies of *that* site apply (address check, robots.txt and its
``Crawl-delay``, the frontier's cap, backoff and circuit), whether it is an input URL, a retry or a redirect hop.
Its outcome goes back to the frontier (:meth:`~enrich.frontier.Frontier.release`), then:

* a redirect becomes a new request for its target site (``Frontier.push``), credentials kept for the same origin;
* a retryable failure goes back with a not-before time (no slot held while it waits), unless the server's
  ``Retry-After`` is longer than ``fetch.retry_after_cap_s`` (then it is given up, and its record says why);
* anything else ends as the URL's one record (:class:`~enrich.stages.WorkItem`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from crawler.async_engine.fetcher import (
    TRANSPORT_ERRORS,
    RedirectProblem,
    describe_error,
    follow_location,
    split_auth,
    translate_error,
)
from enrich.errors import BlockedAddressError, CircuitOpenError, FetchError, SinkError
from enrich.frontier import Outcome, outcome_of
from enrich.policy import failure_message, fetching, http_error
from enrich.record import FetchedPage, utc_now_iso
from enrich.stages import WorkItem
from enrich.state import is_page
from enrich.timing import StageTimes
from enrich.urls import InputURL, redact_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from yarl import URL

    from crawler.async_engine.fetcher import AiohttpFetcher, Answer
    from enrich.frontier import Frontier, Lease
    from enrich.policy import RetryPolicy, RobotsPolicy
    from enrich.state import StoredRow

__all__ = ["Job", "JobCodec", "RequestRunner"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """What the frontier carries for one input URL, from its first request to its record."""

    entry: InputURL
    target: URL
    """The URL of the next request (a redirect hop's target after a redirect), without credentials."""
    auth: dict[str, str] | None
    """The ``Authorization`` header for the next request (input credentials, same origin only)."""
    origin_auth: dict[str, str] | None
    origin: URL
    attempt: int = 1
    redirects: int = 0
    started: float | None = None
    last: FetchedPage | FetchError | None = None
    """The outcome of the last attempt, kept while a retry waits (its record if the run stops first)."""
    conditional: dict[str, str] | None = None
    """A recrawl's validators (``If-None-Match``, ``If-Modified-Since``), sent to :attr:`conditional_url`."""
    conditional_url: str | None = None
    """The URL that answered last time (the last redirect hop's target): its answer is the one the validators
    describe."""
    times: StageTimes | None = None
    """Where its time went so far (every attempt and hop added up); its record gets them."""

    @classmethod
    def of(cls, entry: InputURL, revisit: StoredRow | None = None) -> Job:
        target, auth = split_auth(entry.fetch_url or entry.url)
        job = cls(entry=entry, target=target, auth=auth, origin_auth=auth, origin=target.origin())
        if revisit is not None and revisit.final_url:
            job.conditional = revisit.conditional_headers() or None
            job.conditional_url = revisit.final_url
        return job

    def headers(self) -> tuple[dict[str, str] | None, bool]:
        """The extra headers of the next request, and whether it is conditional."""
        if self.conditional is None or redact_url(str(self.target)) != self.conditional_url:
            return self.auth, False
        return {**(self.auth or {}), **self.conditional}, True


class JobCodec:
    """Spills a job not yet started (:mod:`enrich.frontier.spill`): its input entry as JSON, rebuilt on the way back."""

    def encode(self, job: Job, /) -> bytes:
        entry = job.entry
        fields = [entry.url, entry.line, entry.fetch_url, entry.priority, job.conditional, job.conditional_url]
        return json.dumps(fields).encode("utf-8", "surrogatepass")

    def decode(self, data: bytes, /) -> Job:
        url, line, fetch_url, priority, conditional, conditional_url = json.loads(data)
        job = Job.of(InputURL(url=url, line=line, fetch_url=fetch_url, priority=priority))
        job.conditional, job.conditional_url = conditional, conditional_url
        return job


class RequestRunner:
    """Makes one request for a lease and decides what follows (see the module docstring).

    Args:
        fetcher: the transport.
        frontier: where retries and hops go back, and outcomes are reported.
        retry: when and after how long a failure is retried.
        robots: robots.txt rules; ``None`` obeys none.
        timeout_s: time allowed for one request, body included.
        max_redirects: redirects followed per input URL.
        engine: the ``engine`` field of records.
        clock: seconds, for fetch durations.
    """

    def __init__(
        self,
        *,
        fetcher: AiohttpFetcher,
        frontier: Frontier[Job],
        retry: RetryPolicy,
        robots: RobotsPolicy | None,
        timeout_s: float,
        max_redirects: int,
        engine: str,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.fetcher = fetcher
        self.frontier = frontier
        self.retry = retry
        self.robots = robots
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.engine = engine
        self._clock = clock
        self.stopping = False
        """Set when the run stops: nothing goes back into the frontier; a retry ends with its last outcome."""

    async def run(self, lease: Lease[Job]) -> WorkItem | None:
        """Make the request of ``lease``; the URL's record, or ``None`` when it went back into the frontier."""
        job = lease.payload
        if job.started is None:
            job.started = self._clock()
        if job.times is None:
            job.times = StageTimes()
        job.times.add("queue", lease.waited_s)
        if lease.refusal is not None:
            return self._last_or(job, CircuitOpenError(lease.refusal, url=job.entry.url, domain=lease.site))
        try:
            refusal = await self._refusal(job, lease)
        except BaseException:
            self.frontier.release(lease)
            raise
        if refusal is not None:
            self.frontier.release(lease)
            return self._last_or(job, refusal)
        headers, conditional = job.headers()
        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await self.fetcher.request(
                    job.target, headers=headers, on_sent=lambda: self.frontier.starting(lease)
                )
        except SinkError:  # the WARC file cannot be written (an OSError, but no transport failure): the run stops
            self.frontier.release(lease)
            raise
        except BlockedAddressError as exc:
            self.frontier.release(lease)
            self.fetcher.remember_blocked(exc)
            exc.url = job.entry.url
            return self._error(job, exc)
        except TRANSPORT_ERRORS as exc:
            reason = describe_error(exc, timeout_s=self.timeout_s, max_redirects=self.max_redirects)
            timed_out = isinstance(exc, TimeoutError)
            self.frontier.release(lease, outcome_of(None, timed_out=timed_out), reason=reason)
            error = translate_error(exc, url=job.entry.url, attempts=job.attempt, reason=reason)
            if self.retry.should_retry(None, error, job.attempt):
                job.last = error
                return self._again(job, lease, self.retry.delay(job.attempt))
            return self._error(job, error)
        except aiohttp.ClientError as exc:
            self.frontier.release(lease, Outcome.SUCCESS)  # the server answered something we cannot use
            reason = describe_error(exc, timeout_s=self.timeout_s, max_redirects=self.max_redirects)
            return self._error(job, FetchError(failure_message(job.attempt, reason), url=job.entry.url))
        except BaseException:
            self.frontier.release(lease)
            raise
        job.times.add("connect", answer.connect_s)
        job.times.add("ttfb", answer.ttfb_s - answer.connect_s)
        job.times.add("body", answer.body_s)
        retry_after = answer.headers.get("retry-after")
        self.frontier.release(
            lease,
            outcome_of(answer.status),
            ttfb_s=answer.ttfb_s,
            status=answer.status,
            retry_after=retry_after,
            reason=f"HTTP {answer.status}",
        )
        if answer.location is not None:
            return self._redirect(job, lease, answer)
        page = self._page(job, answer)
        if self.retry.should_retry(answer.status, None, job.attempt):
            note = self.retry.too_long(retry_after)
            if note is not None:
                return self._http_error(page, note=note)
            job.last = page
            return self._again(job, lease, self.retry.delay(job.attempt, retry_after))
        if is_page(page.status, conditional=conditional):
            return WorkItem.from_page(page, engine=self.engine)
        return self._http_error(page)

    async def _refusal(self, job: Job, lease: Lease[Job]) -> FetchError | None:
        """Why this request must not be made (address, robots.txt), naming the root cause; else ``None``, after
        telling the frontier the site's ``Crawl-delay``."""
        url = job.entry.url
        hop = str(job.target)
        try:
            self.fetcher.check_literal(url, job.target.host)
        except BlockedAddressError as exc:
            return exc
        if self.robots is None:
            return None
        refusal = await self.robots.refusal(hop, record_url=url)
        if refusal is not None:
            blocked = self.fetcher.blocked(job.target.host)
            if blocked is not None:  # robots.txt was not fetched because the host's address is refused
                return BlockedAddressError(str(blocked), url=url, host=blocked.host, address=blocked.address)
            return refusal
        self.frontier.set_rules(hop, await self.robots.crawl_delay(hop))
        return None

    def _redirect(self, job: Job, lease: Lease[Job], answer: Answer) -> WorkItem | None:
        assert answer.location is not None
        try:
            target = follow_location(
                job.target,
                answer.location,
                answer.status,
                redirects=job.redirects,
                max_redirects=self.max_redirects,
            )
        except RedirectProblem as exc:
            return self._error(job, FetchError(failure_message(job.attempt, exc.reason), url=job.entry.url))
        job.target, auth = split_auth(str(target))
        job.auth = auth if auth is not None else (job.origin_auth if job.target.origin() == job.origin else None)
        job.redirects += 1
        if self.stopping:
            return self._error(job, FetchError(fetching.stopped_before_redirect(str(target))))
        self.frontier.push(str(job.target), job, priority=lease.priority)
        return None

    def _again(self, job: Job, lease: Lease[Job], delay: float) -> WorkItem | None:
        if self.stopping:
            return self._last_or(job, FetchError("Run stopped", url=job.entry.url))
        job.attempt += 1
        logger.debug("retrying %s in %.2fs", job.entry.url, delay, extra={"url": job.entry.url})
        self.frontier.push(str(job.target), job, priority=lease.priority, not_before=self.frontier.clock() + delay)
        return None

    def _page(self, job: Job, answer: Answer) -> FetchedPage:
        return FetchedPage(
            url=job.entry.url,
            final_url=answer.url,
            status=answer.status,
            headers=answer.headers,
            body=answer.body,
            fetched_at=utc_now_iso(),
            fetch_duration_ms=self._elapsed_ms(job) or 0.0,
            attempts=job.attempt,
            truncated=answer.truncated,
        )

    def _elapsed_ms(self, job: Job) -> float | None:
        return None if job.started is None else fetching.fetch_duration_ms(job.started, self._clock())

    def _http_error(self, page: FetchedPage, *, note: str | None = None) -> WorkItem:
        return WorkItem.from_error(
            page.url,
            http_error(page.status, attempts=page.attempts, note=note),
            engine=self.engine,
            attempts=page.attempts,
            fetch_duration_ms=page.fetch_duration_ms,
            fetched_at=page.fetched_at,
            status=page.status,
            final_url=page.final_url,
        )

    def _last_or(self, job: Job, error: FetchError) -> WorkItem:
        """The record of a URL that stops here: its last answer if a retry was waiting, else ``error``."""
        if isinstance(job.last, FetchedPage):
            if 200 <= job.last.status < 300:
                return WorkItem.from_page(job.last, engine=self.engine)
            return self._http_error(job.last)
        return self._error(job, job.last if job.last is not None else error)

    def _error(self, job: Job, error: FetchError) -> WorkItem:
        logger.info("fetch failed: %s", error, extra={"url": job.entry.url})
        error.url = job.entry.url
        return WorkItem.from_error(
            job.entry.url,
            error,
            engine=self.engine,
            attempts=error.attempts,
            fetch_duration_ms=self._elapsed_ms(job),
        )

    def stopped(self, job: Job) -> WorkItem | None:
        """The record of a job drained from the frontier at stop: ``None`` if it never started (not started)."""
        if job.started is None:
            return None
        if job.last is not None:
            return self._last_or(job, FetchError("Run stopped", url=job.entry.url))
        return self._error(job, FetchError("Run stopped before following a redirect", url=job.entry.url))
