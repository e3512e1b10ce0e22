"""What a body is (magic bytes over headers) and how it becomes text (whatever charset it claims)."""

from __future__ import annotations

import codecs

import pytest

from crawler.demo import DEMO_ROOT, make_pdf, make_png
from enrich.extract.decode import Kind, decode_text, sniff_kind

HTML = "<!DOCTYPE html><html><head><title>Café</title></head><body><p>Crème brûlée à la carte</p></body></html>"
FRENCH = (
    "Le café du coin sert des crêpes – “délicieuses” – à prix réduit. "
    "Été comme hiver, la maîtresse de maison accueille ses hôtes avec une tarte aux pommes."
)


# --- sniff_kind ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "body", "kind", "reported"),
    [
        pytest.param("text/html", make_pdf(), Kind.PDF, "application/pdf", id="pdf-served-as-html"),
        pytest.param(None, make_pdf(), Kind.PDF, "application/pdf", id="pdf-no-type"),
        pytest.param(None, make_png(), Kind.IMAGE, "image/png", id="png-no-type"),
        pytest.param("text/plain", make_png(), Kind.IMAGE, "image/png", id="png-served-as-text"),
        pytest.param("text/html", b"\xff\xd8\xff\xe0\x00\x10JFIF", Kind.IMAGE, "image/jpeg", id="jpeg-as-html"),
        pytest.param(None, b"RIFF\x00\x00\x00\x00WEBPVP8 ", Kind.IMAGE, "image/webp", id="webp-no-type"),
        pytest.param("text/html", b"PK\x03\x04\x14\x00\x00\x00", Kind.MEDIA, "application/zip", id="zip-as-html"),
        pytest.param(None, b"ID3\x04\x00\x00\x00\x00", Kind.MEDIA, "audio/mpeg", id="mp3-no-type"),
    ],
)
def test_magic_bytes_beat_the_declared_type(declared: str | None, body: bytes, kind: Kind, reported: str) -> None:
    assert sniff_kind(declared, body) == (kind, reported)


def test_same_family_declared_type_is_kept_for_containers() -> None:
    # A .docx is a zip; its precise declared type says more than "application/zip".
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert sniff_kind(docx, b"PK\x03\x04rest") == (Kind.MEDIA, docx)


def test_pdf_served_as_octet_stream_reports_pdf() -> None:
    assert sniff_kind("application/octet-stream", make_pdf()) == (Kind.PDF, "application/pdf")


@pytest.mark.parametrize("declared", ["text/html", "text/plain", None])
def test_binary_served_as_text_is_flagged(declared: str | None) -> None:
    body = bytes(range(256)) * 8  # NUL and control bytes everywhere, no known magic
    kind, reported = sniff_kind(declared, body)
    assert kind is Kind.BINARY_AS_TEXT
    assert reported == declared


def test_control_bytes_without_nul_are_binary() -> None:
    body = bytes([1, 2, 3, 4, 5, 6, 7, 8]) * 40 + b"some text"
    assert sniff_kind("text/html", body)[0] is Kind.BINARY_AS_TEXT


@pytest.mark.parametrize("declared", ["text/html", "application/pdf", None])
def test_empty_body(declared: str | None) -> None:
    assert sniff_kind(declared, b"") == (Kind.EMPTY, declared)


def test_html_found_by_its_start_without_a_type() -> None:
    assert sniff_kind(None, b"  <!doctype html><html><p>x</p></html>") == (Kind.HTML, "text/html")
    assert sniff_kind("text/plain", b"<html><body>hi</body></html>") == (Kind.HTML, "text/plain")


def test_plain_text_and_non_prose_text_types() -> None:
    assert sniff_kind(None, b"just some words") == (Kind.TEXT, "text/plain")
    assert sniff_kind("text/markdown", b"# Title\n\nSome words.") == (Kind.TEXT, "text/markdown")
    assert sniff_kind("text/css", b"body { color: red }") == (Kind.MEDIA, "text/css")


def test_declared_types_without_magic() -> None:
    assert sniff_kind("application/pdf", b"garbage, not a pdf") == (Kind.PDF, "application/pdf")
    assert sniff_kind("image/png", b"garbage") == (Kind.IMAGE, "image/png")
    assert sniff_kind("audio/ogg", b"garbage") == (Kind.MEDIA, "audio/ogg")


def test_demo_pages_are_html() -> None:
    for path in sorted(DEMO_ROOT.glob("*.html")):
        assert sniff_kind("text/html", path.read_bytes()) == (Kind.HTML, "text/html"), path.name


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_html_with_bom_is_html(codec: str) -> None:
    bom = codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE
    assert sniff_kind("text/html", bom + HTML.encode(codec))[0] is Kind.HTML


# --- decode_text --------------------------------------------------------------------------------------------------


def test_utf8_declared_latin1_is_read_as_utf8() -> None:
    text, encoding = decode_text(FRENCH.encode("utf-8"), "text/html; charset=iso-8859-1")
    assert (text, encoding) == (FRENCH, "utf-8")


def test_cp1252_without_declaration_is_guessed() -> None:
    body = FRENCH.encode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    text, _ = decode_text(body, "text/html")
    assert text == FRENCH


def test_header_charset_is_used() -> None:
    body = FRENCH.encode("cp1252")
    assert decode_text(body, "text/html; charset=windows-1252") == (FRENCH, "cp1252")
    # latin-1 labels mean windows-1252, as in browsers: the curly quotes survive
    assert decode_text(body, 'text/html; charset="ISO-8859-1"') == (FRENCH, "cp1252")


def test_meta_charset_is_used() -> None:
    russian = "Привет, мир! Как дела сегодня в городе?"
    body = b'<html><head><meta charset="koi8-r"></head><body>' + russian.encode("koi8-r") + b"</body></html>"
    text, encoding = decode_text(body, "text/html")
    assert encoding == "koi8-r"
    assert russian in text


def test_wrong_header_charset_falls_back_to_meta() -> None:
    # header says utf-8, the bytes are not: the meta declaration is the next witness
    body = b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1252"><p>' + FRENCH.encode("cp1252")
    text, encoding = decode_text(body, "text/html; charset=utf-8")
    assert encoding == "cp1252"
    assert text.endswith(FRENCH)


def test_unknown_header_charset_is_ignored() -> None:
    text, _ = decode_text(FRENCH.encode("cp1252"), "text/html; charset=no-such-charset")
    assert text == FRENCH


def test_market_page_declares_latin1_in_meta() -> None:
    body = (DEMO_ROOT / "market.html").read_bytes()
    text, encoding = decode_text(body, "text/html")
    assert encoding == "cp1252"
    assert "café" in text
    assert "Løvstad" in text
    assert "\ufffd" not in text


@pytest.mark.parametrize(
    ("bom", "codec", "reported"),
    [
        (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
        (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    ],
)
def test_bom_wins_and_is_removed(bom: bytes, codec: str, reported: str) -> None:
    # a lying header must not beat the byte order mark
    text, encoding = decode_text(bom + HTML.encode(codec), "text/html; charset=iso-8859-1")
    assert (text, encoding) == (HTML, reported)


def test_undecodable_bytes_never_raise() -> None:
    body = bytes(range(128, 256)) * 4
    text, encoding = decode_text(body, "text/html")
    assert isinstance(text, str)
    assert text
    assert encoding
