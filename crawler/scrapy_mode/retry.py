"""Retries in Scrapy mode: Scrapy's retry middleware with the async engine's statuses, backoff and wording, and
the record of a URL whose retry or redirect hop was still queued when it had to stop.

The retry waits in the frontier (:data:`~crawler.scrapy_mode.scheduler.RETRY_AT_META`), not in a middleware; the
meta keys below carry what a queued retry was for, so its URL still gets the right record if the run stops or the
site's circuit opens first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Self

from scrapy.downloadermiddlewares.retry import RetryMiddleware, get_retry_request
from scrapy.utils.response import response_status_message

from crawler.scrapy_mode.config import run_of
from crawler.scrapy_mode.failures import failure_reason
from crawler.scrapy_mode.responses import attempts_of, input_url
from crawler.scrapy_mode.scheduler import RETRY_AT_META
from enrich.errors import FetchError
from enrich.policy import RetryPolicy, failure_message, fetching, http_error
from enrich.stages import WorkItem

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Request, Response

    from enrich.config import EnrichConfig

__all__ = [
    "HTTP_NOTE_META",
    "LAST_REASON_META",
    "LAST_STATUS_META",
    "RETRY_AFTER_META",
    "BackoffRetryMiddleware",
    "last_outcome_record",
]

LAST_STATUS_META = "enrich_last_status"
"""Request meta key of a retry: the status of the answer it retries (its record if the run stops first)."""

LAST_REASON_META = "enrich_last_reason"
"""Request meta key of a retry: the transport failure it retries, worded for a record."""

RETRY_AFTER_META = "enrich_retry_after"
"""Request meta key: the ``Retry-After`` header of the answer that is being retried."""

HTTP_NOTE_META = "enrich_http_note"
"""Request meta key: a note for the URL's ``HTTPError`` record (why a retryable answer was not retried)."""


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retries (how many times, which exceptions, its stats and log lines) with the async engine's
    statuses and backoff.

    Which statuses are retried is :meth:`enrich.policy.RetryPolicy.is_retryable_status` (5xx and 429), as in the
    async engine; ``RETRY_HTTP_CODES`` is not read. Scrapy sends a retry at once; this gives it
    :meth:`~enrich.policy.RetryPolicy.delay` (exponential with jitter, ``Retry-After`` honoured), as a not-before
    time (:data:`RETRY_AT_META`) that the frontier's scheduler obeys: the retry waits queued, holding no place. An
    answer whose ``Retry-After`` is longer than ``fetch.retry_after_cap_s`` is not retried at all (retrying at the
    cap would be early): it goes to the spider, whose ``HTTPError`` record says why (:data:`HTTP_NOTE_META`), as
    the async engine words it. The retry itself is Scrapy's public :func:`~scrapy.downloadermiddlewares.retry.
    get_retry_request`.
    """

    def __init__(self, settings: Any, *, retry: RetryPolicy | None = None, config: EnrichConfig | None = None) -> None:
        super().__init__(settings)
        self.retry = retry or RetryPolicy()
        self.config = config

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        config = run_of(crawler).config
        middleware = cls(crawler.settings, retry=RetryPolicy.from_config(config.fetch), config=config)
        middleware.crawler = crawler
        return middleware

    def process_response(self, request: Request, response: Response) -> Request | Response:  # type: ignore[override]
        header = response.headers.get("Retry-After")
        retry_after = header.decode("latin-1") if header is not None else None
        request.meta[LAST_STATUS_META] = response.status  # a retry copies it: its record if the run stops first
        request.meta.pop(LAST_REASON_META, None)
        if request.meta.get("dont_retry", False) or not self.retry.is_retryable_status(response.status):
            return response
        if retry_after is not None:
            request.meta[RETRY_AFTER_META] = retry_after
        if attempts_of(request.meta) <= self._max_retries(request):
            note = self.retry.too_long(retry_after)
            if note is not None:
                request.meta[HTTP_NOTE_META] = note
                request.meta.pop(RETRY_AFTER_META, None)
                return response
        return self._retry_request(request, response_status_message(response.status)) or response

    def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception
    ) -> Request | Response | None:
        if not isinstance(exception, self.exceptions_to_retry) or request.meta.get("dont_retry", False):
            return None
        return self._retry_request(request, exception)

    def _max_retries(self, request: Request) -> int:
        value = request.meta.get("max_retry_times", self.max_retry_times)
        return value if isinstance(value, int) else self.max_retry_times

    def _retry_request(self, request: Request, reason: str | Exception) -> Request | None:
        """Scrapy's retry of ``request`` (``None`` once its retries are spent), carrying what it retries and the
        time before which it must not start."""
        assert self.crawler.spider is not None
        retry = get_retry_request(
            request,
            spider=self.crawler.spider,
            reason=reason,
            max_retry_times=self._max_retries(request),
            priority_adjust=request.meta.get("priority_adjust", self.priority_adjust),
            give_up_log_level=request.meta.get("give_up_log_level", self.give_up_log_level),
        )
        retry_after = request.meta.pop(RETRY_AFTER_META, None)
        if retry is None:
            return None
        retry.meta.pop(RETRY_AFTER_META, None)
        if isinstance(reason, Exception):
            retry.meta.pop(LAST_STATUS_META, None)
            retry.meta[LAST_REASON_META] = (
                failure_reason(reason, url=request.url, config=self.config) if self.config else str(reason)
            )
        delay = self.retry.delay(retry.meta.get("retry_times", 1), retry_after)
        # on time.monotonic, the frontier's clock: FrontierScheduler queues the retry until then
        retry.meta[RETRY_AT_META] = time.monotonic() + delay
        return retry


def last_outcome_record(request: Request, *, engine: str) -> WorkItem:
    """The record of a started request that will not be made: the answer or failure its retry was for (the run
    stopped, or the site's circuit opened while it waited), or, for a redirect hop, that the redirect was not
    followed (as the async engine words them)."""
    url = input_url(request)
    attempts = max(1, attempts_of(request.meta) - 1)  # the attempts made; the queued one was not
    status = request.meta.get(LAST_STATUS_META)
    reason = request.meta.get(LAST_REASON_META)
    if isinstance(status, int):
        error = http_error(status, attempts=attempts)
        return WorkItem.from_error(url, error, engine=engine, attempts=attempts, status=status)
    if isinstance(reason, str):
        return WorkItem.from_error(
            url, FetchError(failure_message(attempts, reason), url=url, attempts=attempts), engine=engine
        )
    stopped = FetchError(fetching.stopped_before_redirect(request.url), url=url)
    return WorkItem.from_error(url, stopped, engine=engine)
