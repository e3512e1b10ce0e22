"""Main text, metadata and outgoing links of an HTML page, through Resiliparse (``extract.backend: resiliparse``).

Resiliparse parses with lexbor (C) and its main-content extraction is a few DOM heuristics, not trafilatura's
scoring and fallbacks: several times faster, a little less precise (docs/benchmarks.md has both measured on a public
ground truth). The record has the same fields as with trafilatura, read differently:

- ``text``: :func:`resiliparse.extract.html2text.extract_plain_text` with ``main_content=True``; all visible text
  when that finds nothing (trafilatura's backend does the same with its baseline).
- ``title``: ``<title>`` as written (trafilatura drops a site-name suffix when its own guess agrees).
- ``description``, ``author``, ``published``, ``site_name``: the page's ``<meta>`` tags only (Open Graph, Dublin
  Core, ``article:published_time``); no date guessed from the text or the URL, no categories or tags.
- ``links`` and ``language``: as with trafilatura (:mod:`enrich.extract.markup`).
- ``metadata.extractor``: ``resiliparse`` (``trafilatura`` with the other backend).

Resiliparse is an optional dependency (the ``fast`` extra), imported on first use.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING

from enrich.errors import ConfigError
from enrich.extract.markup import absolute_links, clean_text, primary_language
from enrich.extract.result import Extraction

if TYPE_CHECKING:
    from resiliparse.parse.html import ElementNode

__all__ = ["extract_html_fast", "require_resiliparse"]

MISSING_MESSAGE = (
    "extract.backend 'resiliparse' needs the resiliparse package, which is not installed: "
    "pip install 'webenrich[fast]' (or pip install resiliparse)"
)

_META = {
    "description": ("description", "og:description", "twitter:description", "dc.description"),
    "author": ("author", "article:author", "dc.creator", "parsely-author"),
    "published": ("article:published_time", "og:article:published_time", "date", "dc.date", "pubdate"),
    "site_name": ("og:site_name", "application-name"),
}
"""Field -> the ``name`` / ``property`` values of ``<meta>`` that state it, first found wins."""


_BLANK_LINES = re.compile(r"\n\s*\n")
_META_KEY_ATTRS = ("property", "name", "itemprop", "http-equiv")


def require_resiliparse() -> None:
    """Fail before any fetch when the backend is chosen but not installed (or its C extension does not load).

    Raises:
        ConfigError: naming the extra to install.
    """
    try:
        importlib.import_module("resiliparse.extract.html2text")
        importlib.import_module("resiliparse.parse.html")
    except ImportError as exc:
        raise ConfigError(MISSING_MESSAGE) from exc


def _metas(head: ElementNode | None) -> dict[str, str]:
    found: dict[str, str] = {}
    if head is None:
        return found
    # .values(): a list in one call; indexing or iterating the collection rebuilds it per item (quadratic)
    for meta in head.query_selector_all("meta[content]").values():
        key = next((name for attr in _META_KEY_ATTRS if (name := meta.getattr(attr))), "").strip().lower()
        value = clean_text(meta.getattr("content"))
        if key and value and key not in found:
            found[key] = value
    return found


def _language(root: ElementNode | None, metas: dict[str, str]) -> str | None:
    lang = (root.getattr("lang") or root.getattr("xml:lang") or "") if root is not None else ""
    return primary_language(lang) or primary_language(metas.get("content-language") or metas.get("language"))


def extract_html_fast(
    html: str,
    url: str,
    *,
    include_tables: bool = True,
    include_comments: bool = False,
    max_links: int = 1000,
) -> Extraction:
    """Extract an HTML page with Resiliparse. Never raises on bad markup: the result carries an error instead.

    Raises:
        ConfigError: resiliparse is not installed.
    """
    try:
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree
    except ImportError as exc:
        raise ConfigError(MISSING_MESSAGE) from exc
    if not html.strip():
        return Extraction(error="empty HTML document")
    try:
        tree = HTMLTree.parse(html)
    except (ValueError, RuntimeError) as exc:  # lexbor accepts nearly anything; these are its only failures
        return Extraction(error=f"unparsable HTML: {exc}")
    document = tree.document
    if document is None:
        return Extraction(error="unparsable HTML: no document")
    metas = _metas(tree.head)
    result = Extraction(language=_language(document.query_selector("html"), metas), title=clean_text(tree.title))
    if max_links:
        base = document.query_selector("base[href]")
        hrefs = (a.getattr("href") or "" for a in document.query_selector_all("a[href]").values())
        result.links = absolute_links(hrefs, url, base.getattr("href") if base is not None else None, max_links)
    for name, keys in _META.items():
        value = next((metas[key] for key in keys if key in metas), None)
        if name == "site_name":
            if value:
                result.metadata["site_name"] = value
        else:
            setattr(result, name, value)
    skip = [] if include_tables else ["table"]
    text = extract_plain_text(
        tree, main_content=True, comments=include_comments, alt_texts=False, links=False, skip_elements=skip
    ).strip()
    if not text:
        # No main-content block (an index or navigation page): fall back to all visible text.
        text = extract_plain_text(tree, main_content=False, alt_texts=False, skip_elements=skip).strip()
    result.text = _BLANK_LINES.sub("\n", text) or None  # one line per block, as trafilatura writes it
    if not result.text and not result.title:
        result.error = "HTML document has no text"
    result.metadata["extractor"] = "resiliparse"
    return result
