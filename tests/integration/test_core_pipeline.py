"""The whole core chain (extract -> NLP with the real spaCy model -> sinks) on our demo pages and on real pages.

No engine and no network: pages are read from disk into :class:`FetchedPage` as an engine would hand them over.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from typing import TYPE_CHECKING

import pytest

from crawler.demo import DEMO_ROOT, make_pdf, make_png
from enrich.config import EnrichConfig
from enrich.errors import NLPError
from enrich.pipeline import build_stages
from enrich.record import FetchedPage, Record
from enrich.sinks import JsonlSink, MemorySink
from enrich.stages import StageChain, WorkItem

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from jsonschema import Draft202012Validator

DEMO_BASE = "http://127.0.0.1:8000/"
CORPUS_BASE = "http://127.0.0.1:8001/"
PYTHON_PAGES = 10
POSTGRES_PAGES = ("tutorial-start.html", "sql-select.html")
CORPUS_PDFS = {"CAD.pdf": 7, "asyRefCard.pdf": 3}
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def page(body: bytes, content_type: str, url: str) -> FetchedPage:
    return FetchedPage(
        url=url,
        final_url=url,
        status=200,
        headers={"content-type": content_type},
        body=body,
        fetched_at="2024-06-01T12:00:00.000Z",
        fetch_duration_ms=3.0,
    )


def html_title(body: bytes, encoding: str = "utf-8") -> str:
    """The <title> as written in the file, read without the code under test."""
    match = _TITLE.search(body.decode(encoding))
    assert match is not None
    return " ".join(html.unescape(match.group(1)).split())


def config_for(tmp_path: Path, **nlp: object) -> EnrichConfig:
    # small output batches so the sinks flush during the run and again on close
    return EnrichConfig().replace(output={"path": str(tmp_path / "unused.jsonl"), "batch_size": 3}, nlp=nlp)


async def run_chain(pages: Sequence[FetchedPage], config: EnrichConfig, jsonl: Path) -> list[Record]:
    """Run every page through build_stages concurrently (so NLP batches form), into memory and JSONL."""
    memory = MemorySink()
    chain = StageChain(build_stages(config, sinks=[memory, JsonlSink(path=jsonl)]))
    async with chain:
        await asyncio.gather(*(chain.process(WorkItem.from_page(p, engine="async")) for p in pages))
    return memory.records


def by_name(records: Sequence[Record]) -> dict[str, Record]:
    return {r.url.rsplit("/", 1)[-1]: r for r in records}


def nlp_view(record: Record) -> tuple[object, ...]:
    return (record.entities, record.keywords, record.summary, record.language)


def summary_pieces(summary: str, text: str) -> list[str]:
    """Cut the summary into the fewest runs of words that each occur verbatim in the (whitespace-normalized) text.

    Greedy longest match is optimal here because any part of a substring is a substring. An extractive summary
    of N sentences is at most N pieces; a piece that is not in the text fails at once.
    """
    flat = " ".join(text.split())
    words = summary.split(" ")
    pieces: list[str] = []
    start = 0
    while start < len(words):
        end = start + 1
        assert words[start] in flat, f"summary word {words[start]!r} is not in the text"
        while end < len(words) and " ".join(words[start : end + 1]) in flat:
            end += 1
        pieces.append(" ".join(words[start:end]))
        start = end
    return pieces


def test_summary_pieces_checker() -> None:
    text = "First sentence here.\nSecond one follows.  Third closes it."
    assert summary_pieces("First sentence here. Third closes it.", text) == ["First sentence here.", "Third closes it."]
    with pytest.raises(AssertionError, match="'invented'"):
        summary_pieces("First invented sentence.", text)


def assert_enriched(record: Record) -> None:
    """What every record of a page with prose must hold after the whole chain."""
    assert record.error is None, record.error
    assert record.text
    assert record.language == "en"
    assert record.word_count == len(record.text.split()) > 0
    assert record.entities
    for entity in record.entities:
        assert entity.text.strip()
        assert entity.label.isupper()
        assert entity.count >= 1
    assert record.keywords
    assert len(record.keywords) <= 10
    for keyword in record.keywords:
        assert keyword == keyword.lower()
        assert keyword.isalpha()
    if record.word_count >= 100:  # a tiny page may have no sentence worth a summary
        assert record.summary
    if record.summary:
        assert len(summary_pieces(record.summary, record.text)) <= 3  # summary_sentences, the default
    assert record.enriched_at is not None
    assert record.process_duration_ms is not None


def assert_jsonl_matches(path: Path, records: Sequence[Record], validator: Draft202012Validator) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        validator.validate(line)
    assert sorted(lines, key=lambda d: d["url"]) == sorted((r.to_dict() for r in records), key=lambda d: d["url"])


# --- (a) our demo site --------------------------------------------------------------------------------------------


def demo_site_pages() -> list[FetchedPage]:
    pages = [page(p.read_bytes(), "text/html", DEMO_BASE + p.name) for p in sorted(DEMO_ROOT.glob("*.html"))]
    pages.append(page(make_pdf(), "application/pdf", DEMO_BASE + "survey-report.pdf"))
    pages.append(page(make_png(), "image/png", DEMO_BASE + "harbour-map.png"))
    return pages


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Record], Path]:
    tmp_path = tmp_path_factory.mktemp("demo")
    jsonl = tmp_path / "demo.jsonl"
    records = asyncio.run(run_chain(demo_site_pages(), config_for(tmp_path), jsonl))
    return by_name(records), jsonl


def test_demo_every_document_gives_one_record(demo_run: tuple[dict[str, Record], Path]) -> None:
    records, _ = demo_run
    assert sorted(records) == sorted(
        [p.name for p in DEMO_ROOT.glob("*.html")] + ["survey-report.pdf", "harbour-map.png"]
    )
    for record in records.values():
        assert record.engine == "async"
        assert record.status == 200


@pytest.mark.parametrize("name", ["index.html", "lighthouse.html", "market.html", "festival.html"])
def test_demo_html_pages(demo_run: tuple[dict[str, Record], Path], name: str) -> None:
    record = demo_run[0][name]
    body = (DEMO_ROOT / name).read_bytes()
    encoding = "latin-1" if name == "market.html" else "utf-8"
    assert record.title == html_title(body, encoding)
    assert record.content_type == "text/html"
    assert record.size_bytes == len(body)
    assert_enriched(record)


def test_demo_lighthouse_entities(demo_run: tuple[dict[str, Record], Path]) -> None:
    record = demo_run[0]["lighthouse.html"]
    found = {(e.text, e.label) for e in record.entities}
    assert ("Anders Holm", "PERSON") in found or ("Birmingham", "GPE") in found, found
    assert {e.label for e in record.entities} & {"PERSON", "ORG", "GPE"}
    assert "lighthouse" in record.keywords
    assert record.author == "Ingrid Solberg"
    assert record.published == "2024-05-14"


def test_demo_market_latin1_page(demo_run: tuple[dict[str, Record], Path]) -> None:
    record = demo_run[0]["market.html"]
    assert record.text is not None
    assert "The café on the corner" in record.text
    assert "the baker Løvstad" in record.text
    assert "\ufffd" not in record.text
    assert record.metadata["encoding"] == "cp1252"
    assert record.language == "en"  # no lang attribute: detected by the NLP stage


def test_demo_pdf(demo_run: tuple[dict[str, Record], Path]) -> None:
    record = demo_run[0]["survey-report.pdf"]
    assert_enriched(record)
    assert record.content_type == "application/pdf"
    assert record.page_count == 1
    assert record.title == "Harbour Town Survey Report"
    assert record.file_name == "survey-report.pdf"
    assert any(e.text == "Ingrid Solberg" for e in record.entities)


def test_demo_png(demo_run: tuple[dict[str, Record], Path]) -> None:
    record = demo_run[0]["harbour-map.png"]
    assert record.error is None
    assert record.content_type == "image/png"
    assert record.metadata == {"width": 64, "height": 48, "format": "PNG"}
    assert (record.text, record.word_count, record.entities, record.keywords, record.summary) == (None, 0, [], [], None)


def test_demo_jsonl_is_valid_and_matches_memory(
    demo_run: tuple[dict[str, Record], Path], record_validator: Draft202012Validator
) -> None:
    records, jsonl = demo_run
    assert_jsonl_matches(jsonl, list(records.values()), record_validator)


# --- (b) real pages from the corpus -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_pages(corpus_dir: Path) -> list[FetchedPage]:
    python = sorted((corpus_dir / "pages" / "python").glob("*.html"))[:PYTHON_PAGES]
    postgres = [corpus_dir / "sites" / "postgresql" / name for name in POSTGRES_PAGES]
    pages = [page(p.read_bytes(), "text/html", CORPUS_BASE + p.name) for p in [*python, *postgres]]
    pages += [page((corpus_dir / "pdf" / n).read_bytes(), "application/pdf", CORPUS_BASE + n) for n in CORPUS_PDFS]
    return pages


@pytest.fixture(scope="module")
def corpus_run(
    corpus_pages: list[FetchedPage], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Record], Path]:
    tmp_path = tmp_path_factory.mktemp("corpus")
    jsonl = tmp_path / "corpus.jsonl"
    records = asyncio.run(run_chain(corpus_pages, config_for(tmp_path), jsonl))
    return by_name(records), jsonl


@pytest.mark.corpus
@pytest.mark.slow
def test_corpus_python_pages(corpus_run: tuple[dict[str, Record], Path], corpus_dir: Path) -> None:
    records = corpus_run[0]
    python = sorted((corpus_dir / "pages" / "python").glob("*.html"))[:PYTHON_PAGES]
    assert len(python) == PYTHON_PAGES
    for path in python:
        record = records[path.name]
        # "<name> — <what> — Python 3.11.2 documentation": the page's own part; the extractor may keep Sphinx's
        # permalink sign (see test_extract.py::test_sphinx_title_has_no_permalink_sign)
        expected = html_title(path.read_bytes()).rsplit(" — ", 1)[0]
        assert record.title is not None
        assert record.title.removesuffix("¶") == expected, path.name
        assert record.metadata.get("site_name") == "Python 3.11.2 documentation"
        assert record.links
        assert_enriched(record)


@pytest.mark.corpus
@pytest.mark.slow
def test_corpus_postgres_pages(corpus_run: tuple[dict[str, Record], Path], corpus_dir: Path) -> None:
    for name in POSTGRES_PAGES:
        record = corpus_run[0][name]
        assert record.title == html_title((corpus_dir / "sites" / "postgresql" / name).read_bytes())
        assert_enriched(record)


@pytest.mark.corpus
@pytest.mark.slow
def test_corpus_postgres_pages_still_give_valid_records(corpus_run: tuple[dict[str, Record], Path]) -> None:
    """Whatever extraction makes of them, each page gives exactly one record with the fetch facts."""
    for name in POSTGRES_PAGES:
        record = corpus_run[0][name]
        assert record.url == CORPUS_BASE + name
        assert record.content_type == "text/html"
        assert record.error is None or record.error.stage == "extract"


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize(("name", "pages"), sorted(CORPUS_PDFS.items()))
def test_corpus_pdfs(corpus_run: tuple[dict[str, Record], Path], name: str, pages: int) -> None:
    record = corpus_run[0][name]
    assert record.page_count == pages
    assert record.content_type == "application/pdf"
    assert record.file_name == name
    assert record.metadata["producer"].startswith("pdfTeX")
    assert_enriched(record)


@pytest.mark.corpus
@pytest.mark.slow
def test_corpus_jsonl_is_valid_and_matches_memory(
    corpus_run: tuple[dict[str, Record], Path],
    corpus_pages: list[FetchedPage],
    record_validator: Draft202012Validator,
) -> None:
    records, jsonl = corpus_run
    assert len(records) == len(corpus_pages)
    assert_jsonl_matches(jsonl, list(records.values()), record_validator)


# --- executors ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_thread_and_process_executors_give_identical_nlp(
    demo_run: tuple[dict[str, Record], Path], tmp_path: Path, record_validator: Draft202012Validator
) -> None:
    thread_records, _ = demo_run
    jsonl = tmp_path / "process.jsonl"
    config = config_for(tmp_path, executor="process", workers=2, batch_size=2)
    process_records = by_name(asyncio.run(run_chain(demo_site_pages(), config, jsonl)))
    assert sorted(process_records) == sorted(thread_records)
    for name, record in thread_records.items():
        assert nlp_view(process_records[name]) == nlp_view(record), name
    assert_jsonl_matches(jsonl, list(process_records.values()), record_validator)
    analyzed = [r for r in process_records.values() if r.entities]
    assert analyzed
    for record in analyzed:  # each batch's time, measured in the worker process, came back with its results
        assert record.timings is not None
        assert record.timings["nlp_ms"] is not None
        assert record.timings["nlp_ms"] > 0, record.url


@pytest.mark.corpus
@pytest.mark.slow
def test_thread_and_process_executors_agree_on_real_pages(
    corpus_run: tuple[dict[str, Record], Path], corpus_pages: list[FetchedPage], tmp_path: Path
) -> None:
    thread_records = corpus_run[0]
    chosen = [p for p in corpus_pages if p.url.endswith(("bdb.html", "codeop.html", "CAD.pdf"))]
    assert len(chosen) == 3
    config = config_for(tmp_path, executor="process", workers=2)
    process_records = by_name(asyncio.run(run_chain(chosen, config, tmp_path / "p.jsonl")))
    for name, record in process_records.items():
        assert record.entities
        assert nlp_view(record) == nlp_view(thread_records[name]), name


# --- NLP that cannot start ----------------------------------------------------------------------------------------


async def test_missing_model_stops_the_chain_at_open(tmp_path: Path) -> None:
    config = config_for(tmp_path, model="xx_no_such_model_sm")
    jsonl = tmp_path / "never.jsonl"
    memory = MemorySink()
    chain = StageChain(build_stages(config, sinks=[memory, JsonlSink(path=jsonl)]))
    with pytest.raises(NLPError, match=r"spaCy model 'xx_no_such_model_sm' is not installed"):
        await chain.open()
    # the extraction stage, opened first, was closed again; the sinks were never opened
    assert not jsonl.exists()
    await chain.close()
