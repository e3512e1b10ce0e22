"""Engine-agnostic crawl policy: adaptive concurrency and retries. Engines report outcomes and obey decisions."""

from __future__ import annotations

from enrich.policy.aimd import AdaptiveLimiter, AIMDController
from enrich.policy.retry import RetryPolicy, failure_message, http_error, is_transient_error, parse_retry_after

__all__ = [
    "AIMDController",
    "AdaptiveLimiter",
    "RetryPolicy",
    "failure_message",
    "http_error",
    "is_transient_error",
    "parse_retry_after",
]
