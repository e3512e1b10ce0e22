"""When to retry a fetch and how long to wait first: one policy for both engines.

Transient failures are retried: connection errors, timeouts, 5xx and 429 answers. Other 4xx answers are final.
Delays grow exponentially (``base``, ``2 x base``, ``4 x base``, ...) up to a cap, with random jitter so that
many clients do not retry in step; a server's ``Retry-After`` (seconds or an HTTP date) takes precedence.
"""

from __future__ import annotations

import random as _random
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING

from enrich.errors import EnrichError, FetchError, RefusedError
from enrich.record import ErrorInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from enrich.config import FetchConfig

__all__ = [
    "RETRY_STATUSES",
    "RetryPolicy",
    "failure_message",
    "http_error",
    "is_transient_error",
    "parse_retry_after",
]

RETRY_STATUSES = frozenset({429})
"""Statuses under 500 that are worth retrying: 429 Too Many Requests asks us to come back later."""


def is_transient_error(exc: BaseException) -> bool:
    """Whether a fetch exception may go away on a new attempt.

    Timeouts, connection errors and :class:`~enrich.errors.FetchError` (which engines raise from transport
    failures) are transient; a bad URL (``ValueError``), a policy refusal (:class:`~enrich.errors.RefusedError`:
    robots.txt, open circuit, blocked address, the same answer on every attempt) or a project error other than a
    fetch error is not.
    """
    if isinstance(exc, RefusedError):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError, FetchError)):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, EnrichError)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; ``None`` if absent or bad.

    Args:
        value: the header value.
        now: the current Unix time, for HTTP dates (default: ``time.time()``).
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a date without zone is read as such
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def failure_message(attempts: int, reason: str) -> str:
    """The message of a fetch that failed for good, e.g. ``Fetch failed after 3 attempts: Connection timeout``."""
    return f"Fetch failed after {attempts} attempt{'s' if attempts != 1 else ''}: {reason}"


def http_error(status: int, *, attempts: int = 1, stage: str = "fetch", note: str | None = None) -> ErrorInfo:
    """The error of a final non-2xx answer: type ``HTTPError``, message like ``HTTP 404 Not Found``.

    After several attempts (a 503 that stayed a 503) the message says so, as :func:`failure_message` does;
    ``note`` is added after a semicolon (why it was not retried, e.g. a ``Retry-After`` past the cap).
    """
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    reason = f"HTTP {status} {phrase}".rstrip()
    message = failure_message(attempts, reason) if attempts > 1 else reason
    if note:
        message = f"{message}; {note}"
    return ErrorInfo(type="HTTPError", message=message, stage=stage)


class RetryPolicy:
    """Decides whether an attempt is retried and how long to wait before the next one.

    Args:
        retries: retries after the first attempt (2 means at most 3 attempts).
        backoff_base_s: delay before the first retry; doubles on each retry.
        backoff_cap_s: largest backoff delay.
        backoff_jitter: random extra delay, as a fraction of the delay (0.1 adds up to 10%).
        retry_after_cap_s: largest ``Retry-After`` honoured; longer ones are cut to this.
        random: returns a float in ``[0, 1)``; injected by tests.
        wall_clock: Unix time, for ``Retry-After`` HTTP dates; injected by tests.
    """

    def __init__(
        self,
        *,
        retries: int = 2,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        backoff_jitter: float = 0.1,
        retry_after_cap_s: float = 60.0,
        random: Callable[[], float] = _random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        self.retries = retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.backoff_jitter = backoff_jitter
        self.retry_after_cap_s = retry_after_cap_s
        self._random = random
        self._wall_clock = wall_clock

    @classmethod
    def from_config(
        cls,
        fetch: FetchConfig,
        *,
        random: Callable[[], float] = _random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> RetryPolicy:
        return cls(
            retries=fetch.retries,
            backoff_base_s=fetch.backoff_base_s,
            backoff_cap_s=fetch.backoff_cap_s,
            backoff_jitter=fetch.backoff_jitter,
            retry_after_cap_s=fetch.retry_after_cap_s,
            random=random,
            wall_clock=wall_clock,
        )

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @staticmethod
    def is_retryable_status(status: int) -> bool:
        """5xx and 429 are worth another attempt; every other status is final."""
        return status >= 500 or status in RETRY_STATUSES

    def should_retry(self, status: int | None, exc: BaseException | None, attempt: int) -> bool:
        """Whether to make another attempt after attempt number ``attempt`` (1-based) ended this way.

        Args:
            status: the response status, ``None`` when there was no response.
            exc: the exception the attempt raised, ``None`` when it got a response.
            attempt: the number of the attempt that just ended.
        """
        if attempt > self.retries:
            return False
        if exc is not None:
            return is_transient_error(exc)
        return status is not None and self.is_retryable_status(status)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after attempt number ``attempt`` (1-based) before the next one.

        ``Retry-After``, when present and valid, wins (capped at ``retry_after_cap_s``, no jitter: the server
        named the time). Otherwise ``base x 2**(attempt-1)`` capped at ``backoff_cap_s``, plus jitter.
        """
        honoured = parse_retry_after(retry_after, now=self._wall_clock())
        if honoured is not None:
            return min(honoured, self.retry_after_cap_s)
        backoff = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** max(0, attempt - 1))
        # jitter spreads retries out but never past the cap: the cap is a promise to the user and the site
        return min(self.backoff_cap_s, backoff * (1 + self.backoff_jitter * self._random()))

    def too_long(self, retry_after: str | None) -> str | None:
        """Why an answer must not be retried within this run: its ``Retry-After`` asks for longer than
        ``retry_after_cap_s`` (retrying at the cap would be early, i.e. rude). ``None`` when it may be retried."""
        honoured = parse_retry_after(retry_after, now=self._wall_clock())
        if honoured is None or honoured <= self.retry_after_cap_s:
            return None
        return (
            f"not retried: the server asked to retry after {honoured:.0f} s, longer than "
            f"fetch.retry_after_cap_s ({self.retry_after_cap_s:g} s)"
        )
