"""The aiohttp transport: one session per run, retries by :class:`~enrich.policy.RetryPolicy`, capped bodies,
and the hostile-web policies (``docs/hostile-web.md``) applied to every URL.

The fetcher only does I/O and translation. What to retry, how long to wait, how many requests may be in flight
(overall and per domain), whether robots.txt allows a URL and which addresses may be connected to are decided by
the policies it is given; aiohttp errors leave it as :class:`~enrich.errors.FetchError` or
:class:`~enrich.errors.FetchTimeoutError`, chained to the original with ``raise ... from``. Policy refusals leave
as :class:`~enrich.errors.RefusedError` subclasses with ``attempts == 0`` and are never retried.

Per URL::

    IP-literal host refused?          -> BlockedAddressError   (no connection made)
    robots.txt disallows it?          -> RobotsDisallowedError (BlockedAddressError if robots.txt was refused)
    domain circuit open?              -> CircuitOpenError
    crawl delay -> DomainPolicy.set_min_interval
    per attempt, holding a domain slot and a limiter slot, within fetch.timeout_s:
        request, following redirects by hand (each hop's scheme and address checked), body streamed to the cap
        transport error / timeout -> DomainPolicy.on_failure; answer -> DomainPolicy.on_response
    retry delay slept holding no slot
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol, Self
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from crawler.async_engine.resolver import AddressCheckingResolver
from enrich.errors import BlockedAddressError, CircuitOpenError, FetchError, FetchTimeoutError, RefusedError
from enrich.policy import (
    AddressPolicy,
    DomainPolicy,
    RetryPolicy,
    RobotsDisallowedError,
    RobotsPolicy,
    domain_of,
    failure_message,
)
from enrich.record import FetchedPage, utc_now_iso
from enrich.urls import redact_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from types import TracebackType

    from enrich.config import FetchConfig, PolitenessConfig
    from enrich.policy import AdaptiveLimiter

__all__ = ["AiohttpFetcher", "Fetcher", "describe_error", "translate_error"]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""Read size while streaming a body: large enough to keep per-chunk overhead low, small enough to stop near the cap."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

ROBOTS_MAX_REDIRECTS = 5
"""Redirects followed for robots.txt (RFC 9309 asks for at least five)."""

ROBOTS_MAX_BYTES = 500 * 1024
"""robots.txt bytes read; the policy parses at most :data:`enrich.policy.robots.MAX_ROBOTS_BYTES` of them."""

MAX_LOCATION_CHARS = 500
"""A hostile ``Location`` quoted in an error message is cut here: messages stay one readable line."""

MAX_BLOCKED_HOSTS = 10_000
"""Hosts remembered as refused while fetching their robots.txt (so their URLs get the address refusal)."""

_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    TimeoutError,
    OSError,
)
"""Errors of the connection itself, which a new attempt may not meet. Other ``ClientError`` s and redirect problems
give the same answer every time, so they are final at once."""


class _RedirectProblem(Exception):
    """A redirect that is not followed (loop, too many, non-HTTP or invalid target): final, the same every time."""

    def __init__(self, reason: str, *, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Fetcher(Protocol):
    """What the processor needs from a transport: an async context (one per run) and one call per URL."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def fetch(self, url: str, *, fetch_url: str | None = None) -> FetchedPage:
        """Fetch ``url`` with retries; return the final response whatever its status.

        Raises:
            FetchError: no response after every allowed attempt (``FetchTimeoutError`` when the last one timed out);
                a :class:`~enrich.errors.RefusedError` when a policy refused the URL before any request.
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
    if isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__ or exc, ConnectionResetError):
        return "Connection dropped while reading the body"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"Too many redirects (more than {max_redirects})" if max_redirects is not None else "Too many redirects"
    if isinstance(exc, aiohttp.NonHttpUrlRedirectClientError):
        return f"Redirect to a non-HTTP URL: {exc}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"Invalid URL: {redact_url(str(exc))}"
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


def _quote_location(location: str) -> str:
    text = redact_url(location)
    return text if len(text) <= MAX_LOCATION_CHARS else text[:MAX_LOCATION_CHARS] + "..."


def _split_auth(target: str) -> tuple[URL, dict[str, str] | None]:
    """The URL without ``user:password@`` and the ``Authorization`` header they stand for (sent to that origin
    only, so credentials never reach the host an open redirect points to)."""
    url = URL(target)
    if url.user is None and url.password is None:
        return url, None
    header = {"Authorization": aiohttp.encode_basic_auth(url.user or "", url.password or "")}
    return url.with_user(None), header


class AiohttpFetcher:
    """Fetches pages with one aiohttp ``ClientSession``, opened and closed by ``async with``.

    Each attempt holds a slot of the URL's domain (``domains``) and a slot of ``limiter`` (when given) from the
    request to the end of the body; backoff sleeps hold none, so a waiting retry does not block other URLs.
    ``on_attempt(success, duration_s)`` hears every attempt; success means no sign of overload (no connection
    error, timeout, 5xx or 429).

    Redirects are followed here, not by aiohttp, so that every hop is checked (scheme, IP-literal address) and
    ``max_redirects`` means what it says: ``n`` redirects are followed, the ``n+1``-th is an error.

    Args:
        max_connections: connector-wide connection limit.
        per_host_limit: connections per host; 0 means no limit.
        dns_ttl_s: DNS cache lifetime; 0 disables the cache.
        timeout_s: total time of one attempt: redirects, headers and body (a trickling server is cut here).
        connect_timeout_s: time to open a connection.
        max_redirects: redirects followed before giving up.
        max_response_bytes: bodies past this (after decompression) are cut and flagged ``truncated``.
        user_agent: the ``User-Agent`` header.
        retry: the retry policy.
        limiter: gates attempts; ``None`` leaves gating to the connector.
        domains: per-domain slots, backoff and circuit breaker; ``None`` applies none.
        robots: robots.txt rules; ``None`` fetches no robots.txt. Build it with :meth:`fetch_robots` as transport.
        addresses: refuses non-public targets (after DNS and for IP literals); ``None`` allows every address.
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
        domains: DomainPolicy | None = None,
        robots: RobotsPolicy | None = None,
        addresses: AddressPolicy | None = None,
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
        self.domains = domains
        self.robots = robots
        self.addresses = addresses
        self._on_attempt = on_attempt
        self._sleep = sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._blocked_hosts: OrderedDict[str, BlockedAddressError] = OrderedDict()
        self.truncated = 0
        """Bodies cut at the size cap during this fetcher's life."""

    @classmethod
    def from_config(
        cls,
        fetch: FetchConfig,
        *,
        politeness: PolitenessConfig | None = None,
        limiter: AdaptiveLimiter | None = None,
        on_attempt: Callable[[bool, float], None] | None = None,
        retry: RetryPolicy | None = None,
    ) -> AiohttpFetcher:
        """A fetcher for ``fetch``; with ``politeness``, also its robots, per-domain and address policies."""
        fetcher = cls(
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
            domains=DomainPolicy.from_config(politeness, fetch) if politeness is not None else None,
            addresses=AddressPolicy.from_config(politeness) if politeness is not None else None,
            on_attempt=on_attempt,
        )
        if politeness is not None:
            fetcher.robots = RobotsPolicy.from_config(politeness, fetch, fetch_robots=fetcher.fetch_robots)
        return fetcher

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("AiohttpFetcher is already open")
        resolver = None
        if self.addresses is not None and not self.addresses.allow_private:
            resolver = AddressCheckingResolver(policy=self.addresses)
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            limit_per_host=self.per_host_limit,
            use_dns_cache=self.dns_ttl_s > 0,
            ttl_dns_cache=int(self.dns_ttl_s) if self.dns_ttl_s > 0 else None,
            resolver=resolver,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # The total limit of an attempt is applied around the whole attempt (all hops and the body).
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
            headers={"User-Agent": self.user_agent},
            raise_for_status=False,
            # Cookies from millions of hostile hosts would only grow memory; enrichment needs none.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.robots is not None:
            await self.robots.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # --- policies ----------------------------------------------------------------------------------------------

    def _check_literal(self, url: str, host: str | None) -> None:
        """Refuse an IP-literal host that is not public (names are judged by the resolver)."""
        if self.addresses is None or self.addresses.allow_private or not host:
            return
        reason = self.addresses.check_host(host)
        if reason is not None:
            raise BlockedAddressError(reason, url=url, host=host.strip("[]"), address=host.strip("[]"))

    def _remember_blocked(self, exc: BlockedAddressError) -> None:
        self._blocked_hosts[exc.host] = exc
        self._blocked_hosts.move_to_end(exc.host)
        while len(self._blocked_hosts) > MAX_BLOCKED_HOSTS:
            self._blocked_hosts.popitem(last=False)

    async def _refusal(self, url: str, domain: str) -> RefusedError | None:
        """Why ``url`` must not be fetched at all (address, robots.txt, open circuit), or ``None``."""
        host = urlsplit(url).hostname
        try:
            self._check_literal(url, host)
        except BlockedAddressError as exc:
            return exc
        if self.robots is not None:
            reason = await self.robots.check(url)
            if reason is not None:
                blocked = self._blocked_hosts.get(host or "")
                if blocked is not None:  # robots.txt was not fetched because the host's address is refused
                    return BlockedAddressError(str(blocked), url=url, host=blocked.host, address=blocked.address)
                return RobotsDisallowedError(reason, url=url)
        if self.domains is not None:
            reason = self.domains.check(domain)
            if reason is not None:
                return CircuitOpenError(reason, url=url, domain=domain)
            if self.robots is not None:
                self.domains.set_min_interval(domain, await self.robots.crawl_delay(url))
        return None

    async def fetch_robots(self, url: str) -> tuple[int, str]:
        """The robots.txt transport of :class:`RobotsPolicy`: ``(status, text)``, following up to 5 redirects,
        with the run's User-Agent, reading at most :data:`ROBOTS_MAX_BYTES`.

        Transport failures leave as builtin errors named like Scrapy mode's (``ConnectionRefusedError: Connection
        refused``, ``TimeoutError``), since the policy quotes them in the records of the site's URLs.

        Raises:
            ConnectionError, TimeoutError, OSError: transport failures (the policy reads them as unreachable).
            BlockedAddressError: the site's address is refused (its URLs then get that refusal).
        """
        if self._session is None:
            raise RuntimeError("AiohttpFetcher.fetch_robots() called outside 'async with'")
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                self._session.get(url, allow_redirects=True, max_redirects=ROBOTS_MAX_REDIRECTS + 1) as response,
            ):
                body = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    body += chunk[: ROBOTS_MAX_BYTES - len(body)]
                    if len(body) >= ROBOTS_MAX_BYTES:
                        response.close()
                        break
                return response.status, bytes(body).decode("utf-8", "replace")
        except BlockedAddressError as exc:
            self._remember_blocked(exc)
            raise
        except TimeoutError as exc:
            raise TimeoutError from exc
        except aiohttp.ClientConnectorError as exc:
            kind = type(exc.os_error) if isinstance(exc.os_error, ConnectionError) else ConnectionError
            raise kind(describe_error(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionError(describe_error(exc, max_redirects=ROBOTS_MAX_REDIRECTS)) from exc

    # --- fetching ----------------------------------------------------------------------------------------------

    async def fetch(self, url: str, *, fetch_url: str | None = None) -> FetchedPage:
        """Fetch ``url`` (``fetch_url`` when it differs, e.g. with credentials), retrying as the policy says.

        Returns the final response whatever its status; ``fetch_duration_ms`` covers every attempt and backoff.

        Raises:
            RefusedError: a policy refused the URL (``BlockedAddressError``, ``RobotsDisallowedError``,
                ``CircuitOpenError``); nothing was fetched (for an address refused on a redirect hop, nothing
                from that hop) and ``attempts`` is 0.
            FetchError: no response after every allowed attempt, or a redirect problem (final at once).
            FetchTimeoutError: the last attempt timed out.
            RuntimeError: used outside ``async with``.
        """
        if self._session is None:
            raise RuntimeError("AiohttpFetcher.fetch() called outside 'async with'")
        target = fetch_url or url
        domain = domain_of(url)
        refusal = await self._refusal(url, domain)
        if refusal is not None:
            raise refusal
        started = self._clock()
        attempt = 0
        last: FetchedPage | FetchError | None = None
        while True:
            attempt += 1
            try:
                page = await self._attempt(url, target, domain, attempt, started)
            except CircuitOpenError as exc:
                # The circuit opened while this URL waited to retry: its last outcome is its record.
                if isinstance(last, FetchedPage):
                    return last
                if last is not None:
                    raise last from exc
                exc.url = url
                raise
            except RefusedError as exc:
                exc.url = url
                if isinstance(exc, BlockedAddressError):
                    self._remember_blocked(exc)
                raise
            except _TRANSPORT_ERRORS as exc:
                reason = describe_error(exc, timeout_s=self.timeout_s, max_redirects=self.max_redirects)
                error = translate_error(exc, url=url, attempts=attempt, reason=reason)
                if not self.retry.should_retry(None, error, attempt):
                    raise error from exc
                last = error
                delay = self.retry.delay(attempt)
                logger.debug("retrying %s in %.2fs after %s", url, delay, reason, extra={"url": url})
            except _RedirectProblem as exc:
                raise FetchError(failure_message(attempt, exc.reason), url=url, attempts=attempt) from exc
            except aiohttp.ClientError as exc:
                reason = describe_error(exc, timeout_s=self.timeout_s, max_redirects=self.max_redirects)
                raise FetchError(failure_message(attempt, reason), url=url, attempts=attempt) from exc
            else:
                if not self.retry.should_retry(page.status, None, attempt):
                    return page
                last = page
                delay = self.retry.delay(attempt, page.headers.get("retry-after"))
                logger.debug("retrying %s in %.2fs after HTTP %d", url, delay, page.status, extra={"url": url})
            await self._sleep(delay)

    @contextlib.asynccontextmanager
    async def _slots(self, domain: str) -> AsyncIterator[None]:
        """The domain's slot first (it may wait out a backoff), then the run-wide limiter's."""
        async with self.domains.slot(domain) if self.domains is not None else contextlib.nullcontext():
            limiter = self.limiter
            if limiter is not None:
                await limiter.acquire()
            try:
                yield
            finally:
                if limiter is not None:
                    limiter.release()

    async def _attempt(self, url: str, target: str, domain: str, attempt: int, started: float) -> FetchedPage:
        domains = self.domains
        async with self._slots(domain):
            attempt_started = self._clock()
            success = False
            try:
                async with asyncio.timeout(self.timeout_s):
                    page = await self._request(url, target, attempt, started)
            except _TRANSPORT_ERRORS:
                if domains is not None:
                    domains.on_failure(domain)
                raise
            except RefusedError:
                success = True  # a refused redirect hop says nothing about the server's load
                raise
            except _RedirectProblem as exc:
                success = True
                if domains is not None:
                    domains.on_response(domain, exc.status)
                raise
            else:
                success = not self.retry.is_retryable_status(page.status)
                if domains is not None:
                    domains.on_response(domain, page.status, page.headers.get("retry-after"))
                return page
            finally:
                if self._on_attempt is not None:
                    self._on_attempt(success, self._clock() - attempt_started)

    async def _request(self, url: str, target: str, attempt: int, started: float) -> FetchedPage:
        """One attempt: the request and its redirects, by hand, then the body of the final answer."""
        assert self._session is not None
        current, auth_header = _split_auth(target)
        origin = current.origin()
        hop_auth = auth_header
        redirects = 0
        while True:
            self._check_literal(url, current.host)
            async with self._session.get(current, allow_redirects=False, headers=hop_auth) as response:
                location = response.headers.get("Location")
                if response.status in REDIRECT_STATUSES and location is not None:
                    current, hop_auth = _split_auth(str(self._follow(current, location, response.status, redirects)))
                    if hop_auth is None and current.origin() == origin:
                        hop_auth = auth_header
                    redirects += 1
                    continue
                body, truncated = await self._read(response, url)
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

    def _follow(self, current: URL, location: str, status: int, redirects: int) -> URL:
        """The URL a redirect leads to, or a :class:`_RedirectProblem` saying why it is not followed."""
        joined = urljoin(str(current), location.strip())
        try:
            scheme = urlsplit(joined).scheme.lower()
        except ValueError:
            scheme = ""
        if scheme not in {"http", "https"}:
            if scheme:
                raise _RedirectProblem(f"Redirect to a non-HTTP URL: {_quote_location(location)}", status=status)
            raise _RedirectProblem(f"Invalid redirect URL: {_quote_location(location)}", status=status)
        if redirects >= self.max_redirects:
            raise _RedirectProblem(f"Too many redirects (more than {self.max_redirects})", status=status)
        try:
            target = URL(joined)
            valid = bool(target.host)
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise _RedirectProblem(f"Invalid redirect URL: {_quote_location(location)}", status=status)
        return target

    async def _read(self, response: aiohttp.ClientResponse, url: str) -> tuple[bytes, bool]:
        """The body (decompressed), streamed and cut at ``max_response_bytes``; the flag says whether it was cut.

        aiohttp inflates compressed bodies in bounded steps as they are read, so a gzip bomb is cut at the cap
        like any other body without ever being inflated whole.
        """
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

    # --- summary -----------------------------------------------------------------------------------------------

    def policy_stats(self) -> dict[str, object]:
        """The policies' figures for the run summary (``robots``, ``domains``, ``addresses``)."""
        stats: dict[str, object] = {"respect_robots": self.robots is not None and self.robots.enabled}
        if self.robots is not None:
            stats["robots"] = self.robots.stats()
        if self.domains is not None:
            stats["domains"] = self.domains.stats()
        if self.addresses is not None:
            stats["addresses"] = self.addresses.stats()
        return stats
