"""The benchmark tool's plan and figures that need no run: layouts per round, the naive NLP sample, the CPU bound."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.checkout import load_tool

if TYPE_CHECKING:
    from types import ModuleType


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_tool("benchmark_enrichment")


def test_two_layouts_run_for_every_engine_in_every_round(bench: ModuleType) -> None:
    args = bench.parse_args(
        ["--engines", "async,scrapy", "--profile", "fetch,full", "--extract-executor", "thread,process"]
    )
    keys = [variant.key for variant in bench.plan(args)]
    assert keys == [
        "ceiling-cpu",
        "ceiling-fetch/c50",
        "async/fetch/c50",
        "scrapy/fetch/c50",
        "async/full/c50/x-thread",
        "async/full/c50/x-process",
        "scrapy/full/c50/x-thread",
        "scrapy/full/c50/x-process",
    ]
    assert bench.plan(bench.parse_args(["--engines", "async"]))[-1].key == "async/full/c50"


def test_the_naive_figure_reads_the_stage_texts_or_an_even_sample(bench: ModuleType) -> None:
    texts = [(f"text {i}", None) for i in range(10)]
    assert bench.naive_sample(texts, 0) == texts
    assert bench.naive_sample(texts, 20) == texts
    assert [t for t, _ in bench.naive_sample(texts, 3)] == ["text 0", "text 3", "text 6"]


def test_the_cpu_bound_adds_both_ceilings_cpu_and_divides_by_the_cores(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    runs = [
        bench.RunResult(bench.Variant("ceiling-cpu", "-", 0), n, ok=True, wall_s=1.0, ceilings=ceilings)
        for n, ceilings in enumerate(
            [{"extract": {"cpu_s": 10.0}, "nlp": {"cpu_s": 50.0}}, {"extract": {"cpu_s": 14.0}, "nlp": {"cpu_s": 70.0}}]
        )
    ]
    bound = bench.cpu_bound(runs)
    assert bound["cores"] == 2
    assert bound["duration_s"] == {"median": 36.0, "min": 30.0, "max": 42.0}
    assert bench.cpu_bound([]) is None
