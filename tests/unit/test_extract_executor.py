"""Where extraction runs (``extract.executor``), and the NLP cache's counts in a run's figures. No model, no
worker processes: a fake lends its "processes" (real ones: tests/integration/test_extract_executor_engines.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from pydantic import ValidationError

import enrich.nlp
from enrich.config import EnrichConfig, ExtractConfig, NLPConfig
from enrich.errors import NLPError
from enrich.extract.stage import ExtractStage
from enrich.nlp import NLPResult, NLPStage
from enrich.pipeline import build_enrichment, run_figures
from enrich.record import FetchedPage
from enrich.stages import StageChain, WorkItem

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

PAGE = FetchedPage(
    url="https://example.org/a",
    final_url="https://example.org/a",
    status=200,
    headers={"content-type": "text/html; charset=utf-8"},
    body=(
        b"<html lang='en'><head><title>Harbour</title></head><body><article><h1>Harbour</h1>"
        b"<p>The keepers wrote logbooks for a century, and the society reads them aloud at the market.</p>"
        b"<p>Visitors walk the pier at dusk. <a href='/b'>More</a></p></article></body></html>"
    ),
    fetched_at="2026-01-01T00:00:00Z",
    fetch_duration_ms=1.0,
)


class LentProcesses:
    """Stands in for the NLP stage's worker processes: runs each call here and counts it."""

    workers = 2

    def __init__(self, *, ready: bool = True) -> None:
        self.calls: list[str] = []
        self.ready = ready
        self.asked = 0

    async def run_in_workers(self, func: Callable[..., T], *args: object) -> T:
        self.calls.append(func.__name__)
        return func(*args)

    def workers_ready(self) -> bool:
        self.asked += 1
        return self.ready


@pytest.mark.parametrize(
    ("extract", "nlp", "placement"),
    [
        ("thread", {"executor": "process"}, "thread"),
        ("process", {"executor": "process"}, "nlp_workers"),
        ("process", {"executor": "thread"}, "process"),
        ("process", {"executor": "process", "enabled": False}, "process"),
    ],
)
def test_extraction_uses_the_nlp_processes_only_when_there_are_some(
    extract: str, nlp: dict[str, Any], placement: str
) -> None:
    config = EnrichConfig().replace(extract={"executor": extract}, nlp=nlp)
    extract_stage, nlp_stage = build_enrichment(config)
    assert extract_stage.executor == placement
    assert extract_stage.workers == (config.nlp.workers if placement == "nlp_workers" else config.extract.workers)
    assert nlp_stage.lends_processes is (nlp.get("enabled", True) and nlp["executor"] == "process")


def test_an_unknown_executor_says_which_ones_exist() -> None:
    with pytest.raises(ValidationError, match=r"'thread' or 'process'"):
        ExtractConfig(executor="processes")  # type: ignore[arg-type]


async def test_lent_processes_give_the_record_threads_give() -> None:
    lent, loading = LentProcesses(), LentProcesses(ready=False)
    records = []
    for stage in (
        ExtractStage(),
        ExtractStage(config=ExtractConfig(executor="process"), processes=lent),
        ExtractStage(config=ExtractConfig(executor="process"), processes=loading),
    ):
        async with StageChain([stage]) as chain:
            done = await chain.process(WorkItem.from_page(PAGE, engine="async"))
        assert done.page is None  # the body is released
        records.append(done.record.to_dict() | {"enriched_at": None})
    assert lent.calls == ["extract_in_worker"]
    assert (loading.calls, loading.asked) == ([], 1)  # workers still loading their models: a thread here did it
    assert records[0] == records[1] == records[2]
    assert records[0]["title"] == "Harbour"
    assert records[0]["links"] == ["https://example.org/b"]


async def test_while_the_workers_load_one_page_at_a_time_is_extracted_here() -> None:
    loading = LentProcesses(ready=False)
    stage = ExtractStage(config=ExtractConfig(executor="process"), processes=loading)
    async with StageChain([stage]) as chain:
        items = await asyncio.gather(*(chain.process(WorkItem.from_page(PAGE, engine="async")) for _ in range(3)))
    assert loading.calls == ["extract_in_worker"] * 2  # the others queue for the workers
    assert stage.in_workers == 2
    assert all(done.record.title == "Harbour" for done in items)


async def test_the_nlp_workers_refuse_calls_before_open() -> None:
    stage = NLPStage(config=NLPConfig(executor="process", workers=2))
    with pytest.raises(NLPError, match=r"used before open"):
        await stage.run_in_workers(len, "text")


async def test_identical_texts_are_analyzed_once_and_counted_in_the_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    analyzed: list[str] = []

    class CountingAnalyzer:
        def analyze(self, texts: list[str], languages: list[str | None]) -> list[NLPResult]:
            analyzed.extend(texts)
            return [NLPResult(entities=[], keywords=[t.split()[0]], summary=None, language="en") for t in texts]

    monkeypatch.setattr(enrich.nlp, "_worker_analyzer", lambda config: CountingAnalyzer())
    config = EnrichConfig().replace(nlp={"batch_wait_ms": 0})
    stages = list(build_enrichment(config))
    async with StageChain(stages) as chain:
        for url in ("https://a.example/", "https://mirror.example/"):
            await chain.process(WorkItem.from_page(dataclasses.replace(PAGE, url=url), engine="async"))
    assert len(analyzed) == 1
    figures = run_figures(stages, None)
    assert (figures["nlp_cache_hits"], figures["nlp_cache_misses"]) == (1, 1)
    assert figures["extract_executor"] == "thread"
