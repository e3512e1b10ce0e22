"""Main text, metadata and outgoing links of an HTML page, through trafilatura and lxml."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

import lxml.html
import trafilatura
from lxml import etree
from trafilatura.settings import Document

from enrich.extract.markup import absolute_links, clean_text, primary_language
from enrich.extract.result import Extraction

__all__ = ["extract_html", "extract_links"]

logger = logging.getLogger(__name__)

_XML_NS = "http://www.w3.org/XML/1998/namespace"
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def extract_links(tree: lxml.html.HtmlElement, base_url: str, limit: int) -> list[str]:
    """Absolute http(s) links of a parsed page (:func:`~enrich.extract.markup.absolute_links`); at most ``limit``."""
    return absolute_links(tree.xpath("//a/@href"), base_url, tree.xpath("string(//base/@href)"), limit)


def _language(tree: lxml.html.HtmlElement) -> str | None:
    lang = tree.get("lang") or tree.get("xml:lang") or tree.get(f"{{{_XML_NS}}}lang") or ""
    if not lang.strip():
        lang = tree.xpath("string(//meta[@http-equiv='content-language' or @name='language']/@content)")
    return primary_language(lang)


def extract_html(
    html: str,
    url: str,
    *,
    include_tables: bool = True,
    include_comments: bool = False,
    max_links: int = 1000,
) -> Extraction:
    """Extract an HTML page. Never raises on bad markup: the result carries an error instead."""
    if not html.strip():
        return Extraction(error="empty HTML document")
    html = _XML_DECLARATION.sub("", html, count=1)  # lxml refuses an encoding declaration in a str
    try:
        tree = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        return Extraction(error=f"unparsable HTML: {exc}")
    result = Extraction(language=_language(tree), links=extract_links(tree, url, max_links) if max_links else [])
    result.title = clean_text(tree.findtext(".//title"))
    # trafilatura cleans the tree in place; links and lang were read above.
    doc = trafilatura.bare_extraction(
        tree,
        url=url,
        with_metadata=True,
        include_comments=include_comments,
        include_tables=include_tables,
        deduplicate=False,
        # no guessing a date from "in 2023" in the prose: only dates the page states as such
        date_extraction_params={"extensive_search": False, "original_date": True},
    )
    if isinstance(doc, Document):
        found = (clean_text(doc.title) or "").rstrip("¶ ")
        # trafilatura's title drops a site-name suffix from <title>, but can also pick a stray heading ("Note");
        # keep it only when it agrees with <title>, or when there is no <title>.
        if found and (result.title is None or found.casefold() in result.title.casefold()):
            result.title = found
        result.description = clean_text(doc.description)
        result.author = clean_text(doc.author)
        result.published = clean_text(doc.date)
        result.text = doc.text.strip() if doc.text else None
        site_name = clean_text(doc.sitename)
        if site_name == urlsplit(url).netloc:
            site_name = None  # trafilatura's fallback is the host name, which the URL already says
        result.metadata = {
            key: value
            for key, value in (("site_name", site_name), ("categories", doc.categories), ("tags", doc.tags))
            if value
        }
    if not result.text:
        # No main-text block (an index or navigation page): fall back to all visible text.
        try:
            _, text, _ = trafilatura.baseline(html)
        except (etree.ParserError, ValueError):  # baseline re-parses; bad markup there is not fatal
            text = ""
        result.text = text.strip() or None
    if not result.text and not result.title:
        result.error = "HTML document has no text"
    result.metadata["extractor"] = "trafilatura"  # which backend's text this is (extract.backend), for mixed outputs
    return result
