"""What both engines must do alike when they fetch, defined once: which answers are redirects, how credentials in
a URL are sent, how a fetch's duration is measured, and how a failed attempt is worded.

Each engine maps its own transport's exceptions onto these reasons (``crawler/async_engine/fetcher.py``,
``crawler/scrapy_mode/failures.py``); the records then read the same whichever engine wrote them, and the parity
tests compare them field by field. Which statuses are retried is :meth:`enrich.policy.RetryPolicy.is_retryable_status`,
what is a page rather than an HTTP error :func:`enrich.state.is_page`, how a repeated input line is treated
:class:`enrich.state.InputAdmission`.
"""

from __future__ import annotations

from base64 import b64encode

from enrich.urls import redact_url

__all__ = [
    "BODY_DROPPED",
    "DISCONNECTED",
    "MAX_LOCATION_CHARS",
    "REDIRECT_STATUSES",
    "REFUSED",
    "basic_authorization",
    "dns_failure",
    "fetch_duration_ms",
    "invalid_redirect",
    "non_http_redirect",
    "quote_location",
    "stopped_before_redirect",
    "timeout",
    "too_many_redirects",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""Answers whose ``Location`` is followed (each hop a request of its own, under its site's rules)."""

REFUSED = "Connection refused"
DISCONNECTED = "Server disconnected"
"""The server closed the connection before answering."""
BODY_DROPPED = "Connection dropped while reading the body"


def timeout(timeout_s: float) -> str:
    """An attempt that did not complete within ``fetch.timeout_s``."""
    return f"Timeout after {timeout_s:g}s"


def dns_failure(host: str) -> str:
    return f"DNS lookup failed for {host}"


def too_many_redirects(max_redirects: int) -> str:
    return f"Too many redirects (more than {max_redirects})"


MAX_LOCATION_CHARS = 500
"""A hostile ``Location`` quoted in an error message is cut here: messages stay one readable line."""


def quote_location(location: str) -> str:
    """A ``Location`` as a message may show it: credentials out, cut at :data:`MAX_LOCATION_CHARS`."""
    text = redact_url(location.strip())
    return text if len(text) <= MAX_LOCATION_CHARS else text[:MAX_LOCATION_CHARS] + "..."


def non_http_redirect(location: str) -> str:
    """A redirect to ``ftp:``, ``file:``, ``javascript:``... (final: not followed)."""
    return f"Redirect to a non-HTTP URL: {quote_location(location)}"


def invalid_redirect(location: str) -> str:
    """A redirect whose ``Location`` is no URL at all (final)."""
    return f"Invalid redirect URL: {quote_location(location)}"


def stopped_before_redirect(target: str) -> str:
    """The record of a URL whose redirect hop was still queued when the run stopped."""
    return f"Run stopped before following the redirect to {quote_location(target)}"


def basic_authorization(user: str, password: str) -> str:
    """The ``Authorization`` value for credentials found in a URL (``user:password@``, percent-decoded): Basic, in
    UTF-8 (RFC 7617). Sent only to the URL's own origin, never to where a redirect leads."""
    token = b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def fetch_duration_ms(started: float, ended: float) -> float:
    """A record's ``fetch_duration_ms``: from the start of the URL's first attempt (when the frontier handed out its
    first request, before the robots.txt and address checks) to its final outcome (the last answer's body read, or
    the final failure), across retries, their waits and redirect hops; ``started`` and ``ended`` in seconds of one
    monotonic clock (``time.perf_counter``)."""
    return (ended - started) * 1000
