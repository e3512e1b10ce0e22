"""Errors raised by the enrichment core.

Hierarchy::

    EnrichError
    ├── ConfigError (ValueError)      a config value or argument is invalid; says which and what is allowed
    ├── InvalidURLError (ValueError)  an input URL cannot be fetched (bad syntax, unsupported scheme)
    ├── FetchError                    a fetch failed for good (after retries); engines raise it from transport errors
    │   └── FetchTimeoutError (TimeoutError)
    ├── ContentError                  a document is empty, truncated, malformed or not what it claims
    ├── NLPError                      the NLP stage failed on a text or could not load its model
    └── SinkError (OSError)           a sink cannot write; this one stops the run instead of degrading a record

Every error carries the URL it concerns (``url``) where one applies, as an attribute and not only in the message.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ContentError",
    "EnrichError",
    "FetchError",
    "FetchTimeoutError",
    "InvalidURLError",
    "NLPError",
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


class ContentError(EnrichError):
    """A document is empty, truncated, malformed or not what its headers claim."""


class NLPError(EnrichError):
    """The NLP stage failed on a text or could not load its model."""


class SinkError(EnrichError, OSError):
    """A sink cannot write. Unlike other errors this one stops the run: records must not be dropped silently."""
