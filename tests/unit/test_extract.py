"""Extraction of HTML, PDF, images and other media from stored and generated bodies: fields right, never a raise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from crawler.demo import DEMO_ROOT, make_pdf, make_png
from enrich.extract import extract_page, file_name_of
from enrich.extract.html import extract_html
from enrich.extract.media import extract_image, extract_media
from enrich.extract.pdf import extract_pdf
from enrich.extract.stage import ExtractStage
from enrich.stages import WorkItem

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from enrich.record import FetchedPage

    PageFactory = Callable[..., FetchedPage]

BASE = "http://127.0.0.1:8000/"


def demo_html(name: str) -> bytes:
    return (DEMO_ROOT / name).read_bytes()


# --- HTML: metadata -----------------------------------------------------------------------------------------------


def test_lighthouse_metadata(make_page: PageFactory) -> None:
    result = extract_page(make_page(demo_html("lighthouse.html"), url=BASE + "lighthouse.html"))
    assert result.error is None
    assert result.content_type == "text/html"
    assert result.title == "The Lighthouse of Harbour Town"
    assert result.description == "History of the Harbour Town lighthouse, from 1872 to its automation."
    assert result.author == "Ingrid Solberg"
    assert result.published == "2024-05-14"
    assert result.language == "en"
    assert result.metadata["encoding"] == "utf-8"
    assert result.text is not None
    assert "designed by the engineer Anders Holm" in result.text
    # the main text, not the navigation chrome
    assert "Home | Market" not in result.text


def test_index_links_are_absolute_and_in_page_order(make_page: PageFactory) -> None:
    result = extract_page(make_page(demo_html("index.html"), url=BASE + "index.html"))
    assert result.links == [
        BASE,
        BASE + "lighthouse.html",
        BASE + "market.html",
        BASE + "festival.html",
        BASE + "survey-report.pdf",
        BASE + "harbour-map.png",
        "https://example.org/about",
    ]
    assert result.author == "The Webenrich Authors"


def test_market_page_decodes_its_meta_charset(make_page: PageFactory) -> None:
    body = demo_html("market.html")
    assert "café".encode("latin-1") in body  # the file really is latin-1
    result = extract_page(make_page(body, content_type="text/html", url=BASE + "market.html"))
    assert result.metadata["encoding"] == "cp1252"
    assert result.text is not None
    assert "The café on the corner" in result.text
    assert "the baker Løvstad" in result.text
    assert result.language is None  # the page declares none; the NLP stage detects it


LINKS_PAGE = b"""<html><head><base href="https://cdn.example.org/docs/"><title>Links</title></head><body>
<p>A page with every kind of link.</p>
<a href="page.html#section-2">relative with fragment</a>
<a href="/root">root relative</a>
<a href="#top">fragment only</a>
<a href="mailto:someone@example.org">mail</a>
<a href="javascript:void(0)">script</a>
<a href="tel:+4712345678">phone</a>
<a href="data:text/plain,hello">data</a>
<a href="ftp://ftp.example.org/file.txt">ftp</a>
<a href="//other.example.com/x#y">protocol relative</a>
<a href="http://[::1">malformed IPv6</a>
<a href="page.html">duplicate once the fragment is gone</a>
<a href="  https://example.com/spaced  ">spaces around</a>
<a>no href</a>
</body></html>"""


def test_links_absolute_deduplicated_http_only_with_base_href(make_page: PageFactory) -> None:
    result = extract_page(make_page(LINKS_PAGE, url="http://site.example.net/a/b.html"))
    assert result.links == [
        "https://cdn.example.org/docs/page.html",
        "https://cdn.example.org/root",
        "https://other.example.com/x",
        "https://example.com/spaced",
    ]
    for link in result.links:
        assert link.startswith(("http://", "https://"))
        assert "#" not in link


def test_max_links_caps_the_list() -> None:
    result = extract_html(LINKS_PAGE.decode(), "http://site.example.net/", max_links=2)
    assert result.links == ["https://cdn.example.org/docs/page.html", "https://cdn.example.org/root"]
    assert extract_html(LINKS_PAGE.decode(), "http://site.example.net/", max_links=0).links == []


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ('lang="en-GB"', "en"),
        ('lang="pt_BR"', "pt"),
        ('lang="x"', None),
        ('lang="english"', None),
        ("", None),
    ],
)
def test_language_from_the_html_element(attribute: str, expected: str | None) -> None:
    html = f"<html {attribute}><head><title>T</title></head><body><p>Some words in a paragraph.</p></body></html>"
    assert extract_html(html, BASE).language == expected


def test_language_from_xml_lang() -> None:
    html = '<html xml:lang="de"><head><title>T</title></head><body><p>Ein paar Worte.</p></body></html>'
    assert extract_html(html, BASE).language == "de"


def test_language_from_content_language_meta() -> None:
    html = (
        '<html><head><meta http-equiv="content-language" content="nb-NO"><title>T</title></head>'
        "<body><p>Noen ord.</p></body></html>"
    )
    assert extract_html(html, BASE).language == "nb"


NAV_ONLY = b"""<!DOCTYPE html><html><head><title>Site map</title></head><body><nav><ul>
<li><a href="/alpha">Alpha section</a></li><li><a href="/beta">Beta section</a></li>
<li><a href="/gamma">Gamma section</a></li></ul></nav></body></html>"""


def test_navigation_only_page_falls_back_to_visible_text(make_page: PageFactory) -> None:
    result = extract_page(make_page(NAV_ONLY))
    assert result.error is None
    assert result.title == "Site map"
    assert result.text is not None
    for label in ("Alpha section", "Beta section", "Gamma section"):
        assert label in result.text
    assert result.links == [BASE + "alpha", BASE + "beta", BASE + "gamma"]


# --- HTML: bad input ----------------------------------------------------------------------------------------------


def test_empty_body_is_an_error(make_page: PageFactory) -> None:
    result = extract_page(make_page(b""))
    assert result.error == "empty body"
    assert result.text is None


def test_whitespace_only_html_is_an_error(make_page: PageFactory) -> None:
    result = extract_page(make_page(b"  \n\t "))
    assert result.error == "empty HTML document"


def test_html_without_text_is_an_error(make_page: PageFactory) -> None:
    result = extract_page(make_page(b"<html><head></head><body></body></html>"))
    assert result.error == "HTML document has no text"


@pytest.mark.parametrize("cut", [20, 60, 300, 700, 1000])
def test_truncated_html_never_raises(make_page: PageFactory, cut: int) -> None:
    body = demo_html("lighthouse.html")[:cut]
    result = extract_page(make_page(body, truncated=True))
    assert result.metadata["truncated"] is True
    # a cut page keeps what it has; it is an error only when nothing at all is left
    assert (result.error is None) == bool(result.text or result.title)
    if cut >= 300:
        assert result.title == "The Lighthouse of Harbour Town"


def test_truncated_html_keeps_the_text_before_the_cut(make_page: PageFactory) -> None:
    body = demo_html("lighthouse.html")
    cut = body.index(b"Birmingham")
    result = extract_page(make_page(body[:cut]))
    assert result.error is None
    assert result.text is not None
    assert "Anders Holm" in result.text


@pytest.mark.parametrize(
    "body",
    [
        b"<html><p>unclosed <b>bold <i>italic</p></div></span><<>>&&&; <p>More text that goes on.",
        b"<p>no html element at all, just a paragraph with words</p>",
        b"<html><body><table><tr><td>cell one<td>cell two</table><p>after the table</body>",
        b"<html><head><title>Only a title",
        b"<!-- a comment that never ends <p>hidden",
        b"<html>" + b"<div>" * 3000 + b"deep text" + b"</div>" * 10 + b"</html>",
    ],
    ids=["tag-soup", "fragment", "unclosed-cells", "title-only", "open-comment", "deep-nesting"],
)
def test_malformed_html_never_raises(make_page: PageFactory, body: bytes) -> None:
    result = extract_page(make_page(body))
    assert result.content_type == "text/html"
    assert result.error is None or result.error.startswith(("HTML document has no text", "unparsable HTML"))
    if result.error is None:
        assert result.text or result.title


def test_binary_served_as_html_is_an_error(make_page: PageFactory) -> None:
    result = extract_page(make_page(bytes(range(256)) * 4, content_type="text/html"))
    assert result.error == "binary content served as text/html"
    assert result.text is None


def test_plain_text(make_page: PageFactory) -> None:
    result = extract_page(make_page("Plain words, naïvely typed.\n".encode(), content_type="text/plain"))
    assert (result.text, result.error, result.content_type) == ("Plain words, naïvely typed.", None, "text/plain")
    assert extract_page(make_page(b"  \n", content_type="text/plain")).error == "text document is empty"


def test_xhtml_with_xml_declaration(make_page: PageFactory) -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">'
        b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter 1. Getting Started</title></head>'
        b"<body><p>This chapter explains how to install the database server and run a first query.</p>"
        b'<a href="install.html">Installation</a></body></html>'
    )
    result = extract_page(make_page(body, url="https://docs.example.org/15/start.html"))
    assert result.error is None
    assert result.title == "Chapter 1. Getting Started"
    assert result.links == ["https://docs.example.org/15/install.html"]


def test_no_published_date_when_the_page_declares_none(make_page: PageFactory) -> None:
    result = extract_page(make_page(demo_html("festival.html"), url=BASE + "festival.html"))
    assert result.published is None


# --- PDF ----------------------------------------------------------------------------------------------------------


def test_pdf_text_and_metadata(make_page: PageFactory) -> None:
    result = extract_page(make_page(make_pdf(), content_type="application/pdf", url=BASE + "survey-report.pdf"))
    assert result.error is None
    assert result.content_type == "application/pdf"
    assert result.title == "Harbour Town Survey Report"
    assert result.author == "Ingrid Solberg"
    assert result.published == "2024-06-01"
    assert result.page_count == 1
    assert result.file_name == "survey-report.pdf"
    assert result.metadata["producer"] == "webenrich demo"
    assert result.text is not None
    assert "Prepared by Ingrid Solberg, University of Bergen, June 2024." in result.text


def test_pdf_served_as_html_is_read_as_pdf(make_page: PageFactory) -> None:
    result = extract_page(make_page(make_pdf(), content_type="text/html"))
    assert result.content_type == "application/pdf"
    assert result.page_count == 1
    assert result.error is None


@pytest.mark.parametrize(
    "body",
    [make_pdf()[:200], make_pdf()[: len(make_pdf()) // 2], b"\x00\x01garbage, not a PDF at all" * 20, b"%PDF-1.7\n"],
    ids=["first-200-bytes", "first-half", "garbage", "header-only"],
)
def test_broken_pdf_gives_an_error_and_never_raises(make_page: PageFactory, body: bytes) -> None:
    result = extract_page(make_page(body, content_type="application/pdf", url=BASE + "broken.pdf"))
    assert result.error is not None
    assert result.error.startswith(("malformed PDF", "PDF has no extractable text"))
    assert result.content_type == "application/pdf"
    assert result.file_name == "broken.pdf"


def test_pdf_cut_at_the_size_limit_is_flagged(make_page: PageFactory) -> None:
    result = extract_page(make_page(make_pdf(), content_type="application/pdf", truncated=True))
    assert result.error == "body cut at the size limit; document is incomplete"
    assert result.metadata["truncated"] is True


def test_pdf_without_text() -> None:
    result = extract_pdf(make_pdf(lines=()))
    assert result.page_count == 1
    assert result.error == "PDF has no extractable text (scanned or empty)"


@pytest.mark.corpus
def test_pdf_max_pages(corpus_dir: Path) -> None:
    result = extract_pdf((corpus_dir / "pdf" / "CAD.pdf").read_bytes(), max_pages=2)
    assert result.page_count == 7
    assert result.metadata["pages_read"] == 2
    full = extract_pdf((corpus_dir / "pdf" / "CAD.pdf").read_bytes())
    assert result.text is not None
    assert full.text is not None
    assert len(result.text) < len(full.text)


# --- images and other media ---------------------------------------------------------------------------------------


def test_png_dimensions(make_page: PageFactory) -> None:
    result = extract_page(make_page(make_png(64, 48), content_type=None, url=BASE + "harbour-map.png"))
    assert result.error is None
    assert result.content_type == "image/png"
    assert result.metadata == {"width": 64, "height": 48, "format": "PNG"}
    assert result.file_name == "harbour-map.png"
    assert result.text is None


@pytest.mark.parametrize(
    "body", [make_png()[:30], b"\x89PNG\r\n\x1a\n" + b"x" * 50, b"not an image"], ids=["cut", "bad-chunks", "garbage"]
)
def test_broken_image_gives_an_error_and_never_raises(make_page: PageFactory, body: bytes) -> None:
    result = extract_page(make_page(body, content_type="image/png"))
    assert result.error is not None
    assert result.error.startswith("unreadable image")
    assert result.content_type == "image/png"


def test_extract_image_and_media_directly() -> None:
    assert extract_image(make_png(10, 20), "image/png").metadata["height"] == 20
    media = extract_media("video/mp4")
    assert (media.content_type, media.error, media.text) == ("video/mp4", None, None)


MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 200
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 200


@pytest.mark.parametrize(
    ("body", "content_type", "url", "headers", "expected_type", "expected_name"),
    [
        (MP3, "audio/mpeg", "http://h/music/My%20Song.mp3?download=1", {}, "audio/mpeg", "My Song.mp3"),
        (MP3, None, "http://h/stream", {}, "audio/mpeg", "stream"),
        (
            ZIP,
            "application/zip",
            "http://h/download?id=3",
            {"Content-Disposition": 'attachment; filename="data set.zip"'},
            "application/zip",
            "data set.zip",
        ),
        (
            ZIP,
            "application/octet-stream",
            "http://h/files/",
            {"Content-Disposition": "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.zip"},
            "application/zip",  # sniffed: the generic declared type says less than the bytes
            "résumé.zip",
        ),
        (
            ZIP,
            "application/zip",
            "http://h/x.zip",
            {"Content-Disposition": 'attachment; filename="../../etc/passwd"'},
            "application/zip",
            "passwd",
        ),
        (ZIP, "application/zip", "http://h/", {}, "application/zip", None),
    ],
    ids=["mp3-url-path", "mp3-no-type", "zip-disposition", "zip-disposition-rfc5987", "path-traversal", "no-name"],
)
async def test_media_record_has_type_size_and_file_name(
    make_page: PageFactory,
    body: bytes,
    content_type: str | None,
    url: str,
    headers: dict[str, str],
    expected_type: str,
    expected_name: str | None,
) -> None:
    page = make_page(body, content_type=content_type, url=url, headers=headers)
    assert file_name_of(page) == expected_name
    stage = ExtractStage()
    await stage.open()
    try:
        item = await stage.process(WorkItem.from_page(page, engine="async"))
    finally:
        await stage.close()
    record = item.record
    assert item.page is None  # the body is released once read
    assert record.error is None
    assert record.content_type == expected_type
    assert record.size_bytes == len(body)
    assert record.file_name == expected_name
    assert record.text is None
    assert record.word_count == 0


# --- the extraction stage -----------------------------------------------------------------------------------------


async def test_extract_stage_fills_the_record_and_notes_errors(make_page: PageFactory) -> None:
    stage = ExtractStage()
    await stage.open()
    try:
        good = await stage.process(WorkItem.from_page(make_page(demo_html("lighthouse.html")), engine="async"))
        bad = await stage.process(
            WorkItem.from_page(make_page(make_pdf()[:200], content_type="application/pdf"), engine="scrapy")
        )
    finally:
        await stage.close()
    assert good.record.error is None
    assert good.record.title == "The Lighthouse of Harbour Town"
    assert good.record.text is not None
    assert good.record.word_count == len(good.record.text.split()) > 50
    assert bad.record.error is not None
    assert bad.record.error.type == "ContentError"
    assert bad.record.error.stage == "extract"
    assert bad.record.error.message.startswith("malformed PDF")
    assert bad.record.engine == "scrapy"


@pytest.mark.corpus
def test_sphinx_title_has_no_permalink_sign(make_page: PageFactory, corpus_dir: Path) -> None:
    body = (corpus_dir / "pages" / "python" / "asyncio-task.html").read_bytes()
    result = extract_page(make_page(body, url="http://127.0.0.1/asyncio-task.html"))
    assert result.title == "Coroutines and Tasks"
