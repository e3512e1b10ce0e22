"""Stage 1, discover: from seed URLs to a list of same-site URLs, through sitemaps and links.

Discovery runs on stage 3's engine (:class:`~crawler.async_engine.processor.AsyncEnrichmentProcessor`) with one
stage of its own in place of extraction, NLP and the sinks: every page and sitemap is a request the frontier
schedules (:mod:`enrich.frontier`), so stage 1 keeps every policy of stage 3 from one definition: per-site queues
and caps (adaptive, with backoff on 429/503 and a circuit breaker), robots.txt and its ``Crawl-delay``, the address
check, retries with ``Retry-After``, every redirect hop scheduled as a request to its own site, and whole bodies read
up to ``max_page_bytes``.

For every site of the seeds, robots.txt is read once: its ``Sitemap:`` lines and ``/sitemap.xml`` give URLs
(:mod:`crawler.sitemaps`: sitemap indexes followed, gzipped sitemaps, text sitemaps, RSS and Atom feeds), and its
rules decide what may be listed and fetched (a 5xx or an unreachable robots.txt disallows the site for a while, a
4xx allows it, as in stage 3). Pages are fetched breadth-first up to ``max_depth`` link hops from a seed, following
only same-site links, until ``max_pages`` URLs are known; then the run stops (requests in flight finish).
Disallowed URLs are counted, not listed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import lxml.html
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from crawler.async_engine.processor import AsyncEnrichmentProcessor
from crawler.sitemaps import parse_sitemap
from enrich.config import EnrichConfig
from enrich.errors import InvalidURLError
from enrich.extract.html import extract_links
from enrich.policy import RobotsPolicy
from enrich.urls import InputURL, normalize_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from enrich.stages import WorkItem

__all__ = ["DiscoverConfig", "DiscoverResult", "Discoverer", "DiscoveryPlan", "discovery_config"]

logger = logging.getLogger(__name__)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_REFUSALS = {"RefusedError", "RobotsDisallowedError", "BlockedAddressError", "CircuitOpenError"}


class DiscoverConfig(BaseModel):
    """Settings of the discover stage (YAML ``stages.discover``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    seeds: tuple[str, ...] = Field((), description="Seed URLs, added to --seeds and URLs given on the command line.")
    max_depth: int = Field(2, ge=0, le=50, description="Link hops followed from a seed; 0 reads only seeds/sitemaps.")
    max_pages: int = Field(1000, ge=1, description="Stop once this many URLs are known.")
    use_sitemaps: bool = Field(True, description="Read robots.txt Sitemap: lines and /sitemap.xml.")
    max_sitemaps: int = Field(50, ge=0, description="Sitemap files read per site, indexes included.")
    follow_links: bool = Field(True, description="Follow same-site links found in pages.")
    include_subdomains: bool = Field(False, description="Treat subdomains of a seed's host as the same site.")
    respect_robots: bool = Field(True, description="Honour robots.txt rules for the user agent.")
    concurrency: int = Field(8, ge=1, le=1000, description="Pages fetched at once.")
    timeout: float = Field(15.0, gt=0, description="Seconds allowed for one fetch.")
    max_page_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="HTML and sitemap bodies are cut here.")


@dataclass
class DiscoverResult:
    """The URLs found, in discovery order, counters of what happened, and the frontier's figures (backoffs, cap
    decreases, open circuits per site)."""

    urls: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    frontier: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"urls": len(self.urls), **dict(sorted(self.counts.items())), "frontier": self.frontier}


@dataclass(slots=True)
class Purpose:
    """Why a URL is requested: a page (for its links, ``depth`` hops from a seed) or a sitemap of ``site``."""

    kind: Literal["page", "sitemap"]
    depth: int = 0
    site: str = ""


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def discovery_config(config: DiscoverConfig, enrich: EnrichConfig) -> EnrichConfig:
    """Stage 3's config as stage 1 runs it: its policies, with the stage's timeout, size cap and concurrency, and
    NLP, contacts and WARC output off."""
    return enrich.replace(
        fetch={
            "timeout_s": config.timeout,
            "connect_timeout_s": min(config.timeout, enrich.fetch.connect_timeout_s),
            "max_response_bytes": config.max_page_bytes,
            "max_concurrency": config.concurrency,
        },
        politeness={"respect_robots": config.respect_robots},
        nlp={"enabled": False},
        contacts={"enabled": False},
        warc={"dir": None},
    )


