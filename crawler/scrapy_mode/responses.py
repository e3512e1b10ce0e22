"""A Scrapy response as the enrich core sees it: a :class:`~enrich.record.FetchedPage` for the stages, or the
URL's ``HTTPError`` record. Used by the enrich spider and by the add-on's spider middleware, so a response of any
spider becomes the same item.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from crawler.scrapy_mode.bodies import TRUNCATED_FLAG
from crawler.scrapy_mode.config import ENGINE
from enrich.policy import fetching, http_error
from enrich.record import FetchedPage, utc_now_iso
from enrich.stages import WorkItem
from enrich.state import is_page
from enrich.urls import redact_url

if TYPE_CHECKING:
    from scrapy.http import Request, Response

__all__ = [
    "INPUT_URL_META",
    "STARTED_META",
    "attempts_of",
    "fetch_duration_ms",
    "input_url",
    "response_headers",
    "response_item",
]

INPUT_URL_META = "enrich_input_url"
"""Request meta key holding the input URL (credentials removed), kept through redirects and retries."""

STARTED_META = "enrich_started"
"""Request meta key: when the URL's first attempt started (``time.perf_counter``), set by the policy middleware and
copied to its retries and redirect hops; its record's ``fetch_duration_ms`` counts from there
(:func:`enrich.policy.fetch_duration_ms`)."""


def input_url(request: Request) -> str:
    """The URL a request's record is about: the input URL it was made for (a hop's or a retry's too)."""
    url = request.meta.get(INPUT_URL_META)
    return url if isinstance(url, str) else redact_url(request.url)


def attempts_of(meta: dict[str, Any]) -> int:
    """The number of the attempt a request is (1 for the first), from Scrapy's retry counter."""
    retries = meta.get("retry_times", 0)
    return (retries if isinstance(retries, int) else 0) + 1


def fetch_duration_ms(meta: dict[str, Any]) -> float | None:
    """The URL's ``fetch_duration_ms`` until now, as :func:`enrich.policy.fetch_duration_ms` defines it; without a
    start (a spider of the add-on's, no policy middleware), the last attempt's ``download_latency``."""
    started = meta.get(STARTED_META)
    if isinstance(started, float):
        return fetching.fetch_duration_ms(started, time.perf_counter())
    latency = meta.get("download_latency")
    return float(latency) * 1000 if isinstance(latency, (int, float)) else None


def response_headers(response: Response) -> dict[str, str]:
    """Lower-case names to text values, repeated headers joined with ``, `` (as HTTP allows)."""
    out: dict[str, str] = {}
    for key, value in response.headers.to_unicode_dict().items():
        out[str(key).lower()] = ", ".join(value) if isinstance(value, list) else str(value)
    return out


def response_item(
    response: Response, *, url: str, max_bytes: int, conditional: bool = False, note: str | None = None
) -> WorkItem:
    """The work item of ``response``: a page when its status is one (:func:`enrich.state.is_page`), an
    ``HTTPError`` record otherwise (``note`` says why a retryable answer was not retried).

    Args:
        response: the final answer (after redirects and retries).
        url: the URL the record is about (the input URL, before redirects, credentials removed).
        max_bytes: the body is cut here (flagged ``truncated``), as the size cap does.
        conditional: the request carried a recrawl's validators, so a 304 is a page.
        note: added to an ``HTTPError`` record's message.
    """
    meta = response.meta
    attempts = attempts_of(meta)
    fetched_at = utc_now_iso()
    duration_ms = fetch_duration_ms(meta)
    if not is_page(response.status, conditional=conditional):
        return WorkItem.from_error(
            url,
            http_error(response.status, attempts=attempts, note=note),
            engine=ENGINE,
            attempts=attempts,
            fetch_duration_ms=duration_ms,
            fetched_at=fetched_at,
            status=response.status,
            final_url=redact_url(response.url),
        )
    page = FetchedPage(
        url=url,
        final_url=redact_url(response.url),
        status=response.status,
        headers=response_headers(response),
        body=response.body[:max_bytes],
        fetched_at=fetched_at,
        fetch_duration_ms=duration_ms or 0.0,
        attempts=attempts,
        truncated=TRUNCATED_FLAG in response.flags or len(response.body) > max_bytes,
    )
    return WorkItem.from_page(page, engine=ENGINE)
