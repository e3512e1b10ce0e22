"""The aiohttp transport: one session per run, one request per call (no redirects followed, no retries), bodies
streamed to the size cap, addresses checked after DNS and for IP literals.

What to fetch next, when to retry and where a redirect leads are decided by the frontier and the crawl loop
(:mod:`crawler.async_engine.crawl`); the fetcher only does I/O and translation. aiohttp errors leave it as they
are (the crawl loop words them with :func:`describe_error`), an address refusal as
:class:`~enrich.errors.BlockedAddressError`.

With a :class:`~enrich.warc.WarcWriter`, every request it makes (pages, redirect hops, robots.txt) is archived as
it went over the wire: the session then leaves bodies as received (``auto_decompress=False``), the fetcher keeps
those bytes for the WARC record and decodes a copy itself, capped like aiohttp's decoding
(:func:`enrich.codings.decompress_capped`). Without one, aiohttp decodes as usual and nothing else changes. A WARC
write failure leaves as :class:`~enrich.errors.SinkError`, which stops the run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from crawler.async_engine.resolver import AddressCheckingResolver
from crawler.async_engine.tracing import ConnectTimer, connect_trace_config
from enrich.codings import decompress_capped
from enrich.errors import BlockedAddressError, FetchError, FetchTimeoutError, SinkError
from enrich.policy import AddressPolicy, failure_message, fetching
from enrich.policy.fetching import REDIRECT_STATUSES
from enrich.urls import redact_url
from enrich.warc import Exchange

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from aiohttp.connector import Connection

    from enrich.config import FetchConfig, PolitenessConfig
    from enrich.warc import WarcWriter

__all__ = [
    "REDIRECT_STATUSES",
    "TRANSPORT_ERRORS",
    "AiohttpFetcher",
    "Answer",
    "RedirectProblem",
    "describe_error",
    "follow_location",
    "split_auth",
    "translate_error",
]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""Read size while streaming a body: large enough to keep per-chunk overhead low, small enough to stop near the cap."""


ROBOTS_MAX_REDIRECTS = 5
"""Redirects followed for robots.txt (RFC 9309 asks for at least five)."""

ROBOTS_MAX_BYTES = 500 * 1024
"""robots.txt bytes read; the policy parses at most :data:`enrich.policy.robots.MAX_ROBOTS_BYTES` of them."""

MAX_BLOCKED_HOSTS = 10_000
"""Hosts remembered as refused while fetching their robots.txt (so their URLs get the address refusal)."""

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    TimeoutError,
    OSError,
)
"""Errors of the connection itself, which a new attempt may not meet. Other ``ClientError`` s and redirect problems
give the same answer every time, so they are final at once."""


