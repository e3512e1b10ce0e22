"""The two HTML backends (``extract.backend``): the same page gives the same record fields, the main text without
the chrome; a bad backend name and a missing optional package fail with messages that say what to do."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from crawler.cli import build_parser
from crawler.demo import DEMO_ROOT
from crawler.env_config import build_env_settings
from enrich.config import EnrichConfig, ExtractConfig
from enrich.errors import ConfigError
from enrich.extract import extract_page
from enrich.extract.fast_html import extract_html_fast, require_resiliparse
from enrich.extract.stage import ExtractStage

if TYPE_CHECKING:
    from collections.abc import Callable

    from enrich.record import FetchedPage

    PageFactory = Callable[..., FetchedPage]

pytest.importorskip("resiliparse", reason="the fast backend's tests need the 'fast' extra (resiliparse)")

BASE = "http://127.0.0.1:8000/"
BACKENDS = ["trafilatura", "resiliparse"]

ARTICLE = b"""<!doctype html>
<html lang="de-AT"><head>
<title>Tidal Mills of the North Sea | Coastal Review</title>
<meta name="description" content="How tidal mills ground grain along the coast.">
<meta name="author" content="Ada Fjeld">
<meta property="article:published_time" content="2023-09-02">
<meta property="og:site_name" content="Coastal Review">
<base href="https://coast.example/articles/">
</head><body>
<header><nav><ul><li><a href="/">Front page</a></li><li><a href="/weather">Weather desk</a></li>
<li><a href="/sport">Sport pages</a></li><li><a href="/shop">Subscription shop</a></li></ul></nav></header>
<main><article>
<h1>Tidal Mills of the North Sea</h1>
<p>A tidal mill stores the rising sea behind a dam and releases it through a wheel once the tide has turned,
so the miller works to the rhythm of the moon rather than the river.</p>
<p>The mill at Eling, rebuilt in 1785, still grinds flour on two tides a day and is one of the last of its kind
that anyone can visit while it is working.</p>
<p>Historians count more than seventy such mills on the coasts of England and the Low Countries around 1800,
most of them gone by the end of the century when steam took their trade.</p>
<table><tr><td>Eling</td><td>1785 rebuild noted in the mill ledger</td></tr></table>
<p>Read <a href="eling.html#history">the Eling story</a> or <a href="mailto:desk@coast.example">write to us</a>.</p>
</article></main>
<footer><p>Copyright Coastal Review. Cookie settings. Privacy notice for all readers.</p></footer>
</body></html>"""


def test_default_backend_is_trafilatura() -> None:
    assert ExtractConfig().backend == "trafilatura"
    assert EnrichConfig().extract.backend == "trafilatura"


@pytest.mark.parametrize("backend", BACKENDS)
def test_article_main_text_without_chrome(make_page: PageFactory, backend: str) -> None:
    result = extract_page(make_page(ARTICLE, url=BASE + "mills.html"), ExtractConfig(backend=backend))
    assert result.error is None
    assert result.text is not None
    assert "releases it through a wheel once the tide has turned" in result.text
    assert "still grinds flour on two tides a day" in result.text
    assert "more than seventy such mills" in result.text
    for chrome in ("Weather desk", "Subscription shop", "Cookie settings"):
        assert chrome not in result.text
    assert "\n\n" not in result.text  # one line per block with either backend
    assert result.metadata["extractor"] == backend
    assert result.metadata["encoding"] == "utf-8"
    assert result.metadata["site_name"] == "Coastal Review"
    assert result.description == "How tidal mills ground grain along the coast."
    assert result.author == "Ada Fjeld"
    assert result.published == "2023-09-02"
    assert result.language == "de"
    assert result.title is not None
    assert result.title.startswith("Tidal Mills of the North Sea")


def test_links_and_language_are_the_same_with_both_backends(make_page: PageFactory) -> None:
    results = [extract_page(make_page(ARTICLE, url=BASE), ExtractConfig(backend=b)) for b in BACKENDS]
    assert results[0].links == results[1].links
    assert results[1].links == [
        "https://coast.example/",
        "https://coast.example/weather",
        "https://coast.example/sport",
        "https://coast.example/shop",
        "https://coast.example/articles/eling.html",
    ]
    assert results[0].language == results[1].language == "de"


@pytest.mark.parametrize("name", ["lighthouse.html", "index.html"])
def test_demo_pages_agree_on_metadata(make_page: PageFactory, name: str) -> None:
    body = (DEMO_ROOT / name).read_bytes()
    slow, fast = (extract_page(make_page(body, url=BASE + name), ExtractConfig(backend=b)) for b in BACKENDS)
    assert fast.error is None
    assert (fast.title, fast.description, fast.author, fast.language, fast.links) == (
        slow.title,
        slow.description,
        slow.author,
        slow.language,
        slow.links,
    )
    assert slow.text is not None
    assert fast.text is not None
    first_paragraph = slow.text.splitlines()[1]
    assert first_paragraph in fast.text


def test_tables_can_be_left_out() -> None:
    kept = extract_html_fast(ARTICLE.decode(), BASE, include_tables=True)
    dropped = extract_html_fast(ARTICLE.decode(), BASE, include_tables=False)
    assert kept.text is not None
    assert dropped.text is not None
    assert "1785 rebuild noted in the mill ledger" in kept.text
    assert "1785 rebuild noted in the mill ledger" not in dropped.text
    assert "still grinds flour" in dropped.text


def test_max_links_caps_and_zero_skips() -> None:
    assert len(extract_html_fast(ARTICLE.decode(), BASE, max_links=2).links) == 2
    assert extract_html_fast(ARTICLE.decode(), BASE, max_links=0).links == []


def test_page_without_main_content_falls_back_to_all_text() -> None:
    result = extract_html_fast("<html><body><nav><a href='/a'>Archive of every issue</a></nav></body></html>", BASE)
    assert result.error is None
    assert result.text == "Archive of every issue"


@pytest.mark.parametrize(
    ("html", "error"),
    [("   ", "empty HTML document"), ("<html><head></head><body>  </body></html>", "HTML document has no text")],
)
def test_empty_pages_carry_an_error(html: str, error: str) -> None:
    assert extract_html_fast(html, BASE).error == error


def test_unknown_backend_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        EnrichConfig.from_mapping({"extract": {"backend": "readability"}})
    message = str(info.value)
    assert "extract.backend" in message
    assert "'trafilatura' or 'resiliparse'" in message
    assert "'readability'" in message


def test_yaml_key_and_flag_reach_the_config() -> None:
    settings = build_env_settings({"stages": {"enrichment": {"extract_backend": "resiliparse"}}}, env="test")
    assert settings.enrich.extract.backend == "resiliparse"
    args = build_parser().parse_args(["--extract-backend", "resiliparse"])
    assert args.extract_backend == "resiliparse"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--extract-backend", "goose"])


def hide_resiliparse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every import of resiliparse fail as if it were not installed (for this test only)."""
    for name in [m for m in sys.modules if m == "resiliparse" or m.startswith("resiliparse.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "resiliparse", None)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_resiliparse(monkeypatch)
    with pytest.raises(ConfigError, match=r"webenrich\[fast\]"):
        require_resiliparse()
    with pytest.raises(ConfigError, match=r"webenrich\[fast\]"):
        extract_html_fast("<p>text</p>", BASE)


async def test_stage_refuses_to_open_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_resiliparse(monkeypatch)
    stage = ExtractStage(config=ExtractConfig(backend="resiliparse"))
    with pytest.raises(ConfigError, match="resiliparse"):
        await stage.open()
    await stage.close()
    trafilatura_stage = ExtractStage(config=ExtractConfig())  # the default backend needs no optional package
    await trafilatura_stage.open()
    await trafilatura_stage.close()
