"""Downloader middlewares of Scrapy mode: the hostile-web policies of :mod:`enrich.policy`, driven by Scrapy.

The decisions are the shared policy objects' and the shared frontier's (the async engine drives the very same
classes); these middlewares only put the calls where Scrapy lets them in (``docs/hostile-web.md``, "Policy
design"). *Which* request goes next, and when (per-site cap, ``Crawl-delay``, backoff, circuit), is the frontier's,
behind :class:`~crawler.scrapy_mode.scheduler.FrontierScheduler`; nothing here waits for a site.

* :class:`PolicyMiddleware` (before Scrapy's redirect and retry middlewares on the way back, so it sees every
  attempt and every redirect hop): the address filter (:class:`~enrich.policy.addresses.AddressPolicy`, after DNS
  resolution), robots.txt (:class:`~enrich.policy.robots.RobotsPolicy`, fetched through Scrapy's own downloader)
  and its ``Crawl-delay`` (told to the frontier), an open circuit's refusal, the check that a redirect stays on
  HTTP(S), and each attempt's outcome reported to the frontier (releasing the request's lease).
* :class:`~crawler.scrapy_mode.retry.BackoffRetryMiddleware` (re-exported here): Scrapy's retries with the async
  engine's statuses and backoff (the retry waits in the frontier).
* the size cap and capped decompression live in :mod:`crawler.scrapy_mode.bodies`.

A request that a policy refuses, or that ends with one of our final errors, raises :class:`FetchAborted`; the
spider's errback writes the error it carries as the URL's record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urljoin, urlsplit

from scrapy import signals
from scrapy.exceptions import DownloadConnectionRefusedError, DownloadTimeoutError, IgnoreRequest
from scrapy.http import Request, Response
from scrapy.utils.httpobj import urlparse_cached

from crawler.scrapy_mode.bodies import MAX_BYTES_META
from crawler.scrapy_mode.config import ENGINE, run_of
from crawler.scrapy_mode.failures import TIMEOUTS, FetchAborted, failure_reason
from crawler.scrapy_mode.responses import INPUT_URL_META, STARTED_META, attempts_of, input_url
from crawler.scrapy_mode.retry import (
    HTTP_NOTE_META,
    LAST_REASON_META,
    LAST_STATUS_META,
    BackoffRetryMiddleware,
    last_outcome_record,
)
from crawler.scrapy_mode.scheduler import CIRCUIT_META, LEASE_META, RETRY_AT_META, scheduler_of
from enrich.errors import BlockedAddressError, CircuitOpenError, FetchError
from enrich.frontier import Lease, domain_of, outcome_of
from enrich.policy import REDIRECT_STATUSES, failure_message, fetching
from enrich.policy.addresses import AddressPolicy, address_kind
from enrich.policy.robots import RobotsPolicy

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from crawler.scrapy_mode.scheduler import FrontierScheduler
    from enrich.config import EnrichConfig

__all__ = [
    "HTTP_NOTE_META",
    "INPUT_URL_META",
    "LAST_REASON_META",
    "LAST_STATUS_META",
    "POLICY_STATS",
    "RETRY_AT_META",
    "ROBOTS_META",
    "BackoffRetryMiddleware",
    "FetchAborted",
    "PolicyMiddleware",
    "attempts_of",
    "last_outcome_record",
]

logger = logging.getLogger(__name__)

ROBOTS_META = "enrich_robots"
"""Request meta flag of robots.txt fetches: the policies let them through (they are part of a policy check)."""

ROBOTS_MAX_BYTES = 500 * 1024
"""robots.txt bytes downloaded; the policy parses at most its own ``MAX_ROBOTS_BYTES`` (512 KiB) of them."""

ROBOTS_MAX_REDIRECTS = 5
"""Redirects a robots.txt fetch follows (RFC 9309 asks for at least five)."""

DOWNLOAD_SLOT_META = "download_slot"
"""Scrapy's request meta key naming the download slot (``Downloader.DOWNLOAD_SLOT``)."""

HTTP_SCHEMES = frozenset({"http", "https"})