class DiscoveryPlan:
    """What stage 1 requests and what it lists, whatever engine fetches: both engines ask it for the first
    requests (:meth:`start`), hand it every answer (:meth:`answered`, :meth:`failed`) and make the requests it
    returns, until none is left or :attr:`full` says the page limit is reached.

    Args:
        config: the stage settings.
        robots: robots.txt rules, read for ``Sitemap:`` lines (so enabled even when ``respect_robots`` is off) and,
            when it is on, to leave disallowed URLs out of the list.
    """

    def __init__(self, config: DiscoverConfig, *, robots: RobotsPolicy) -> None:
        self._config = config
        self._robots = robots
        self._hosts: set[str] = set()
        self._known: set[str] = set()
        self._requests: dict[str, Purpose] = {}
        """Why each URL in flight was requested (until its answer is handled)."""
        self._requested: set[str] = set()
        self._sitemaps_seen: Counter[str] = Counter()
        self.result = DiscoverResult()

    @property
    def full(self) -> bool:
        """``max_pages`` URLs are known: what is still queued would only find more."""
        return len(self.result.urls) >= self._config.max_pages

    def purpose(self, url: str) -> Purpose | None:
        return self._requests.get(url)

    async def start(self, seeds: Iterable[str]) -> list[str]:
        """The first requests: the seeds and their sites' sitemaps. Invalid seeds are counted (``invalid_seed``)."""
        valid: list[str] = []
        for seed in seeds:
            try:
                url = normalize_url(seed)
            except InvalidURLError:
                self.result.counts["invalid_seed"] += 1
                logger.warning("skipping invalid seed %r", seed)
                continue
            self._hosts.add((urlsplit(url).hostname or "").lower())
            valid.append(url)
        out: list[str] = []
        for url in valid:
            await self._add(url, 0, out)
        if self._config.use_sitemaps:
            for site in dict.fromkeys(_site(u) for u in valid):
                for sitemap in [*(await self._robots.sitemaps(site + "/")), site + "/sitemap.xml"]:
                    self._request_sitemap(sitemap, site, out)
        return out

    def _request(self, url: str, purpose: Purpose, out: list[str]) -> None:
        self._requested.add(url)
        self._requests[url] = purpose
        out.append(url)

    def _request_sitemap(self, url: str, site: str, out: list[str]) -> None:
        if url in self._requested or self._sitemaps_seen[site] >= self._config.max_sitemaps:
            return
        self._sitemaps_seen[site] += 1
        self._request(url, Purpose("sitemap", site=site), out)

    def _same_site(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        if host in self._hosts:
            return True
        return self._config.include_subdomains and any(host.endswith("." + h) for h in self._hosts)

    async def _allowed(self, url: str) -> bool:
        return not self._config.respect_robots or await self._robots.check(url) is None

    def _counted_full(self) -> bool:
        if not self.full:
            return False
        self.result.counts["page_limit_skipped"] += 1
        return True

    async def _add(self, url: str, depth: int, out: list[str]) -> None:
        """List ``url`` (if new, same-site and allowed) and request it for its links."""
        if url in self._known:
            return
        self._known.add(url)
        if not self._same_site(url):
            self.result.counts["offsite_skipped"] += 1
            return
        if self._counted_full():
            return
        if not await self._allowed(url):
            self.result.counts["robots_disallowed"] += 1
            return
        if self._counted_full():  # other answers may have filled it meanwhile
            return
        self.result.urls.append(url)
        follow = self._config.follow_links and depth < self._config.max_depth
        if follow and not self.full and url not in self._requested:
            self._request(url, Purpose("page", depth=depth), out)

    # --- answers -----------------------------------------------------------------------------------------------

    async def answered(self, item: WorkItem) -> list[str]:
        """Read one request's answer (a page or an error record); the requests it leads to (a page's links, a
        sitemap's entries)."""
        if item.page is None or item.record.error is not None:
            self.failed(item)
            return []
        record, page = item.record, item.page
        purpose = self._requests.pop(record.url, Purpose("page"))
        out: list[str] = []
        try:
            self.result.counts["requests"] += 1
            self.result.counts["retries"] += max(0, record.attempts - 1)
            if page.status != 200:
                self.result.counts[f"http_{page.status}"] += 1
            elif purpose.kind == "sitemap":
                await self._read_sitemap(page.body, record.final_url or record.url, purpose.site, out)
            elif not (page.content_type or "").startswith(_HTML_TYPES):
                self.result.counts["not_html"] += 1
            else:
                self.result.counts["pages_fetched"] += 1
                if page.truncated:
                    self.result.counts["bodies_truncated"] += 1
                for link in self._page_links(page.body, record.final_url or record.url):
                    await self._add(link, purpose.depth + 1, out)
        except Exception:
            # One bad page must not end discovery; it is logged with its traceback and counted.
            self.result.counts["page_errors"] += 1
            logger.warning("discovery failed on %s", record.url, exc_info=True)
        return out

    def failed(self, item: WorkItem) -> None:
        """Count a request that ended without a page: refused, failed, or answered with an HTTP error."""
        record = item.record
        self._requests.pop(record.url, None)
        self.result.counts["requests"] += 1
        self.result.counts["retries"] += max(0, record.attempts - 1)
        error = record.error
        if record.status is not None and record.status >= 300:
            self.result.counts[f"http_{record.status}"] += 1
        elif error is not None and error.type in _REFUSALS:  # robots.txt, the address policy or an open circuit
            self.result.counts["refused"] += 1
            logger.info("not fetched: %s", error.message)
        else:
            self.result.counts["fetch_errors"] += 1
            logger.info("cannot fetch %s: %s", record.url, error.message if error else "no page")

    def _page_links(self, body: bytes, url: str) -> list[str]:
        try:
            tree = lxml.html.document_fromstring(body)
        except (etree.ParserError, ValueError):
            return []
        links = []
        for link in extract_links(tree, url, 10_000):
            try:
                links.append(normalize_url(link))
            except InvalidURLError:
                continue
        return links

    async def _read_sitemap(self, body: bytes, url: str, site: str, out: list[str]) -> None:
        content = parse_sitemap(body, url, max_bytes=self._config.max_page_bytes)
        if content.kind == "invalid":
            self.result.counts["invalid_sitemaps"] += 1
            return
        self.result.counts["sitemaps_read"] += 1
        if content.truncated:
            self.result.counts["sitemaps_truncated"] += 1
        for sitemap in content.sitemaps:
            self._request_sitemap(sitemap, site, out)
        for entry in content.urls:
            try:
                await self._add(normalize_url(entry), 0, out)
            except InvalidURLError:
                self.result.counts["invalid_sitemap_url"] += 1


class Discoverer:
    """Runs the discover stage on the async engine. Use :meth:`run`; the engine opens and closes its own fetcher.

    The engine's input is a queue this class fills (the plan's requests) and closes once every request made has
    been handled, or once the page limit or :meth:`stop` stopped the engine (requests in flight finish).

    Args:
        config: the stage settings.
        enrich: stage 3's settings, whose fetch, frontier and politeness policies discovery follows
            (:func:`discovery_config`).
    """

    def __init__(self, *, config: DiscoverConfig, enrich: EnrichConfig) -> None:
        self._config = config
        self._enrich = discovery_config(config, enrich)
        self._feed: asyncio.Queue[str | None] = asyncio.Queue()
        self._outstanding = 0
        self._processor: AsyncEnrichmentProcessor | None = None
        self._plan: DiscoveryPlan | None = None
        self._stopped = False
        self.result = DiscoverResult()

    @classmethod
    def from_config(cls, config: DiscoverConfig, *, enrich: EnrichConfig | None = None) -> Discoverer:
        return cls(config=config, enrich=enrich or EnrichConfig())

    def stop(self) -> None:
        """Stop requesting (Ctrl-C, SIGTERM): requests in flight finish and :meth:`run` returns what was found."""
        self._stopped = True
        if self._processor is not None:
            self._processor.stop()

    async def run(self, seeds: Iterable[str]) -> DiscoverResult:
        """Discover from ``seeds``; invalid seeds are counted under ``invalid_seed``."""
        processor = self._processor = AsyncEnrichmentProcessor.from_config(
            self._enrich, stages=[_AnswerStage(self)], progress_interval_s=0
        )
        robots = processor.robots
        assert robots is not None, "the engine always has a robots.txt policy"
        # robots.txt is always read for its Sitemap: lines; its rules apply only when respect_robots is on
        sitemaps = (
            robots
            if robots.enabled
            else RobotsPolicy(fetch_robots=processor.fetcher.fetch_robots, user_agent=robots.user_agent)
        )
        plan = self._plan = DiscoveryPlan(self._config, robots=sitemaps)
        self.result = plan.result
        if self._stopped:
            processor.stop()
        try:
            await processor.run(self._inputs(plan, list(seeds)))
        finally:
            if sitemaps is not robots:
                await sitemaps.close()
        frontier = processor.frontier.stats()
        self.result.frontier = frontier
        return self.result

    async def _inputs(self, plan: DiscoveryPlan, seeds: list[str]) -> AsyncIterator[InputURL]:
        self._outstanding += 1  # the seeds themselves, until they are all queued
        self._ask(await plan.start(seeds))
        self._done_one()
        number = 0
        while (queued := await self._feed.get()) is not None:
            number += 1
            yield InputURL(url=queued, line=number)

    def _ask(self, urls: list[str]) -> None:
        for url in urls:
            self._outstanding += 1
            self._feed.put_nowait(url)
        if self._plan is not None and self._plan.full:
            self.stop()

    def _done_one(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._feed.put_nowait(None)  # nothing queued or in flight will add more: the input ends

    async def handle(self, item: WorkItem) -> None:
        """One request's answer, from the engine's only stage."""
        assert self._plan is not None, "handle called outside run()"
        try:
            self._ask(await self._plan.answered(item))
        finally:
            self._done_one()


class _AnswerStage:
    """Stage 1's only stage: hands every answer back to the discoverer."""

    name = "discover"

    def __init__(self, discoverer: Discoverer) -> None:
        self._discoverer = discoverer

    async def open(self) -> None:
        return None

    async def process(self, item: WorkItem) -> WorkItem:
        await self._discoverer.handle(item)
        return item

    async def close(self) -> None:
        return None
