"""What a sitemap lists: XML sitemaps and sitemap indexes (Scrapy's parser), gzipped or not, text sitemaps (one URL
per line), and RSS / Atom feeds (their items' links).

Gzip is inflated with a cap (:func:`enrich.codings.decompress_capped`): a small file that inflates to gigabytes
costs at most the cap. A sitemap lists at most 50,000 URLs (the protocol's limit); more are ignored.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from urllib.parse import urljoin

from lxml import etree
from scrapy.utils.sitemap import Sitemap

from enrich.codings import decompress_capped

__all__ = ["MAX_SITEMAP_URLS", "SitemapContent", "parse_sitemap"]

MAX_SITEMAP_URLS = 50_000
"""URLs read from one sitemap file (the sitemaps.org limit)."""

_FEED_ROOTS = {"rss", "feed", "RDF"}


@dataclass(slots=True)
class SitemapContent:
    """A sitemap file's child sitemaps (an index) and page URLs, absolute; ``kind`` says what the file was
    (``urlset``, ``sitemapindex``, ``rss``, ``atom``, ``text``, or ``invalid``); ``truncated`` that gzip was cut."""

    kind: str
    sitemaps: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    truncated: bool = False


def _localname(element: etree._Element) -> str:
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _feed_links(root: etree._Element, base: str) -> tuple[str, list[str]]:
    """The links of a feed's items: RSS ``<item><link>``, Atom ``<entry><link href>`` (alternate or no ``rel``)."""
    name = _localname(root)
    links: list[str] = []
    for element in root.iter():
        if _localname(element) not in {"item", "entry"}:
            continue
        for child in element:
            if _localname(child) != "link":
                continue
            href = child.get("href")
            if href is not None and child.get("rel", "alternate") == "alternate":
                links.append(urljoin(base, href.strip()))
            elif href is None and child.text and child.text.strip():
                links.append(urljoin(base, child.text.strip()))
            else:
                continue
            break
        if len(links) >= MAX_SITEMAP_URLS:
            break
    return ("atom" if name == "feed" else "rss"), links


def parse_sitemap(body: bytes, base: str, *, max_bytes: int) -> SitemapContent:
    """Parse a sitemap (or sitemap index, text sitemap, feed) fetched from ``base``; never raises on bad content.

    Args:
        body: the file as fetched (gzip is recognized by its magic bytes, whatever the headers said).
        base: its URL, against which relative locations are resolved.
        max_bytes: the most a gzipped file may inflate to.
    """
    truncated = False
    if body[:2] == b"\x1f\x8b":
        try:
            body, truncated = decompress_capped(body, b"gzip", max_bytes)
        except zlib.error:
            return SitemapContent(kind="invalid")
    text = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"<"):
        urls = []
        for line in text.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if line.startswith(("http://", "https://")):
                urls.append(line)
                if len(urls) >= MAX_SITEMAP_URLS:
                    break
        return SitemapContent(kind="text" if urls else "invalid", urls=urls, truncated=truncated)
    try:
        sitemap = Sitemap(text)
    except (etree.XMLSyntaxError, StopIteration):
        return SitemapContent(kind="invalid", truncated=truncated)
    if sitemap.type in _FEED_ROOTS:
        root = etree.fromstring(text, parser=etree.XMLParser(resolve_entities=False, no_network=True, recover=True))
        if root is None:
            return SitemapContent(kind="invalid", truncated=truncated)
        kind, links = _feed_links(root, base)
        return SitemapContent(kind=kind, urls=links, truncated=truncated)
    if sitemap.type not in {"urlset", "sitemapindex"}:
        return SitemapContent(kind="invalid", truncated=truncated)
    locations: list[str] = []
    for entry in sitemap:
        locations.append(urljoin(base, entry["loc"]))
        if len(locations) >= MAX_SITEMAP_URLS:
            break
    if sitemap.type == "sitemapindex":
        return SitemapContent(kind="sitemapindex", sitemaps=locations, truncated=truncated)
    return SitemapContent(kind="urlset", urls=locations, truncated=truncated)
