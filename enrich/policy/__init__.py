"""Engine-agnostic crawl policy: retries, robots.txt and address checks.

Per-site limits, backoff, congestion control and the circuit breaker live in :mod:`enrich.frontier`, which decides
what is fetched next. Engines report outcomes and obey decisions; ``docs/hostile-web.md`` describes how.
"""

from __future__ import annotations

from enrich.errors import BlockedAddressError, CircuitOpenError, RefusedError, RobotsDisallowedError
from enrich.policy.addresses import AddressPolicy, address_kind, is_public_address, refusal_message
from enrich.policy.fetching import REDIRECT_STATUSES, basic_authorization, fetch_duration_ms
from enrich.policy.retry import RetryPolicy, failure_message, http_error, is_transient_error, parse_retry_after
from enrich.policy.robots import RobotsPolicy, robots_url, site_of

__all__ = [
    "REDIRECT_STATUSES",
    "AddressPolicy",
    "BlockedAddressError",
    "CircuitOpenError",
    "RefusedError",
    "RetryPolicy",
    "RobotsDisallowedError",
    "RobotsPolicy",
    "address_kind",
    "basic_authorization",
    "failure_message",
    "fetch_duration_ms",
    "http_error",
    "is_public_address",
    "is_transient_error",
    "parse_retry_after",
    "refusal_message",
    "robots_url",
    "site_of",
]
