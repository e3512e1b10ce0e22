"""Stage 1, discover: from seed URLs to a list of same-site URLs, through sitemaps and links.

For every site of the seeds, robots.txt is read once, with stage 3's policy (:class:`~enrich.policy.RobotsPolicy`:
a 5xx or an unreachable robots.txt disallows the site for a while, a 4xx allows it): its ``Sitemap:`` lines and
``/sitemap.xml`` give URLs (:mod:`crawler.sitemaps`: sitemap indexes followed, gzipped sitemaps, text sitemaps,
RSS and Atom feeds), and its rules decide what may be fetched. Pages are then fetched breadth-first up to
``max_depth`` link hops from a seed, following only same-site links, until ``max_pages`` URLs are known.
Disallowed URLs are counted, not listed.

Requests go through stage 3's fetcher and policies (:class:`~crawler.async_engine.polite.PoliteFetcher`): the
address check (``politeness.allow_private_addresses``), robots.txt and its ``Crawl-delay`` (spacing a site's
requests), at most ``politeness.per_domain_concurrency`` requests per site at once, redirects followed by hand with
each hop checked, stage 3's retries (transport failures, 429 and 5xx, ``Retry-After``), and whole bodies read up
to ``max_page_bytes`` (decompressed with a cap).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import lxml.html
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from crawler.async_engine.fetcher import AiohttpFetcher
from crawler.async_engine.polite import PoliteFetcher
from crawler.sitemaps import parse_sitemap
from enrich.config import EnrichConfig
from enrich.errors import FetchError, InvalidURLError, RefusedError
from enrich.extract.html import extract_links
from enrich.policy import RetryPolicy, RobotsPolicy
from enrich.urls import normalize_url

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DiscoverConfig", "DiscoverResult", "Discoverer"]

logger = logging.getLogger(__name__)

_HTML_TYPES = ("text/html", "application/xhtml+xml")


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
    """The URLs found, in discovery order, and counters of what happened."""

    urls: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"urls": len(self.urls), **dict(sorted(self.counts.items()))}


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Discoverer:
    """Runs the discover stage. Use :meth:`run`; it opens and closes its own fetcher.

    Args:
        config: the stage settings.
        enrich: stage 3's settings, whose fetch and politeness policies discovery follows (its timeout, size cap
            and concurrency are the stage's own).
    """

    def __init__(self, *, config: DiscoverConfig, enrich: EnrichConfig) -> None:
        self._config = config
        self._enrich = enrich.replace(
            fetch={
                "timeout_s": config.timeout,
                "connect_timeout_s": min(config.timeout, enrich.fetch.connect_timeout_s),
                "max_response_bytes": config.max_page_bytes,
                "max_concurrency": config.concurrency,
            },
            politeness={"respect_robots": config.respect_robots},
        )
        self._hosts: set[str] = set()
        self._known: set[str] = set()
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._fetch: PoliteFetcher | None = None
        self._robots: RobotsPolicy | None = None
        self._retry = RetryPolicy.from_config(self._enrich.fetch)
        self.result = DiscoverResult()

    @classmethod
    def from_config(cls, config: DiscoverConfig, *, enrich: EnrichConfig | None = None) -> Discoverer:
        return cls(config=config, enrich=enrich or EnrichConfig())

    async def run(self, seeds: Iterable[str]) -> DiscoverResult:
        """Discover from ``seeds``; invalid seeds are counted under ``invalid_seed``."""
        cfg, enrich = self._config, self._enrich
        fetcher = AiohttpFetcher.from_config(enrich.fetch, politeness=enrich.politeness)
        # robots.txt is always read (its Sitemap: lines); its rules apply when respect_robots is on
        robots = self._robots = RobotsPolicy(
            fetch_robots=fetcher.fetch_robots,
            user_agent=enrich.fetch.full_user_agent,
            max_crawl_delay_s=enrich.politeness.max_crawl_delay_s,
        )
        self._fetch = PoliteFetcher(
            fetcher=fetcher,
            robots=robots if cfg.respect_robots else None,
            max_redirects=enrich.fetch.max_redirects,
            timeout_s=cfg.timeout,
            per_site=enrich.politeness.per_domain_concurrency,
        )
        async with fetcher:
            try:
                await self._discover(seeds)
            finally:
                await robots.close()
        return self.result

    async def _discover(self, seeds: Iterable[str]) -> None:
        cfg = self._config
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
        for url in valid:
            await self._add(url, 0)
        if cfg.use_sitemaps:
            for site in dict.fromkeys(_site(u) for u in valid):
                await self._read_sitemaps(site)
        workers = [asyncio.create_task(self._worker()) for _ in range(cfg.concurrency)]
        try:
            await self._queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _same_site(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        if host in self._hosts:
            return True
        return self._config.include_subdomains and any(host.endswith("." + h) for h in self._hosts)

    async def _allowed(self, url: str) -> bool:
        if not self._config.respect_robots:
            return True
        assert self._robots is not None, "_allowed called outside run()"
        return await self._robots.check(url) is None

    async def _add(self, url: str, depth: int) -> None:
        """List ``url`` (if new, same-site and allowed) and queue it for link-following."""
        if url in self._known:
            return
        self._known.add(url)
        if not self._same_site(url):
            self.result.counts["offsite_skipped"] += 1
            return
        if len(self.result.urls) >= self._config.max_pages:
            self.result.counts["page_limit_skipped"] += 1
            return
        if not await self._allowed(url):
            self.result.counts["robots_disallowed"] += 1
            return
        if len(self.result.urls) >= self._config.max_pages:  # other workers may have filled it meanwhile
            self.result.counts["page_limit_skipped"] += 1
            return
        self.result.urls.append(url)
        if self._config.follow_links and depth < self._config.max_depth:
            self._queue.put_nowait((url, depth))

    async def _worker(self) -> None:
        while True:
            url, depth = await self._queue.get()
            try:
                body = await self._get(url, expect=_HTML_TYPES)
                if body is not None:
                    self.result.counts["pages_fetched"] += 1
                    for link in self._page_links(body, url):
                        await self._add(link, depth + 1)
            except Exception:
                # One bad page must not end discovery; it is logged with its traceback and counted.
                self.result.counts["page_errors"] += 1
                logger.warning("discovery failed on %s", url, exc_info=True)
            finally:
                self._queue.task_done()

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

    async def _get(self, url: str, *, expect: tuple[str, ...] | None) -> bytes | None:
        """The whole body (up to the size cap) of a 200 answer whose type starts with one of ``expect`` (any if
        None), after redirects and retries (stage 3's retry policy: transport failures, 429, 5xx, ``Retry-After``
        up to its cap); else None, counted."""
        assert self._fetch is not None, "_get called outside run()"
        retry = self._retry
        attempt = 1
        while True:
            try:
                page = await self._fetch(url)
            except RefusedError as exc:  # robots.txt or the address policy, on the URL or a redirect hop
                self.result.counts["refused"] += 1
                logger.info("not fetched: %s", exc)
                return None
            except FetchError as exc:
                if retry.should_retry(None, exc, attempt):
                    await self._wait(retry.delay(attempt), attempt)
                    attempt += 1
                    continue
                self.result.counts["fetch_errors"] += 1
                logger.info("cannot fetch %s: %s", url, exc)
                return None
            retry_after = page.headers.get("retry-after")
            if retry.should_retry(page.status, None, attempt) and retry.too_long(retry_after) is None:
                await self._wait(retry.delay(attempt, retry_after), attempt)
                attempt += 1
                continue
            break
        if page.status != 200:
            self.result.counts[f"http_{page.status}"] += 1
            return None
        if expect is not None and not (page.content_type or "").startswith(expect):
            self.result.counts["not_html"] += 1
            return None
        if page.truncated:
            self.result.counts["bodies_truncated"] += 1
        return page.body

    async def _wait(self, delay_s: float, attempt: int) -> None:
        self.result.counts["retries"] += 1
        logger.debug("retrying in %.2fs (attempt %d failed)", delay_s, attempt)
        await asyncio.sleep(delay_s)

    async def _read_sitemaps(self, site: str) -> None:
        assert self._robots is not None, "_read_sitemaps called outside run()"
        pending = [*(await self._robots.sitemaps(site + "/")), site + "/sitemap.xml"]
        seen: set[str] = set()
        while pending and len(seen) < self._config.max_sitemaps:
            sitemap = pending.pop(0)
            if sitemap in seen:
                continue
            seen.add(sitemap)
            body = await self._get(sitemap, expect=None)
            if body is None:
                continue
            content = parse_sitemap(body, sitemap, max_bytes=self._config.max_page_bytes)
            if content.kind == "invalid":
                self.result.counts["invalid_sitemaps"] += 1
                continue
            self.result.counts["sitemaps_read"] += 1
            if content.truncated:
                self.result.counts["sitemaps_truncated"] += 1
            pending.extend(content.sitemaps)
            for url in content.urls:
                try:
                    await self._add(normalize_url(url), 0)
                except InvalidURLError:
                    self.result.counts["invalid_sitemap_url"] += 1
