"""Engine-agnostic crawl policy: adaptive concurrency, retries, per-domain limits, robots.txt and address checks.

Engines report outcomes and obey decisions; ``docs/hostile-web.md`` describes how each engine drives them.
"""

from __future__ import annotations

from enrich.errors import BlockedAddressError, CircuitOpenError, RefusedError, RobotsDisallowedError
from enrich.policy.addresses import AddressPolicy, address_kind, is_public_address, refusal_message
from enrich.policy.aimd import AdaptiveLimiter, AIMDController
from enrich.policy.domains import DomainPolicy, domain_of
from enrich.policy.retry import RetryPolicy, failure_message, http_error, is_transient_error, parse_retry_after
from enrich.policy.robots import RobotsPolicy, robots_url, site_of

__all__ = [
    "AIMDController",
    "AdaptiveLimiter",
    "AddressPolicy",
    "BlockedAddressError",
    "CircuitOpenError",
    "DomainPolicy",
    "RefusedError",
    "RetryPolicy",
    "RobotsDisallowedError",
    "RobotsPolicy",
    "address_kind",
    "domain_of",
    "failure_message",
    "http_error",
    "is_public_address",
    "is_transient_error",
    "parse_retry_after",
    "refusal_message",
    "robots_url",
    "site_of",
]
