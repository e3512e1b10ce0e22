"""robots.txt: fetched once per site, parsed with Protego, cached, obeyed by both engines.

The transport is injected: each engine passes an async callable ``fetch_robots(url) -> (status, text)`` that
fetches ``<scheme>://<host>:<port>/robots.txt`` with its own client (following up to 5 redirects, with the run's
User-Agent, cutting the body at :data:`MAX_ROBOTS_BYTES`) and raises on a transport error.

What an answer means (RFC 9309, section 2.3.1):

- **2xx**: parse the text; its rules apply.
- **4xx other than 429** ("unavailable"): no rules; everything is allowed.
- **429, 5xx, a transport error or a timeout** ("unreachable"): everything is **disallowed**, as the RFC requires,
  but only for :data:`UNREACHABLE_TTL_S`; the next URL of the site after that fetches robots.txt again. A site whose
  robots.txt keeps failing thus gets one robots.txt request per minute, not one per URL, and its URLs get error
  records (``RobotsDisallowedError``) instead of being fetched against its possible wishes. 429 is read as
  "unreachable", like Google does, since a site that rate-limits its robots.txt is overloaded.
- **anything else** (1xx, a 3xx left after the fetcher's redirects): "unavailable", everything is allowed.

Parsed and unavailable results are kept :data:`ROBOTS_TTL_S` (the RFC's 24 hours). At most one fetch per site is
in flight: concurrent callers await the same one. The cache holds at most ``max_sites`` sites, least recently used
dropped first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlsplit

from protego import Protego

from enrich.errors import FetchError, RobotsDisallowedError, SinkError
from enrich.urls import redact_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from enrich.config import FetchConfig, PolitenessConfig

__all__ = [
    "MAX_ROBOTS_BYTES",
    "ROBOTS_TTL_S",
    "UNREACHABLE_TTL_S",
    "RobotsDisallowedError",
    "RobotsFetcher",
    "RobotsPolicy",
    "RobotsRules",
    "robots_url",
    "site_of",
    "user_agent_token",
]

logger = logging.getLogger(__name__)


class RobotsFetcher(Protocol):
    """The engine's robots.txt transport: ``(status, text)`` of a URL; raises on a transport error or timeout."""

    def __call__(self, url: str, /) -> Awaitable[tuple[int, str]]: ...


ROBOTS_TTL_S = 24 * 3600.0
"""How long a parsed (or unavailable) robots.txt is trusted: RFC 9309 says no more than 24 hours."""

UNREACHABLE_TTL_S = 60.0
"""How long an unreachable robots.txt (5xx, 429, transport error) disallows the whole site before the next try.

Long enough that a failing site costs one extra request a minute, short enough that a site back from a brief outage
is crawled again within the same run."""

MAX_ROBOTS_BYTES = 512 * 1024
"""Text parsed from a robots.txt; RFC 9309 asks for at least 500 KiB. Longer files are cut here."""

MAX_SITES = 10_000
"""Sites whose robots.txt is cached; a parsed file is rarely more than a few KB."""

RobotsKind = Literal["parsed", "unavailable", "unreachable", "disabled"]


def site_of(url: str) -> str:
    """The site a robots.txt covers: ``scheme://host:port`` with the port always written and no credentials.

    Raises:
        ValueError: the URL has no scheme or host, or a bad port.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if not scheme or not host:
        raise ValueError(f"URL has no scheme or host: {redact_url(url)!r}")
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def robots_url(url: str) -> str:
    """The robots.txt URL of the site ``url`` belongs to (default ports left out)."""
    site = site_of(url)
    for default in (("http://", ":80"), ("https://", ":443")):
        if site.startswith(default[0]) and site.endswith(default[1]):
            site = site[: -len(default[1])]
    return f"{site}/robots.txt"


def user_agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: ``webenrich/0.1 (+https://...)`` -> ``webenrich``."""
    token = user_agent.strip().split("/", 1)[0].split()[0] if user_agent.strip() else ""
    return token.lower() or "*"