class RedirectProblem(Exception):
    """A redirect that is not followed (loop, too many, non-HTTP or invalid target): final, the same every time."""

    def __init__(self, reason: str, *, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def describe_error(exc: BaseException, *, timeout_s: float | None = None, max_redirects: int | None = None) -> str:
    """A short reason for people, e.g. ``Connection timeout`` or ``Connection refused``."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "Connection timeout"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "Read timeout"
    if isinstance(exc, TimeoutError):
        return fetching.timeout(timeout_s) if timeout_s is not None else "Timeout"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return fetching.dns_failure(exc.host)
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return fetching.REFUSED
        return f"Cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return fetching.DISCONNECTED
    if isinstance(exc, aiohttp.ClientPayloadError):
        return fetching.BODY_DROPPED
    if isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__ or exc, ConnectionResetError):
        return fetching.BODY_DROPPED
    if isinstance(exc, aiohttp.TooManyRedirects):
        return fetching.too_many_redirects(max_redirects) if max_redirects is not None else "Too many redirects"
    if isinstance(exc, aiohttp.NonHttpUrlRedirectClientError):
        return fetching.non_http_redirect(str(exc))
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


def split_auth(target: str) -> tuple[URL, dict[str, str] | None]:
    """The URL without ``user:password@`` and the ``Authorization`` header they stand for (sent to that origin
    only, so credentials never reach the host an open redirect points to)."""
    url = URL(target)
    if url.user is None and url.password is None:
        return url, None
    header = {"Authorization": fetching.basic_authorization(url.user or "", url.password or "")}
    return url.with_user(None), header


def follow_location(current: URL, location: str, status: int, *, redirects: int, max_redirects: int) -> URL:
    """The URL a redirect leads to, or a :class:`RedirectProblem` saying why it is not followed (final)."""
    joined = urljoin(str(current), location.strip())
    try:
        scheme = urlsplit(joined).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in {"http", "https"}:
        if scheme:
            raise RedirectProblem(fetching.non_http_redirect(location), status=status)
        raise RedirectProblem(fetching.invalid_redirect(location), status=status)
    if redirects >= max_redirects:
        raise RedirectProblem(fetching.too_many_redirects(max_redirects), status=status)
    try:
        target = URL(joined)
        valid = bool(target.host)
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise RedirectProblem(fetching.invalid_redirect(location), status=status)
    return target


class _WireResponse(aiohttp.ClientResponse):
    """A response that remembers the server's address: by the time a small body is read aiohttp has given its
    connection back, so the address is taken when the response starts (for ``WARC-IP-Address``)."""

    peer_ip: str | None = None

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if isinstance(peer, tuple) and peer:
            self.peer_ip = str(peer[0])
        return await super().start(connection)


@dataclass(slots=True)
class Answer:
    """One HTTP answer: a redirect (``location`` set, no body read) or a final answer with its body."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    ttfb_s: float
    """Seconds from sending the request to its headers: the latency signal of congestion control."""
    location: str | None = None
    truncated: bool = False
    connect_s: float = 0.0
    """Seconds of DNS lookup and connecting (part of ``ttfb_s``; 0 on a reused connection)."""
    body_s: float = 0.0
    """Seconds reading the body."""


class AiohttpFetcher:
    """One aiohttp ``ClientSession`` per run (``async with``), one request per :meth:`request` call.

    Args:
        max_connections: connector-wide connection limit.
        per_host_limit: connections per host; 0 means no limit.
        dns_ttl_s: DNS cache lifetime; 0 disables the cache.
        timeout_s: total time of one request, body included (the caller applies it around the call).
        connect_timeout_s: time to open a connection.
        max_response_bytes: bodies past this (after decompression) are cut and flagged ``truncated``.
        user_agent: the ``User-Agent`` header.
        addresses: refuses non-public targets (after DNS and for IP literals); ``None`` allows every address.
        warc: archives every exchange (opened and closed with the fetcher); ``None`` archives nothing.
        clock: monotonic seconds, for time to first byte.
        wall_clock: seconds since the epoch, for the WARC records' dates.
    """

    def __init__(
        self,
        *,
        max_connections: int = 50,
        per_host_limit: int = 16,
        dns_ttl_s: float = 300.0,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_response_bytes: int = 10 * 1024 * 1024,
        user_agent: str = "webenrich",
        addresses: AddressPolicy | None = None,
        warc: WarcWriter | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_connections = max_connections
        self.per_host_limit = per_host_limit
        self.dns_ttl_s = dns_ttl_s
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_response_bytes = max_response_bytes
        self.user_agent = user_agent
        self.addresses = addresses
        self.warc = warc
        self._clock = clock
        self._wall_clock = wall_clock
        self._session: aiohttp.ClientSession | None = None
        self._blocked_hosts: OrderedDict[str, BlockedAddressError] = OrderedDict()
        self.truncated = 0
        """Bodies cut at the size cap during this fetcher's life."""

    @classmethod
    def from_config(
        cls, fetch: FetchConfig, *, politeness: PolitenessConfig | None = None, warc: WarcWriter | None = None
    ) -> AiohttpFetcher:
        """A fetcher for ``fetch``; with ``politeness``, its address policy too; with ``warc``, archiving."""
        return cls(
            max_connections=fetch.max_concurrency,
            per_host_limit=fetch.per_host_limit,
            dns_ttl_s=fetch.dns_ttl_s,
            timeout_s=fetch.timeout_s,
            connect_timeout_s=fetch.connect_timeout_s,
            max_response_bytes=fetch.max_response_bytes,
            user_agent=fetch.full_user_agent,
            addresses=AddressPolicy.from_config(politeness) if politeness is not None else None,
            warc=warc,
        )

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("AiohttpFetcher is already open")
        if self.warc is not None:
            await self.warc.open()  # a folder that cannot be written fails the run before any fetch
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
            # The total limit of an attempt is applied by the caller around the whole request and body.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
            headers={"User-Agent": self.user_agent},
            raise_for_status=False,
            # Cookies from millions of hostile hosts would only grow memory; enrichment needs none.
            cookie_jar=aiohttp.DummyCookieJar(),
            # A WARC record keeps the body as sent; the fetcher then decodes a copy itself (see _decode).
            auto_decompress=self.warc is None,
            response_class=_WireResponse if self.warc is not None else aiohttp.ClientResponse,
            trace_configs=[connect_trace_config()],
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self.warc is not None:
            try:
                await self.warc.close()
            except SinkError:
                if exc is None:
                    raise
                # the run's own error is the one to report
                logger.error("closing the WARC file after a failed run failed too", exc_info=True)

    # --- addresses ---------------------------------------------------------------------------------------------

    def check_literal(self, url: str, host: str | None) -> None:
        """Refuse an IP-literal host that is not public (names are judged by the resolver).

        Raises:
            BlockedAddressError: the host is a non-public IP literal and private addresses are not allowed.
        """
        if self.addresses is None or self.addresses.allow_private or not host:
            return
        reason = self.addresses.check_host(host)
        if reason is not None:
            raise BlockedAddressError(reason, url=url, host=host.strip("[]"), address=host.strip("[]"))

    def remember_blocked(self, exc: BlockedAddressError) -> None:
        self._blocked_hosts[exc.host] = exc
        self._blocked_hosts.move_to_end(exc.host)
        while len(self._blocked_hosts) > MAX_BLOCKED_HOSTS:
            self._blocked_hosts.popitem(last=False)

    def blocked(self, host: str | None) -> BlockedAddressError | None:
        """The refusal met for ``host`` while fetching its robots.txt, if any (its URLs get that refusal)."""
        return self._blocked_hosts.get(host or "")

    # --- requests ----------------------------------------------------------------------------------------------

    async def fetch_robots(self, url: str) -> tuple[int, str]:
        """The robots.txt transport of :class:`~enrich.policy.RobotsPolicy`: ``(status, text)``, following up to
        5 redirects by hand (each hop's scheme and address checked like a page's), reading at most
        :data:`ROBOTS_MAX_BYTES`.

        Transport failures leave as builtin errors named like Scrapy mode's (``ConnectionRefusedError: Connection
        refused``, ``TimeoutError``), since the policy quotes them in the records of the site's URLs.

        Raises:
            ConnectionError, TimeoutError, OSError: transport failures (the policy reads them as unreachable).
            BlockedAddressError: the site's address (or a hop's) is refused; remembered for the host.
        """
        current = URL(url)
        try:
            async with asyncio.timeout(self.timeout_s):
                for redirects in range(ROBOTS_MAX_REDIRECTS + 1):
                    answer = await self.request(current)
                    if answer.location is None:
                        return answer.status, answer.body[:ROBOTS_MAX_BYTES].decode("utf-8", "replace")
                    current = follow_location(
                        current,
                        answer.location,
                        answer.status,
                        redirects=redirects,
                        max_redirects=ROBOTS_MAX_REDIRECTS,
                    )
                raise ConnectionError(fetching.too_many_redirects(ROBOTS_MAX_REDIRECTS))
        except SinkError:
            raise  # the WARC file cannot be written: not a property of the site; the run stops
        except BlockedAddressError as exc:
            self.remember_blocked(
                BlockedAddressError(str(exc), host=urlsplit(url).hostname or exc.host, address=exc.address)
            )
            raise
        except RedirectProblem as exc:
            raise ConnectionError(exc.reason) from exc
        except TimeoutError as exc:
            raise TimeoutError from exc
        except aiohttp.ClientConnectorError as exc:
            kind = type(exc.os_error) if isinstance(exc.os_error, ConnectionError) else ConnectionError
            raise kind(describe_error(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionError(describe_error(exc, max_redirects=ROBOTS_MAX_REDIRECTS)) from exc

    async def request(
        self,
        url: URL,
        *,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Answer:
        """One GET of ``url``, redirects not followed; the caller bounds it in time. ``on_sent`` is called once the
        request's headers are on the wire (not at all if it never gets there).

        With WARC output on, the exchange is archived once its body is read (a redirect's body too, which is
        otherwise left unread).

        Raises:
            BlockedAddressError: the host (literal or resolved) is not public and private addresses are off.
            aiohttp.ClientError, OSError, TimeoutError: transport failures.
            SinkError: the exchange could not be archived (WARC output on); the run should stop.
        """
        if self._session is None:
            raise RuntimeError("AiohttpFetcher.request() called outside 'async with'")
        self.check_literal(str(url), url.host)
        cap = max_bytes or self.max_response_bytes
        sent_at = self._wall_clock()
        sent = self._clock()
        timer = ConnectTimer(on_sent)
        async with self._session.get(url, allow_redirects=False, headers=headers, trace_request_ctx=timer) as response:
            ttfb = self._clock() - sent
            received_at = sent_at + ttfb
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location is not None:
                if self.warc is not None:
                    raw, cut = await self._read(response, str(url), cap)
                    await self._archive(response, raw, cut, sent_at=sent_at, received_at=received_at)
                answer = Answer(str(url), response.status, _headers(response), b"", ttfb, location=location)
                answer.connect_s = timer.connect_s
                return answer
            body, truncated = await self._read(response, str(url), cap)
            body_s = self._clock() - sent - ttfb
            if self.warc is not None:
                await self._archive(response, body, truncated, sent_at=sent_at, received_at=received_at)
                body, cut = self._decode(response, body, cap)
                if cut and not truncated:
                    truncated = True
                    self.truncated += 1
                    where = redact_url(str(url))
                    logger.warning("decompressed body of %s cut at %d bytes", where, cap, extra={"url": where})
            return Answer(
                redact_url(str(response.url)),
                response.status,
                _headers(response),
                body,
                ttfb,
                truncated=truncated,
                connect_s=timer.connect_s,
                body_s=body_s,
            )

    async def _archive(
        self, response: aiohttp.ClientResponse, body: bytes, truncated: bool, *, sent_at: float, received_at: float
    ) -> None:
        """Hand the exchange, as it went over the wire, to the WARC writer."""
        assert self.warc is not None
        version = response.version
        await self.warc.write(
            Exchange(
                url=str(response.request_info.url),
                method=response.request_info.method,
                request_headers=list(response.request_info.headers.items()),
                status=response.status,
                reason=response.reason or "",
                http_version=f"HTTP/{version.major}.{version.minor}" if version is not None else "HTTP/1.1",
                response_headers=[
                    (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers
                ],
                body=body,
                peer_ip=response.peer_ip if isinstance(response, _WireResponse) else None,
                sent_at=sent_at,
                received_at=received_at,
                truncated=truncated,
            )
        )

    def _decode(self, response: aiohttp.ClientResponse, body: bytes, cap: int) -> tuple[bytes, bool]:
        """A body read as sent, decoded from its content coding as aiohttp would have, at most ``cap`` bytes of it.

        Raises:
            aiohttp.ClientPayloadError: the body is not in the coding it claims (aiohttp's own error and wording).
        """
        coding = response.headers.get("Content-Encoding", "").strip().lower()
        if not coding or coding == "identity":
            return body, False
        try:
            decoded, cut = decompress_capped(body, coding.encode("latin-1"), cap)
        except Exception as exc:  # zlib.error, brotli.error, zstd's errors: one meaning, a corrupt body
            raise aiohttp.ClientPayloadError(f"Can not decode content-encoding: {coding}") from exc
        return decoded, cut

    async def _read(self, response: aiohttp.ClientResponse, url: str, cap: int) -> tuple[bytes, bool]:
        """The body, streamed and cut at ``cap``; the flag says whether it was cut.

        aiohttp inflates compressed bodies in bounded steps as they are read, so a gzip bomb is cut at the cap
        like any other body without ever being inflated whole. With WARC output on, the body comes as sent (still
        compressed) and the cap applies to those bytes; :meth:`_decode` caps what they inflate to.
        """
        body = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            room = cap - len(body)
            if len(chunk) > room:
                body += chunk[:room]
                response.close()  # stop the download; the connection is not reused
                self.truncated += 1
                logger.warning("body of %s cut at %d bytes", redact_url(url), cap, extra={"url": url})
                return bytes(body), True
            body += chunk
        return bytes(body), False

    def stats(self) -> dict[str, object]:
        """The address policy's and the WARC writer's figures for the run summary."""
        figures: dict[str, object] = {}
        if self.addresses is not None:
            figures["addresses"] = self.addresses.stats()
        if self.warc is not None:
            figures["warc"] = self.warc.stats()
        return figures
