"""What a body really is, and how to turn it into text, whatever its headers claim."""

from __future__ import annotations

import codecs
import re
from enum import StrEnum

from charset_normalizer import from_bytes
from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding, resolve_encoding

__all__ = ["Kind", "declared_encodings", "decode_text", "sniff_kind"]


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
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _gb18030_euro(exc: UnicodeError) -> tuple[str, int]:
    """The WHATWG GB18030 decoder reads a lone 0x80 as the euro sign (as GBK did); Python's codec refuses it.
    Any other undecodable byte still fails the strict decode."""
    if isinstance(exc, UnicodeDecodeError) and exc.object[exc.start] == 0x80:
        return "\u20ac", exc.start + 1
    raise exc


codecs.register_error("enrich_gb18030_euro", _gb18030_euro)


def declared_encodings(body: bytes, content_type_header: str | None = None) -> list[str]:
    """The encodings the ``Content-Type`` header and then the document (``<meta charset>``, ``<meta http-equiv>``,
    ``<?xml encoding?>``, before ``<body>``) declare, as Python codec names, labels mapped as browsers map them
    (WHATWG Encoding): ``gb2312``/``gbk`` mean GB18030, ``shift_jis`` windows-31j (``cp932``), ``euc-kr``
    windows-949 (``cp949``), ``iso-8859-1``/``latin1``/``ascii`` windows-1252, ``iso-8859-9`` windows-1254,
    ``tis-620`` windows-874, ``big5`` Big5-HKSCS. Unknown labels and UTF-7 are left out.

    w3lib finds and maps the labels (:func:`~w3lib.encoding.http_content_type_encoding`,
    :func:`~w3lib.encoding.html_body_declared_encoding`, :func:`~w3lib.encoding.resolve_encoding`). Two WHATWG
    rules it leaves to callers are applied here: a ``utf-16`` label in the header means UTF-16LE, and a document
    that declares UTF-16 or UTF-32 in ASCII markup is not in it (browsers read it as UTF-8).
    """
    found: list[str] = []
    header = http_content_type_encoding(content_type_header)
    if header is not None:
        found.append(f"{header}-le" if header in {"utf-16", "utf-32"} else header)
    document = html_body_declared_encoding(body[:4096])
    if document is not None:
        found.append("utf-8" if document.startswith(("utf-16", "utf-32")) else document)
    return list(dict.fromkeys(found))


def _decode_strict(body: bytes, encoding: str) -> str:
    errors = "enrich_gb18030_euro" if encoding == "gb18030" else "strict"
    return body.decode(encoding, errors)


def decode_text(body: bytes, content_type_header: str | None = None) -> tuple[str, str]:
    """Decode a text body whose declared charset may be wrong or missing.

    Order: a BOM; UTF-8 when the bytes are valid UTF-8 (a legacy charset almost never is, so this corrects the
    common "declared latin-1, sent UTF-8" lie); the header's charset; the document's (:func:`declared_encodings`:
    labels mapped as browsers map them, so a ``gb2312`` page using a GBK character decodes); a statistical guess
    (mapped the same way: a guessed ``euc_kr`` is read as ``cp949``); windows-1252 with replacement as the last
    resort. A declared charset the bytes do not fit is skipped, not applied with replacement characters. Returns
    the text and the encoding used.

    Not w3lib's ``html_to_unicode``: it applies the first label found with replacement characters and has no
    "valid UTF-8 wins" step, so a page sent in UTF-8 but labelled latin-1 (common) would come out as mojibake.
    """
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, errors="replace"), encoding
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    for declared in declared_encodings(body, content_type_header):
        if declared != "utf-8":
            try:
                return _decode_strict(body, declared), declared
            except (UnicodeDecodeError, LookupError):
                continue
    best = from_bytes(body[:65536]).best()
    if best is not None and best.encoding:
        # Statistical guesses often confuse the Western single-byte charsets with one another (cp1257 for
        # French); windows-1252 is by far the most common of them on the web, so it wins within that family.
        guess = "cp1252" if best.encoding in _WESTERN_SINGLE_BYTE else resolve_encoding(best.encoding) or best.encoding
        return body.decode(guess, errors="replace"), guess
    return body.decode("cp1252", errors="replace"), "cp1252"