POLICY_STATS = "enrich/policies"
"""Crawler stats key: the policies' and the frontier's figures (:meth:`PolicyMiddleware.stats`), set when the
spider closes; the sink pipeline puts them in the run's stats."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class PolicyMiddleware:
    """The per-request policy gate and the per-attempt outcome reports, in the order of the async engine's request.

    Before each attempt (``process_request``): write an open circuit's refusal (the scheduler flagged the request),
    refuse a non-public target (after resolving its name), refuse what robots.txt forbids (naming the root cause:
    a host that refused robots.txt's connection gets that failure), then tell the frontier the site's
    ``Crawl-delay``. Nothing waits here: the frontier handed the request out because its site may start one now.

    After each attempt, the request's lease goes back to the frontier with the outcome: a response's status
    (``Retry-After`` and time to first byte included; 429/503 back the site off), a transport failure or timeout.
    A refusal releases it without an outcome. Scrapy's retry and redirect middlewares re-schedule retries and hops
    through the scheduler, so each passes here again under its own site's rules; an open redirect to a private
    address is refused like a direct one.

    Args:
        crawler: the running crawler (robots.txt is fetched with its engine; the frontier is its scheduler's).
        addresses: the address filter.
        robots: robots.txt rules; its fetcher should be :meth:`fetch_robots`.
        connect_timeout_s: time allowed for resolving a host name.
        config: the run's config, for the wording of a failure in an open circuit's reason.
    """

    def __init__(
        self,
        *,
        crawler: Crawler,
        addresses: AddressPolicy,
        robots: RobotsPolicy,
        connect_timeout_s: float,
        config: EnrichConfig | None = None,
    ) -> None:
        self.crawler = crawler
        self.addresses = addresses
        self.robots = robots
        self.connect_timeout_s = connect_timeout_s
        self.config = config

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        config = run_of(crawler).config
        holder: list[PolicyMiddleware] = []

        async def fetch_robots(url: str) -> tuple[int, str]:
            return await holder[0].fetch_robots(url)

        middleware = cls(
            crawler=crawler,
            addresses=AddressPolicy.from_config(config.politeness),
            robots=RobotsPolicy.from_config(config.politeness, config.fetch, fetch_robots=fetch_robots),
            connect_timeout_s=config.fetch.connect_timeout_s,
            config=config,
        )
        holder.append(middleware)
        crawler.signals.connect(middleware.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(middleware.request_dropped, signal=signals.request_dropped)
        if crawler.stats is not None:
            crawler.stats.set_value("enrich/robots_enabled", middleware.robots.enabled)
            crawler.stats.set_value("enrich/allow_private_addresses", middleware.addresses.allow_private)
        return middleware

    @property
    def scheduler(self) -> FrontierScheduler | None:
        """The frontier's scheduler (built when the spider opens, after this middleware); ``None`` if another
        scheduler is configured, in which case no per-site rules apply beyond Scrapy's own."""
        return scheduler_of(self.crawler)

    def _release(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Give the request's lease back to the frontier (with an outcome, or none); only the first call counts."""
        lease = request.meta.pop(LEASE_META, None)
        scheduler = self.scheduler
        if isinstance(lease, Lease) and scheduler is not None:
            scheduler.frontier.release(lease, *args, **kwargs)

    # --- before an attempt -----------------------------------------------------------------------------------

    async def process_request(self, request: Request) -> None:
        """Let the request through (``None``), or refuse it.

        Raises:
            FetchAborted: carrying ``CircuitOpenError``, ``BlockedAddressError``, ``RobotsDisallowedError`` or the
                transport failure that made robots.txt unreachable.
        """
        if request.meta.get(ROBOTS_META):
            # robots.txt and each of its redirect hops are checked like pages (address here, scheme on the answer);
            # they are part of a policy check, so robots.txt and the frontier do not apply to them
            await self._check_address(request)
            return
        # the URL's fetch starts with its first attempt (a retry and a redirect hop copy the meta): fetch_duration_ms
        request.meta.setdefault(STARTED_META, time.perf_counter())
        refusal = request.meta.pop(CIRCUIT_META, None)
        if isinstance(refusal, str):  # the frontier refused it: the site's circuit is open; no slot is held
            circuit = CircuitOpenError(refusal, url=input_url(request), domain=domain_of(request.url))
            retried = LAST_STATUS_META in request.meta or LAST_REASON_META in request.meta
            raise FetchAborted(circuit, record=last_outcome_record(request, engine=ENGINE) if retried else None)
        url = request.url
        # a redirect hop inherits the meta of the request it came from, download slot included: put it in the slot
        # of its own host, so that slot's pacing applies to it
        request.meta[DOWNLOAD_SLOT_META] = urlparse_cached(request).hostname or ""
        try:
            await self._check_address(request)
            error = await self.robots.refusal(url, record_url=input_url(request))
            if error is not None:
                raise FetchAborted(error)
            crawl_delay = await self.robots.crawl_delay(url)
        except BaseException:
            self._release(request)  # no attempt was made: the refusal says nothing about the site's health
            raise
        scheduler = self.scheduler
        spacing = crawl_delay or 0.0
        if scheduler is not None:
            if scheduler.frontier.set_rules(url, crawl_delay):
                scheduler.wake()  # the site's rules are known: more of its requests may be ready now
            spacing = scheduler.frontier.site(url).min_interval  # the Crawl-delay with the frontier's margin
            if scheduler.frontier.gate is not None:
                # a distributed worker: the shared gate spaces the starts of all workers from the moment each
                # request reaches the downloader (RedisFrontierScheduler stamps it then); a slot delay on top
                # would only move this worker's starts away from the moments it stamped
                spacing = 0.0
        self._pace_download_slot(request, spacing)

    def _pace_download_slot(self, request: Request, seconds: float) -> None:
        """Space request starts on Scrapy's download slot of the domain too (its ``delay``, without jitter).

        The frontier spaces the moments requests are handed out; the download slot spaces the moments they go on
        the wire, so time spent in between (address and robots.txt checks) cannot bring two starts closer than the
        Crawl-delay.
        """
        downloader = self.crawler.engine.downloader
        download_slot = downloader.slots.get(downloader.get_slot_key(request))
        if download_slot is not None:
            download_slot.delay = seconds

    async def _check_address(self, request: Request) -> None:
        if self.addresses.allow_private:
            return
        parts = urlparse_cached(request)
        host = parts.hostname or ""
        reason = self.addresses.check_host(host)
        address = host
        if reason is None and not _is_ip(host):
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    infos = await loop.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)
            except (OSError, TimeoutError):
                return  # the transport meets the same DNS failure and reports it as the fetch error
            resolved = [str(info[4][0]) for info in infos]
            reason = self.addresses.check_addresses(host, resolved)
            address = next((ip for ip in resolved if address_kind(ip) is not None), "")
        if reason is not None:
            raise FetchAborted(BlockedAddressError(reason, url=input_url(request), host=host, address=address))

    async def fetch_robots(self, url: str) -> tuple[int, str]:
        """The robots.txt transport of :class:`RobotsPolicy`: Scrapy's downloader (its middlewares, User-Agent,
        timeout and decompression), one attempt, up to :data:`ROBOTS_MAX_REDIRECTS` redirects, cut at
        :data:`ROBOTS_MAX_BYTES`. It does not go through the scheduler: it is part of the request that asked.

        Raises:
            TimeoutError: the fetch timed out (worded as the async engine's ``(TimeoutError)``).
            ConnectionRefusedError: the host refused the connection.
            Exception: any other transport failure, as Scrapy raised it.
        """
        request = Request(
            url,
            dont_filter=True,
            meta={
                ROBOTS_META: True,
                MAX_BYTES_META: ROBOTS_MAX_BYTES,
                "dont_retry": True,
                "redirect_ttl": ROBOTS_MAX_REDIRECTS,
            },
        )
        try:
            response = await self.crawler.engine.download_async(request)
        except DownloadTimeoutError as exc:
            raise TimeoutError from exc
        except DownloadConnectionRefusedError as exc:
            raise ConnectionRefusedError(fetching.REFUSED) from exc
        except FetchAborted:
            raise  # a hop refused by our checks (its message says why)
        except Exception as exc:  # worded as the async engine words it: the URLs' records quote it
            if self.config is None:
                raise
            raise ConnectionError(failure_reason(exc, url=url, config=self.config)) from exc
        return response.status, response.body.decode("utf-8", errors="replace")

    # --- after an attempt ------------------------------------------------------------------------------------

    async def process_response(self, request: Request, response: Response) -> Response:
        """Report the answer to the frontier, then refuse a redirect that leaves HTTP(S).

        Raises:
            FetchAborted: a redirect to ``ftp:``, ``file:``, ``javascript:``, ``data:``...; final, as in the async
                engine: ``Fetch failed after 1 attempt: Redirect to a non-HTTP URL: file:///etc/passwd``.
        """
        retry_after = response.headers.get("Retry-After")
        latency = request.meta.get("download_latency")
        self._release(
            request,
            outcome_of(response.status),
            ttfb_s=float(latency) if isinstance(latency, (int, float)) else None,
            status=response.status,
            retry_after=retry_after.decode("latin-1") if retry_after else None,
            reason=f"HTTP {response.status}",
        )
        location = response.headers.get("Location")
        if response.status in REDIRECT_STATUSES and location and not request.meta.get("dont_redirect"):
            target = location.decode("latin-1").strip()
            if urlsplit(urljoin(request.url, target)).scheme.lower() not in HTTP_SCHEMES:
                attempts = attempts_of(request.meta)
                reason = fetching.non_http_redirect(target)
                raise FetchAborted(FetchError(failure_message(attempts, reason), url=input_url(request)))
        return response

    async def process_exception(self, request: Request, exception: BaseException) -> None:
        """Report a transport failure or timeout of an attempt; a refusal (``IgnoreRequest``) is no attempt."""
        if LEASE_META not in request.meta:
            return
        if isinstance(exception, IgnoreRequest):
            self._release(request)
            return
        timed_out = isinstance(exception, TIMEOUTS)
        reason = failure_reason(exception, url=request.url, config=self.config) if self.config else ""
        self._release(request, outcome_of(None, timed_out=timed_out), reason=reason)

    def request_dropped(self, request: Request) -> None:
        """A request Scrapy dropped (not scheduled): release what it holds, if anything."""
        self._release(request)

    async def spider_closed(self) -> None:
        """Leave the figures in the crawler's stats (:data:`POLICY_STATS`), then close robots.txt's fetches."""
        if self.crawler.stats is not None:
            self.crawler.stats.set_value(POLICY_STATS, self.stats())
        await self.robots.close()

    def stats(self) -> dict[str, object]:
        """The policies' counts for the run's stats (``robots.enabled`` says whether robots.txt was obeyed), and
        the frontier's (``backoffs``, ``open_circuits``, ``peak_in_flight_per_site``...)."""
        scheduler = self.scheduler
        out: dict[str, object] = {"robots": self.robots.stats(), "addresses": self.addresses.stats()}
        if scheduler is not None:
            out["frontier"] = scheduler.stats()
        return out
