"""Scrapy's and Twisted's download failures, worded as the async engine words them
(:mod:`enrich.policy.fetching`).

Used by the spider (a URL's failure record), the policy middleware (the reason of an open circuit) and the retry
middleware (what a queued retry was for). The wording itself (``Fetch failed after 3 attempts: ...``) is
:func:`enrich.policy.failure_message`'s, shared with the async engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
)
from twisted.internet.error import TimeoutError as TxTimeoutError

from enrich.errors import FetchError, FetchTimeoutError
from enrich.policy import failure_message, fetching

if TYPE_CHECKING:
    from twisted.python.failure import Failure

    from enrich.config import EnrichConfig
    from enrich.stages import WorkItem

__all__ = ["TIMEOUTS", "FetchAborted", "failure_reason", "fetch_error"]

TIMEOUTS: tuple[type[BaseException], ...] = (DownloadTimeoutError, TxTimeoutError, TCPTimedOutError, TimeoutError)
"""Transport failures that are timeouts: a congestion signal for the site, unlike a refused connection."""


class FetchAborted(IgnoreRequest):
    """A request that ends with one of our errors instead of a response: a policy refusal (robots.txt, circuit,
    address) or a final fetch error (a redirect to a non-HTTP URL). The spider's errback writes ``error``.

    Args:
        error: the error of the URL's record.
        record: the record to write instead, when the URL has a better one (a retry refused by an open circuit
            keeps the answer it retried, as in the async engine).
    """

    def __init__(self, error: FetchError, *, record: WorkItem | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.record = record


def fetch_error(failure: Failure, *, url: str, attempts: int, config: EnrichConfig) -> FetchError:
    """Translate a Scrapy/Twisted download failure into our error, worded as the async engine words it
    (:func:`enrich.policy.failure_message`): ``Fetch failed after 3 attempts: Connection refused``.

    A :class:`~crawler.scrapy_mode.middlewares.FetchAborted` carries its error already (a policy refusal or a
    final error such as a redirect to a non-HTTP URL); it is returned as it is, with the input URL.
    """
    exc = failure.value
    if isinstance(exc, FetchAborted):
        exc.error.url = url
        return exc.error
    reason = failure_reason(exc, url=url, config=config)
    if isinstance(exc, TIMEOUTS):
        return FetchTimeoutError(failure_message(attempts, reason), url=url, attempts=attempts)
    return FetchError(failure_message(attempts, reason), url=url, attempts=attempts)


def failure_reason(exc: BaseException | None, *, url: str, config: EnrichConfig) -> str:
    """What went wrong in one attempt, worded as the async engine words it (``Connection refused``,
    ``Timeout after 30s``...): the reason of a failure record, and of an open circuit."""
    if isinstance(exc, TIMEOUTS):
        return fetching.timeout(config.fetch.timeout_s)
    if isinstance(exc, (DownloadConnectionRefusedError, ConnectionRefusedError)):
        return fetching.REFUSED
    if isinstance(exc, (CannotResolveHostError, DNSLookupError)):
        return fetching.dns_failure(urlsplit(url).hostname or url)
    if isinstance(exc, DownloadCancelledError):
        return "Download cancelled"
    if isinstance(exc, (ResponseDataLossError, DownloadFailedError)):
        return fetching.BODY_DROPPED
    if isinstance(exc, (ConnectionLost, ConnectionDone)):
        return fetching.DISCONNECTED
    if isinstance(exc, IgnoreRequest) and "redirect" in str(exc):
        return fetching.too_many_redirects(config.fetch.max_redirects)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
