"""The contacts stage: each page's contacts, plus those of its site's contact, about and team pages.

The site's pages are found from the page's links (contact first, then imprint, about, team) and, when the first
page of a site links to none, from common paths (:data:`~enrich.contacts.find.COMMON_PATHS`). Each is fetched once
per site and run (at most ``contacts.max_site_pages`` per site) and its contacts cached, so 1,000 URLs of one site
cost one set of extra fetches; records of a site being processed at once wait for the same fetches.

The stage fetches through a :data:`ContactFetch` that each engine supplies, so the core never imports a transport.
Without one, it finds the contacts of each page alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urljoin, urlsplit

from enrich.config import ContactsConfig
from enrich.contacts.find import COMMON_PATHS, PageContacts, scan_page
from enrich.errors import FetchError, InvalidURLError
from enrich.record import FetchedPage
from enrich.urls import normalize_url

if TYPE_CHECKING:
    from enrich.config import EnrichConfig
    from enrich.record import Contact
    from enrich.stages import WorkItem

__all__ = ["ContactFetch", "ContactStage"]

logger = logging.getLogger(__name__)

ContactFetch: TypeAlias = Callable[[str], Awaitable[FetchedPage]]
"""Fetch one of a site's pages for the stage: the answer after redirects, whatever its status. Raises
:class:`~enrich.errors.FetchError` (a refusal by robots.txt or the address policy included) when there is none.
The engine's policies apply; the stage bounds the call in time."""


@dataclass(slots=True)
class _Site:
    pages: dict[str, asyncio.Future[list[Contact]]] = field(default_factory=dict)
    fetches: int = 0


def _key(url: str) -> str:
    try:
        return normalize_url(url)
    except InvalidURLError:
        return url


class ContactStage:
    """Fills ``record.contacts`` (see the module docstring). Place it before extraction, which drops the body.

    Args:
        config: the ``contacts`` section.
        fetch: fetches a site's contact pages; ``None`` looks at each page alone.
        timeout_s: time allowed for one such fetch, redirects included.
    """

    name = "contacts"

    def __init__(
        self, *, config: ContactsConfig | None = None, fetch: ContactFetch | None = None, timeout_s: float = 30.0
    ) -> None:
        self._config = config or ContactsConfig(enabled=True)
        self._fetch = fetch
        self._timeout_s = timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._sites: OrderedDict[str, _Site] = OrderedDict()
        self.pages_fetched = 0
        """Site pages fetched (any answer)."""
        self.page_failures = 0
        """Site pages that could not be fetched (refused, failed, timed out)."""

    @classmethod
    def from_config(cls, config: EnrichConfig, *, fetch: ContactFetch | None) -> ContactStage:
        """The stage of ``config.contacts``. A site's pages are fetched one after the other, spaced by its
        ``Crawl-delay``, so one fetch is given the fetch timeout plus the longest wait that spacing may impose."""
        contacts = config.contacts
        wait_s = contacts.max_site_pages * config.politeness.max_crawl_delay_s
        return cls(config=contacts, fetch=fetch, timeout_s=config.fetch.timeout_s + wait_s)

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="contacts")

    async def process(self, item: WorkItem) -> WorkItem:
        page = item.page
        if page is None or not 200 <= page.status < 300:
            return item
        found = await self._scan(page)
        contacts = list(found.contacts)
        if self._fetch is not None and self._config.max_site_pages:
            contacts += await self._site_contacts(page, found)
        item.record.contacts = _merged(contacts, self._config.max_per_record)
        return item

    async def _scan(self, page: FetchedPage) -> PageContacts:
        loop = asyncio.get_running_loop()
        region, limit = self._config.default_region, self._config.max_per_page
        return await loop.run_in_executor(self._executor, lambda: scan_page(page, region=region, max_contacts=limit))

    async def _site_contacts(self, page: FetchedPage, found: PageContacts) -> list[Contact]:
        parts = urlsplit(page.final_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        site = self._sites.get(origin)
        candidates = found.site_pages
        if site is None:
            site = self._sites[origin] = _Site()
            self._forget_old_sites()
            if not candidates:
                candidates = [urljoin(origin, path) for path in COMMON_PATHS]
        self._sites.move_to_end(origin)
        own = _key(page.final_url)
        for url in candidates:
            key = _key(url)
            if key in site.pages:
                continue
            if key == own:  # this page is one of them: its contacts serve the site's other pages
                done: asyncio.Future[list[Contact]] = asyncio.get_running_loop().create_future()
                done.set_result(found.contacts)
                site.pages[key] = done
            elif site.fetches < self._config.max_site_pages:
                site.fetches += 1
                site.pages[key] = asyncio.ensure_future(self._fetch_page(url))
        pending = list(site.pages.values())
        await asyncio.wait(pending)  # not gather: one record's cancellation must not cancel the site's fetches
        return [contact for future in pending for contact in future.result()]

    async def _fetch_page(self, url: str) -> list[Contact]:
        assert self._fetch is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                page = await self._fetch(url)
        except (FetchError, TimeoutError) as exc:
            self.page_failures += 1
            logger.info("contact page %s not fetched: %s", url, exc or type(exc).__name__, extra={"url": url})
            return []
        self.pages_fetched += 1
        if not 200 <= page.status < 300:
            return []
        return (await self._scan(page)).contacts

    def _forget_old_sites(self) -> None:
        """Keep at most ``max_sites`` sites, dropping the least recent whose fetches are over (oldest first, so the
        usual case looks at one site)."""
        excess = len(self._sites) - self._config.max_sites
        if excess <= 0:
            return
        victims: list[str] = []
        newest = next(reversed(self._sites))
        for origin, site in self._sites.items():
            if len(victims) >= excess or origin == newest:
                break
            if all(future.done() for future in site.pages.values()):
                victims.append(origin)
        for origin in victims:
            del self._sites[origin]

    async def close(self) -> None:
        pending = [f for site in self._sites.values() for f in site.pages.values() if not f.done()]
        for future in pending:
            future.cancel()
        if pending:
            await asyncio.wait(pending)
        self._sites.clear()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)

    def figures(self) -> dict[str, int]:
        """What the stage fetched, for the run's stats."""
        return {"contact_pages_fetched": self.pages_fetched, "contact_page_failures": self.page_failures}


def _merged(contacts: list[Contact], limit: int) -> list[Contact]:
    """One contact per (type, value), the first found kept (the page's own before its site's), at most ``limit``."""
    seen: dict[tuple[str, str], Contact] = {}
    for contact in contacts:
        seen.setdefault((contact.type, contact.value), contact)
        if len(seen) >= limit:
            break
    return list(seen.values())