@dataclass(slots=True)
class RobotsRules:
    """What one site's robots.txt says, as far as this crawler is concerned.

    Attributes:
        site: ``scheme://host:port``.
        kind: ``parsed`` (2xx), ``unavailable`` (4xx: allow all), ``unreachable`` (5xx/429/error: disallow all),
            ``disabled`` (robots.txt not respected).
        reason: for ``unavailable`` / ``unreachable``, what happened (``HTTP 503``, ``ConnectionResetError: ...``).
        expires_at: clock time after which the file is fetched again.
    """

    site: str
    kind: RobotsKind
    expires_at: float
    reason: str = ""
    cause: str = ""
    """For ``unreachable`` after a transport failure: the failure in plain words (``Connection refused``)."""
    parser: Protego | None = None
    sitemaps: list[str] = field(default_factory=list)

    def allowed(self, url: str, token: str) -> bool:
        if self.kind == "unreachable":
            return False
        if self.parser is None:
            return True
        return bool(self.parser.can_fetch(url, token))

    def crawl_delay(self, token: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(token)
        return None if delay is None else float(delay)


class RobotsPolicy:
    """Answers "may this URL be fetched?" and "how slowly?" from each site's robots.txt.

    Args:
        fetch_robots: ``await fetch_robots(robots_url) -> (status, text)``; raises on transport errors.
        user_agent: the run's User-Agent; its product token selects the robots.txt group.
        enabled: ``False`` allows everything without fetching (counted as ``skipped`` in :meth:`stats`).
        max_crawl_delay_s: largest Crawl-delay honoured; longer ones are cut to this.
        ttl_s: how long parsed and unavailable files are kept.
        unreachable_ttl_s: how long an unreachable robots.txt disallows its site.
        max_sites: sites kept in the cache.
        clock: monotonic time in seconds.
    """

    def __init__(
        self,
        *,
        fetch_robots: RobotsFetcher,
        user_agent: str,
        enabled: bool = True,
        max_crawl_delay_s: float = 10.0,
        ttl_s: float = ROBOTS_TTL_S,
        unreachable_ttl_s: float = UNREACHABLE_TTL_S,
        max_sites: int = MAX_SITES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sites < 1:
            raise ValueError(f"max_sites must be at least 1, got {max_sites}")
        self._fetch_robots = fetch_robots
        self.user_agent = user_agent
        self.token = user_agent_token(user_agent)
        self.enabled = enabled
        self.max_crawl_delay_s = max_crawl_delay_s
        self.ttl_s = ttl_s
        self.unreachable_ttl_s = unreachable_ttl_s
        self.max_sites = max_sites
        self._clock = clock
        self._cache: OrderedDict[str, RobotsRules] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[RobotsRules]] = {}
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "fetches",
                "parsed",
                "unavailable",
                "unreachable",
                "cache_hits",
                "allowed",
                "disallowed",
                "skipped",
            ),
            0,
        )

    @classmethod
    def from_config(
        cls,
        politeness: PolitenessConfig,
        fetch: FetchConfig,
        *,
        fetch_robots: RobotsFetcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> RobotsPolicy:
        return cls(
            fetch_robots=fetch_robots,
            user_agent=fetch.full_user_agent,
            enabled=politeness.respect_robots,
            max_crawl_delay_s=politeness.max_crawl_delay_s,
            clock=clock,
        )

    # --- rules -----------------------------------------------------------------------------------------------

    async def rules_for(self, url: str) -> RobotsRules:
        """The robots.txt rules of the site of ``url``, fetched if not cached (or expired).

        Raises:
            ValueError: the URL has no scheme or host.
        """
        site = site_of(url)
        now = self._clock()
        if not self.enabled:
            return RobotsRules(site=site, kind="disabled", expires_at=now)
        cached = self._cache.get(site)
        if cached is not None and cached.expires_at > now:
            self._cache.move_to_end(site)
            self._counts["cache_hits"] += 1
            return cached
        task = self._inflight.get(site)
        if task is None:
            task = asyncio.ensure_future(self._load(site, robots_url(url)))
            self._inflight[site] = task
            task.add_done_callback(self._forget)
        # shield: a caller cancelled while waiting must not cancel the fetch the other callers share.
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Task[RobotsRules]) -> None:
        for site, running in list(self._inflight.items()):
            if running is task:
                del self._inflight[site]

    async def _load(self, site: str, url: str) -> RobotsRules:
        self._counts["fetches"] += 1
        try:
            status, text = await self._fetch_robots(url)
        except SinkError:
            raise  # the transport could not archive the exchange (WARC): the run's failure, not the site's
        except Exception as exc:  # any transport failure means "unreachable", which the record reports
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            logger.warning("robots.txt of %s unreachable: %s", site, reason, exc_info=True, extra={"site": site})
            rules = self._unreachable(site, reason, cause=str(exc) or type(exc).__name__)
        else:
            rules = self._from_answer(site, status, text)
        self._store(rules)
        return rules

    def _from_answer(self, site: str, status: int, text: str) -> RobotsRules:
        now = self._clock()
        if 200 <= status < 300:
            parser = Protego.parse(text[:MAX_ROBOTS_BYTES])
            self._counts["parsed"] += 1
            return RobotsRules(
                site=site, kind="parsed", expires_at=now + self.ttl_s, parser=parser, sitemaps=list(parser.sitemaps)
            )
        if status == 429 or status >= 500:
            logger.warning("robots.txt of %s unreachable: HTTP %d", site, status, extra={"site": site})
            return self._unreachable(site, f"HTTP {status}")
        self._counts["unavailable"] += 1
        return RobotsRules(site=site, kind="unavailable", expires_at=now + self.ttl_s, reason=f"HTTP {status}")

    def _unreachable(self, site: str, reason: str, *, cause: str = "") -> RobotsRules:
        self._counts["unreachable"] += 1
        return RobotsRules(
            site=site,
            kind="unreachable",
            expires_at=self._clock() + self.unreachable_ttl_s,
            reason=reason,
            cause=cause,
        )

    def _store(self, rules: RobotsRules) -> None:
        self._cache[rules.site] = rules
        self._cache.move_to_end(rules.site)
        while len(self._cache) > self.max_sites:
            self._cache.popitem(last=False)

    # --- questions -------------------------------------------------------------------------------------------

    async def check(self, url: str) -> str | None:
        """A refusal message if robots.txt forbids ``url`` (or its site's robots.txt is unreachable), else ``None``.

        Messages:
            ``robots.txt of http://host:port disallows /private/page for webenrich``;
            ``robots.txt of http://host:port unreachable (HTTP 503); the site is disallowed for 60 s``.
        """
        if not self.enabled:
            self._counts["skipped"] += 1
            return None
        rules = await self.rules_for(url)
        if rules.allowed(url, self.token):
            self._counts["allowed"] += 1
            return None
        self._counts["disallowed"] += 1
        if rules.kind == "unreachable":
            return (
                f"robots.txt of {rules.site} unreachable ({rules.reason}); "
                f"the site is disallowed for {self.unreachable_ttl_s:.0f} s"
            )
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        return f"robots.txt of {rules.site} disallows {target} for {self.token}"

    async def refusal(self, url: str, *, record_url: str | None = None) -> FetchError | None:
        """The error of a URL that must not be fetched because of robots.txt, naming the root cause, or ``None``.

        A site whose robots.txt could not be fetched for a transport failure gets that failure as the error (a
        :class:`~enrich.errors.FetchError`: ``Connection refused (fetching robots.txt of http://host:80; ...)``):
        the host is down, robots.txt is only where it showed. Everything else is a
        :class:`~enrich.errors.RobotsDisallowedError`.
        """
        reason = await self.check(url)
        if reason is None:
            return None
        rules = self._cache.get(site_of(url))
        if rules is not None and rules.kind == "unreachable" and rules.cause:
            message = (
                f"{rules.cause} (fetching robots.txt of {rules.site}; "
                f"the site is not fetched for {self.unreachable_ttl_s:.0f} s)"
            )
            return FetchError(message, url=record_url or url, attempts=0)
        return RobotsDisallowedError(reason, url=record_url or url)

    async def allowed(self, url: str) -> bool:
        """Whether ``url`` may be fetched (always ``True`` when robots.txt is not respected)."""
        return await self.check(url) is None

    async def crawl_delay(self, url: str) -> float | None:
        """The Crawl-delay for this crawler on the site of ``url``, capped at ``max_crawl_delay_s``; ``None`` if
        none is set (or robots.txt is not respected)."""
        if not self.enabled:
            return None
        delay = (await self.rules_for(url)).crawl_delay(self.token)
        return None if delay is None else min(delay, self.max_crawl_delay_s)

    async def sitemaps(self, url: str) -> list[str]:
        """Sitemap URLs listed in the robots.txt of the site of ``url``."""
        if not self.enabled:
            return []
        return list((await self.rules_for(url)).sitemaps)

    async def close(self) -> None:
        """Cancel robots.txt fetches still in flight (at the end of a run)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()

    def stats(self) -> dict[str, object]:
        """Counts for the run summary; ``enabled: False`` says robots.txt was not respected."""
        return {"enabled": self.enabled, "cached_sites": len(self._cache), **self._counts}
