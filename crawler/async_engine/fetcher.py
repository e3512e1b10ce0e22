"""The aiohttp transport: one session per run, retries by :class:`~enrich.policy.RetryPolicy`, capped bodies.

The fetcher only does I/O and translation. What to retry, how long to wait and how many requests may be in flight
are decided by the policies it is given; aiohttp errors leave it as :class:`~enrich.errors.FetchError` or
:class:`~enrich.errors.FetchTimeoutError`, chained to the original with ``raise ... from``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol, Self

import aiohttp

from enrich.errors import FetchError, FetchTimeoutError
from enrich.policy import RetryPolicy, failure_message
from enrich.record import FetchedPage, utc_now_iso
from enrich.urls import redact_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from enrich.config import FetchConfig
    from enrich.policy import AdaptiveLimiter

__all__ = ["AiohttpFetcher", "Fetcher", "describe_error", "translate_error"]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""Read size while streaming a body: large enough to keep per-chunk overhead low, small enough to stop near the cap."""

_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    TimeoutError,
    OSError,
)
"""Errors of the connection itself, which a new attempt may not meet. Other ``ClientError`` s (too many redirects,
a redirect to an invalid or non-HTTP URL) give the same answer every time, so they are final at once."""


class Fetcher(Protocol):
    """What the processor needs from a transport: an async context (one per run) and one call per URL."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def fetch(self, url: str, *, fetch_url: str | None = None) -> FetchedPage:
        """Fetch ``url`` with retries; return the final response whatever its status.

        Raises:
            FetchError: no response after every allowed attempt (``FetchTimeoutError`` when the last one timed out).
        """
        ...


def describe_error(exc: BaseException, *, timeout_s: float | None = None, max_redirects: int | None = None) -> str:
    """A short reason for people, e.g. ``Connection timeout`` or ``Connection refused``."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "Connection timeout"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "Read timeout"
    if isinstance(exc, TimeoutError):
        return f"Timeout after {timeout_s:g}s" if timeout_s is not None else "Timeout"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "Connection refused"
        return f"Cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "Server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "Connection dropped while reading the body"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"Too many redirects (more than {max_redirects})" if max_redirects is not None else "Too many redirects"
    if isinstance(exc, aiohttp.NonHttpUrlRedirectClientError):
        return f"Redirect to a non-HTTP URL: {exc}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"Invalid URL: {exc}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def translate_error(exc: BaseException, *, url: str, attempts: int, reason: str) -> FetchError:
    """Our error for a transport exception: :class:`FetchTimeoutError` for timeouts, :class:`FetchError` else."""
    message = failure_message(attempts, reason)
    if isinstance(exc, TimeoutError):
        return FetchTimeoutError(message, url=url, attempts=attempts)
    return FetchError(message, url=url, attempts=attempts)


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class AiohttpFetcher:
    """Fetches pages with one aiohttp ``ClientSession``, opened and closed by ``async with``.

    Each attempt holds a slot of ``limiter`` (when given) from the request to the end of the body; backoff sleeps
    hold none, so a waiting retry does not block other URLs. ``on_attempt(success, duration_s)`` hears every
    attempt; success means no sign of overload (no connection error, timeout, 5xx or 429).

    Args:
        max_connections: connector-wide connection limit.
        per_host_limit: connections per host; 0 means no limit.
        dns_ttl_s: DNS cache lifetime; 0 disables the cache.
        timeout_s: total time of one attempt, body included.
        connect_timeout_s: time to open a connection.
        max_redirects: redirects followed before giving up.
        max_response_bytes: bodies past this are cut and flagged ``truncated``.
        user_agent: the ``User-Agent`` header.
        retry: the retry policy.
        limiter: gates attempts; ``None`` leaves gating to the connector.
        on_attempt: observer of each attempt's outcome, e.g. ``AIMDController.record``.
        sleep: awaited for backoff; injected by tests.
        clock: monotonic seconds, for durations.
    """

    def __init__(
        self,
        *,
        max_connections: int = 50,
        per_host_limit: int = 16,
        dns_ttl_s: float = 300.0,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_redirects: int = 10,
        max_response_bytes: int = 10 * 1024 * 1024,
        user_agent: str = "webenrich",
        retry: RetryPolicy | None = None,
        limiter: AdaptiveLimiter | None = None,
        on_attempt: Callable[[bool, float], None] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.max_connections = max_connections
        self.per_host_limit = per_host_limit
        self.dns_ttl_s = dns_ttl_s
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_redirects = max_redirects
        self.max_response_bytes = max_response_bytes
        self.user_agent = user_agent
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self._on_attempt = on_attempt
        self._sleep = sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self.truncated = 0
        """Bodies cut at the size cap during this fetcher's life."""

    @classmethod
    def from_config(
        cls,
        fetch: FetchConfig,
        *,
        limiter: AdaptiveLimiter | None = None,
        on_attempt: Callable[[bool, float], None] | None = None,
        retry: RetryPolicy | None = None,
    ) -> AiohttpFetcher:
        return cls(
            max_connections=fetch.max_concurrency,
            per_host_limit=fetch.per_host_limit,
            dns_ttl_s=fetch.dns_ttl_s,
            timeout_s=fetch.timeout_s,
            connect_timeout_s=fetch.connect_timeout_s,
            max_redirects=fetch.max_redirects,
            max_response_bytes=fetch.max_response_bytes,
            user_agent=fetch.full_user_agent,
            retry=retry or RetryPolicy.from_config(fetch),
            limiter=limiter,
            on_attempt=on_attempt,
        )

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("AiohttpFetcher is already open")
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            limit_per_host=self.per_host_limit,
            use_dns_cache=self.dns_ttl_s > 0,
            ttl_dns_cache=int(self.dns_ttl_s) if self.dns_ttl_s > 0 else None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=self.connect_timeout_s),
            headers={"User-Agent": self.user_agent},
            raise_for_status=False,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def fetch(self, url: str, *, fetch_url: str | None = None) -> FetchedPage:
        """Fetch ``url`` (``fetch_url`` when it differs, e.g. with credentials), retrying as the policy says.

        Returns the final response whatever its status; ``fetch_duration_ms`` covers every attempt and backoff.

        Raises:
            FetchError: no response after every allowed attempt, or a redirect problem (final at once).
            FetchTimeoutError: the last attempt timed out.
            RuntimeError: used outside ``async with``.
        """
        if self._session is None:
            raise RuntimeError("AiohttpFetcher.fetch() called outside 'async with'")
        target = fetch_url or url
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                page = await self._attempt(url, target, attempt, started)
            except _TRANSPORT_ERRORS as exc:
                reason = describe_error(exc, timeout_s=self.timeout_s, max_redirects=self.max_redirects)
                error = translate_error(exc, url=url, attempts=attempt, reason=reason)
                if not self.retry.should_retry(None, error, attempt):
                    raise error from exc
                delay = self.retry.delay(attempt)
                logger.debug("retrying %s in %.2fs after %s", url, delay, reason, extra={"url": url})
            except aiohttp.ClientError as exc:
                reason = describe_error(exc, timeout_s=self.timeout_s, max_redirects=self.max_redirects)
                raise FetchError(failure_message(attempt, reason), url=url, attempts=attempt) from exc
            else:
                if not self.retry.should_retry(page.status, None, attempt):
                    return page
                delay = self.retry.delay(attempt, page.headers.get("retry-after"))
                logger.debug("retrying %s in %.2fs after HTTP %d", url, delay, page.status, extra={"url": url})
            await self._sleep(delay)

    async def _attempt(self, url: str, target: str, attempt: int, started: float) -> FetchedPage:
        assert self._session is not None
        limiter = self.limiter
        if limiter is not None:
            await limiter.acquire()
        attempt_started = self._clock()
        success = False
        try:
            async with self._session.get(target, allow_redirects=True, max_redirects=self.max_redirects) as response:
                body, truncated = await self._read(response, url)
                success = not self.retry.is_retryable_status(response.status)
                return FetchedPage(
                    url=url,
                    final_url=redact_url(str(response.url)),
                    status=response.status,
                    headers=_headers(response),
                    body=body,
                    fetched_at=utc_now_iso(),
                    fetch_duration_ms=(self._clock() - started) * 1000,
                    attempts=attempt,
                    truncated=truncated,
                )
        finally:
            if limiter is not None:
                limiter.release()
            if self._on_attempt is not None:
                self._on_attempt(success, self._clock() - attempt_started)

    async def _read(self, response: aiohttp.ClientResponse, url: str) -> tuple[bytes, bool]:
        """The body, streamed and cut at ``max_response_bytes``; the flag says whether it was cut."""
        cap = self.max_response_bytes
        body = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            room = cap - len(body)
            if len(chunk) > room:
                body += chunk[:room]
                response.close()  # stop the download; the connection is not reused
                self.truncated += 1
                logger.warning("body of %s cut at %d bytes", url, cap, extra={"url": url})
                return bytes(body), True
            body += chunk
        return bytes(body), False
