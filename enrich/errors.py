"""Errors raised by the enrichment core.

Hierarchy::

    EnrichError
    ├── ConfigError (ValueError)      a config value or argument is invalid; says which and what is allowed
    ├── InvalidURLError (ValueError)  an input URL cannot be fetched (bad syntax, unsupported scheme)
    ├── FetchError                    a fetch failed for good (after retries); engines raise it from transport errors
    │   ├── FetchTimeoutError (TimeoutError)
    │   └── RefusedError              a policy refused the URL before any request; never retried (attempts 0)
    │       ├── CircuitOpenError      the domain's circuit breaker is open
    │       ├── RobotsDisallowedError robots.txt forbids the URL, or is unreachable
    │       └── BlockedAddressError   the target resolves to a non-public address
    ├── ContentError                  a document is empty, truncated, malformed or not what it claims
    ├── NLPError                      the NLP stage failed on a text or could not load its model
    ├── DeadLetterError               workers died N times holding this URL (distributed mode): not tried again
    └── SinkError (OSError)           a sink cannot write; this one stops the run instead of degrading a record

Every error carries the URL it concerns (``url``) where one applies, as an attribute and not only in the message.
"""

from __future__ import annotations

__all__ = [
    "BlockedAddressError",
    "CircuitOpenError",
    "ConfigError",
    "ContentError",
    "DeadLetterError",
    "EnrichError",
    "FetchError",
    "FetchTimeoutError",
    "InvalidURLError",
    "NLPError",
    "RefusedError",
    "RobotsDisallowedError",
    "SinkError",
]


class EnrichError(Exception):
    """Base class of every error raised by this project."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ConfigError(EnrichError, ValueError):
    """A configuration value or command-line argument is invalid."""


class InvalidURLError(EnrichError, ValueError):
    """An input URL cannot be fetched: bad syntax or an unsupported scheme."""


class FetchError(EnrichError):
    """A fetch failed for good, after every allowed attempt."""

    def __init__(self, message: str, *, url: str | None = None, attempts: int = 1) -> None:
        super().__init__(message, url=url)
        self.attempts = attempts


class FetchTimeoutError(FetchError, TimeoutError):
    """A fetch timed out on its last attempt."""


class RefusedError(FetchError):
    """A policy refused the URL before any request was made; never retried."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, url=url, attempts=0)


class CircuitOpenError(RefusedError):
    """The domain's circuit breaker is open: its remaining URLs are not fetched until it half-opens."""

    def __init__(self, message: str, *, url: str | None = None, domain: str = "", retry_in_s: float = 0.0) -> None:
        super().__init__(message, url=url)
        self.domain = domain
        self.retry_in_s = retry_in_s


class RobotsDisallowedError(RefusedError):
    """robots.txt forbids the URL, or could not be read and so forbids the site for a while."""


class BlockedAddressError(RefusedError):
    """The target resolves to a private, loopback or link-local address and the config refuses those."""

    def __init__(self, message: str, *, url: str | None = None, host: str = "", address: str = "") -> None:
        super().__init__(message, url=url)
        self.host = host
        self.address = address


class ContentError(EnrichError):
    """A document is empty, truncated, malformed or not what its headers claim."""


class NLPError(EnrichError):
    """The NLP stage failed on a text or could not load its model."""


class DeadLetterError(EnrichError):
    """In a distributed job, the workers holding this URL died ``max_deliveries`` times: it is not fetched again."""


class SinkError(EnrichError, OSError):
    """A sink cannot write. Unlike other errors this one stops the run: records must not be dropped silently."""
