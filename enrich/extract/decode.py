"""What a body really is, and how to turn it into text, whatever its headers claim."""

from __future__ import annotations

import codecs
import re
from enum import StrEnum

from charset_normalizer import from_bytes

__all__ = ["Kind", "decode_text", "sniff_kind"]


class Kind(StrEnum):
    """The extractor a body goes to."""

    HTML = "html"
    PDF = "pdf"
    TEXT = "text"
    IMAGE = "image"
    MEDIA = "media"
    """Audio, video, archives, fonts and every other binary: a record with type and size, no text."""
    BINARY_AS_TEXT = "binary_as_text"
    """A text type announced, binary bytes received: an error, not garbage text."""
    EMPTY = "empty"


_MAGIC: tuple[tuple[bytes, Kind, str], ...] = (
    (b"%PDF-", Kind.PDF, "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", Kind.IMAGE, "image/png"),
    (b"\xff\xd8\xff", Kind.IMAGE, "image/jpeg"),
    (b"GIF87a", Kind.IMAGE, "image/gif"),
    (b"GIF89a", Kind.IMAGE, "image/gif"),
    (b"PK\x03\x04", Kind.MEDIA, "application/zip"),
    (b"\x1f\x8b", Kind.MEDIA, "application/gzip"),
    (b"ID3", Kind.MEDIA, "audio/mpeg"),
    (b"OggS", Kind.MEDIA, "audio/ogg"),
)
_HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body|<!--|<meta|<title|<div|<p[\s>])", re.IGNORECASE)
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_TEXT_TYPES = {"text/plain", "text/markdown"}
_MEDIA_PREFIXES = ("image/", "audio/", "video/", "font/")


def _magic(body: bytes) -> tuple[Kind, str] | None:
    for prefix, kind, media_type in _MAGIC:
        if body.startswith(prefix):
            return kind, media_type
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return Kind.IMAGE, "image/webp"
    return None


def _looks_binary(body: bytes) -> bool:
    """NUL bytes or many control bytes in the first 2 KiB: no text encoding produces that."""
    head = body[:2048]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
        return False  # UTF-16/32 text: NUL bytes are half of every ASCII character
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return bool(head) and controls / len(head) > 0.1


def sniff_kind(content_type: str | None, body: bytes) -> tuple[Kind, str | None]:
    """Decide which extractor gets a body: magic bytes first, then the declared type, then a look at the bytes.

    Returns the kind and the media type to report (the sniffed one when the declared one lied or was missing).
    """
    if not body:
        return Kind.EMPTY, content_type
    sniffed = _magic(body)
    if sniffed is not None:
        kind, media_type = sniffed
        same_family = (
            content_type is not None
            and content_type not in {"application/octet-stream", "binary/octet-stream"}
            and content_type.split("/")[0] == media_type.split("/")[0]
        )
        if same_family and content_type not in _HTML_TYPES | _TEXT_TYPES:
            return kind, content_type
        return kind, media_type
    if content_type in _HTML_TYPES or content_type is None or content_type.startswith("text/"):
        if _looks_binary(body):
            return Kind.BINARY_AS_TEXT, content_type
        if content_type in _HTML_TYPES or _HTML_START.match(body[:1024]):
            return Kind.HTML, content_type or "text/html"
        if content_type is None or content_type in _TEXT_TYPES:
            return Kind.TEXT, content_type or "text/plain"
        return Kind.MEDIA, content_type  # text/css, text/javascript, text/csv: not prose
    if content_type == "application/pdf":
        return Kind.PDF, content_type  # no magic: the PDF extractor reports it as malformed
    if _HTML_START.match(body[:1024]) and not _looks_binary(body):
        return Kind.HTML, "text/html"  # markup served under a binary type (a misconfigured server)
    if content_type.startswith("image/"):
        return Kind.IMAGE, content_type
    return Kind.MEDIA, content_type


_WESTERN_SINGLE_BYTE = frozenset(
    {
        "cp1250",
        "cp1252",
        "cp1254",
        "cp1257",
        "cp1258",
        "latin_1",
        "iso8859_2",
        "iso8859_3",
        "iso8859_4",
        "iso8859_9",
        "iso8859_10",
        "iso8859_13",
        "iso8859_14",
        "iso8859_15",
        "iso8859_16",
        "mac_roman",
        "mac_latin2",
    }
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _normalize_encoding(name: str | None) -> str | None:
    if not name:
        return None
    try:
        canonical = codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None
    # Browsers decode latin-1 labels as windows-1252 (WHATWG Encoding); so do we.
    return "cp1252" if canonical in {"latin-1", "iso8859-1", "ascii"} else canonical


def _charset_param(content_type_header: str | None) -> str | None:
    if not content_type_header:
        return None
    match = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type_header, re.IGNORECASE)
    return match.group(1) if match else None


def decode_text(body: bytes, content_type_header: str | None = None) -> tuple[str, str]:
    """Decode a text body whose declared charset may be wrong or missing.

    Order: a BOM; UTF-8 when the bytes are valid UTF-8 (a legacy charset almost never is, so this corrects the
    common "declared latin-1, sent UTF-8" lie); the header's charset; the ``<meta>`` charset; a statistical guess;
    windows-1252 with replacement as the last resort. Returns the text and the encoding used.
    """
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, errors="replace"), encoding
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    meta = _META_CHARSET.search(body[:4096])
    declared = (_charset_param(content_type_header), meta.group(1).decode("ascii", "ignore") if meta else None)
    for candidate in declared:
        declared_encoding = _normalize_encoding(candidate)
        if declared_encoding and declared_encoding != "utf-8":
            try:
                return body.decode(declared_encoding), declared_encoding
            except (UnicodeDecodeError, LookupError):
                continue
    best = from_bytes(body[:65536]).best()
    if best is not None and best.encoding:
        # Statistical guesses often confuse the Western single-byte charsets with one another (cp1257 for
        # French); windows-1252 is by far the most common of them on the web, so it wins within that family.
        guess = "cp1252" if best.encoding in _WESTERN_SINGLE_BYTE else best.encoding
        return body.decode(guess, errors="replace"), guess
    return body.decode("cp1252", errors="replace"), "cp1252"
