"""Text, page count and document metadata of a PDF, through pypdf."""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

from enrich.extract.result import Extraction

__all__ = ["extract_pdf"]

_META_KEYS = {"/Producer": "producer", "/Creator": "creator", "/Subject": "subject", "/Keywords": "pdf_keywords"}


def _iso_date(value: object) -> str | None:
    """PDF dates look like ``D:20240131120000+01'00'``; keep the date part as ISO 8601."""
    text = str(value or "").removeprefix("D:")
    if len(text) >= 8 and text[:8].isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:8]}"
    return None


def extract_pdf(body: bytes, *, max_pages: int = 500) -> Extraction:
    """Extract a PDF. Never raises on a bad file: the result carries an error instead."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns per broken object; the record says enough
    try:
        reader = PdfReader(io.BytesIO(body), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            return Extraction(error="PDF is encrypted with a password")
        pages = reader.pages
        page_count = len(pages)
        texts = [pages[i].extract_text() or "" for i in range(min(page_count, max_pages))]
        info: dict[str, object] = dict(reader.metadata or {})
    except (
        PdfReadError,
        PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
        OSError,
        NotImplementedError,
    ) as exc:
        return Extraction(error=f"malformed PDF: {exc or type(exc).__name__}")
    result = Extraction(page_count=page_count, text="\n".join(t.strip() for t in texts if t.strip()) or None)
    result.title = str(info.get("/Title") or "").strip() or None
    result.author = str(info.get("/Author") or "").strip() or None
    result.published = _iso_date(info.get("/CreationDate"))
    result.metadata = {name: str(info[key]).strip() for key, name in _META_KEYS.items() if info.get(key)}
    if page_count > max_pages:
        result.metadata["pages_read"] = max_pages
    if not result.text:
        result.error = "PDF has no extractable text (scanned or empty)"
    return result
