"""Stage 1, discover: from seed URLs to a list of same-site URLs, through sitemaps and links.

For every site of the seeds, robots.txt is read once (Protego): its ``Sitemap:`` lines and ``/sitemap.xml`` give
URLs (sitemap indexes are followed, gzip is read), and its rules decide what may be fetched. Pages are then fetched
breadth-first with aiohttp up to ``max_depth`` link hops from a seed, following only same-site links, until
``max_pages`` URLs are known. Disallowed URLs are counted, not listed.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import lxml.html
from lxml import etree
from protego import Protego
from pydantic import BaseModel, ConfigDict, Field

from enrich.errors import InvalidURLError
from enrich.extract.html import extract_links
from enrich.urls import normalize_url

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DiscoverConfig", "DiscoverResult", "Discoverer"]

logger = logging.getLogger(__name__)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


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
    """Runs the discover stage. Use :meth:`run`; it opens and closes its own HTTP session.

    Args:
        config: the stage settings.
        user_agent: sent with every request and matched against robots.txt groups.
    """

    def __init__(self, *, config: DiscoverConfig, user_agent: str) -> None:
        self._config = config
        self._user_agent = user_agent
        self._robots: dict[str, Protego | None] = {}
        self._robots_lock = asyncio.Lock()
        self._hosts: set[str] = set()
        self._known: set[str] = set()
        self._queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self.result = DiscoverResult()

    @classmethod
    def from_config(cls, config: DiscoverConfig, *, user_agent: str) -> Discoverer:
        return cls(config=config, user_agent=user_agent)

    async def run(self, seeds: Iterable[str]) -> DiscoverResult:
        """Discover from ``seeds``; invalid seeds are counted under ``invalid_seed``."""
        cfg = self._config
        timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        headers = {"User-Agent": self._user_agent}
        connector = aiohttp.TCPConnector(limit=cfg.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers, connector=connector) as session:
            self._session = session
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
        return self.result

    def _same_site(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        if host in self._hosts:
            return True
        return self._config.include_subdomains and any(host.endswith("." + h) for h in self._hosts)

    async def _allowed(self, url: str) -> bool:
        if not self._config.respect_robots:
            return True
        robots = await self._robots_for(_site(url))
        return robots is None or bool(robots.can_fetch(url, self._user_agent))

    async def _robots_for(self, site: str) -> Protego | None:
        async with self._robots_lock:
            if site not in self._robots:
                body = await self._get(site + "/robots.txt", expect=None)
                self._robots[site] = Protego.parse(body.decode("utf-8", "replace")) if body is not None else None
            return self._robots[site]

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
        """The body of a 200 response whose type starts with one of ``expect`` (any if None), else None."""
        assert self._session is not None, "_get called outside run()"
        try:
            async with self._session.get(url, allow_redirects=True) as response:
                if response.status != 200:
                    self.result.counts[f"http_{response.status}"] += 1
                    return None
                content_type = response.headers.get("Content-Type", "").lower()
                if expect is not None and not content_type.startswith(expect):
                    self.result.counts["not_html"] += 1
                    return None
                return await response.content.read(self._config.max_page_bytes)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.result.counts["fetch_errors"] += 1
            logger.info("cannot fetch %s: %s", url, exc)
            return None

    async def _read_sitemaps(self, site: str) -> None:
        pending = [site + "/sitemap.xml"]
        robots = await self._robots_for(site)
        if robots is not None:
            pending = [*robots.sitemaps, *pending]
        seen: set[str] = set()
        while pending and len(seen) < self._config.max_sitemaps:
            sitemap = pending.pop(0)
            if sitemap in seen:
                continue
            seen.add(sitemap)
            body = await self._get(sitemap, expect=None)
            if body is None:
                continue
            self.result.counts["sitemaps_read"] += 1
            children, urls = _parse_sitemap(body, sitemap)
            pending.extend(children)
            for url in urls:
                try:
                    await self._add(normalize_url(url), 0)
                except InvalidURLError:
                    self.result.counts["invalid_sitemap_url"] += 1


def _parse_sitemap(body: bytes, base: str) -> tuple[list[str], list[str]]:
    """(child sitemaps, page URLs) of a sitemap or sitemap index; gzip-compressed bodies are accepted."""
    if body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            return [], []
    try:
        root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return [], []
    locs = [urljoin(base, (el.text or "").strip()) for el in root.iter(f"{_SITEMAP_NS}loc", "loc")]
    if etree.QName(root).localname == "sitemapindex":
        return locs, []
    return [], locs
