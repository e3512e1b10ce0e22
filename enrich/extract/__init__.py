"""Extraction: turn a fetched body into text and metadata, whatever its type."""

from __future__ import annotations

import re
from posixpath import basename
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from enrich.config import ExtractConfig
from enrich.extract.decode import Kind, decode_text, sniff_kind
from enrich.extract.fast_html import extract_html_fast
from enrich.extract.html import extract_html
from enrich.extract.media import extract_image, extract_media
from enrich.extract.pdf import extract_pdf
from enrich.extract.result import Extraction

if TYPE_CHECKING:
    from enrich.record import FetchedPage

__all__ = ["Extraction", "Kind", "decode_text", "extract_page", "file_name_of", "sniff_kind"]

_DISPOSITION_NAME = re.compile(r"""filename\*?\s*=\s*(?:UTF-8'')?["']?([^"';]+)""", re.IGNORECASE)


def file_name_of(page: FetchedPage) -> str | None:
    """The file name from Content-Disposition, else the last segment of the final URL's path."""
    disposition = page.headers.get("content-disposition", "")
    match = _DISPOSITION_NAME.search(disposition)
    if match:
        return basename(unquote(match.group(1).strip())) or None
    return basename(unquote(urlsplit(page.final_url).path)) or None


def extract_page(page: FetchedPage, config: ExtractConfig | None = None) -> Extraction:
    """Route a page to its extractor by what its bytes are, not only by what its headers claim.

    HTML goes to trafilatura or Resiliparse as ``config.backend`` says. Never raises on bad content; a CPU-bound
    function, run off the event loop by :class:`ExtractStage`.
    """
    config = config or ExtractConfig()
    kind, media_type = sniff_kind(page.content_type, page.body)
    if kind is Kind.HTML:
        text, encoding = decode_text(page.body, page.headers.get("content-type"))
        html_extractor = extract_html_fast if config.backend == "resiliparse" else extract_html
        result = html_extractor(
            text,
            page.final_url,
            include_tables=config.include_tables,
            include_comments=config.include_comments,
            max_links=config.max_links,
        )
        result.metadata["encoding"] = encoding
    elif kind is Kind.PDF:
        result = extract_pdf(page.body, max_pages=config.max_pdf_pages)
        result.file_name = file_name_of(page)
    elif kind is Kind.TEXT:
        text, encoding = decode_text(page.body, page.headers.get("content-type"))
        result = Extraction(text=text.strip() or None, metadata={"encoding": encoding})
        if not result.text:
            result.error = "text document is empty"
    elif kind is Kind.IMAGE:
        result = extract_image(page.body, media_type)
        result.file_name = file_name_of(page)
    elif kind is Kind.MEDIA:
        result = extract_media(media_type)
        result.file_name = file_name_of(page)
    elif kind is Kind.BINARY_AS_TEXT:
        result = Extraction(error=f"binary content served as {page.content_type or 'text'}")
    else:
        result = Extraction(error="empty body")
    result.content_type = media_type
    if page.truncated:
        result.metadata["truncated"] = True
        if result.error is None and kind in (Kind.PDF, Kind.IMAGE):
            result.error = "body cut at the size limit; document is incomplete"
    return result
