"""Per-stage timing: what each record carries, the run's totals, the bottleneck line and the summary rows."""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

import enrich.nlp
from crawler.progress import ProgressReporter, format_summary
from enrich.config import NLPConfig
from enrich.nlp import NLPResult, NLPStage
from enrich.record import Record, load_schema
from enrich.sinks import MemorySink, SinkStage
from enrich.stages import StageChain, WorkItem
from enrich.stats import RunStats
from enrich.timing import STAGES, StageTimes, StageTotals, bottleneck, utilization

if TYPE_CHECKING:
    import pytest


def test_stage_times_add_up_and_serialize_every_step() -> None:
    times = StageTimes()
    times.add("queue", 0.5)
    times.add("queue", 0.25)  # a retry's wait adds to the first
    times.add("ttfb", 0.0123)
    out = times.to_record()
    assert list(out) == [f"{stage}_ms" for stage in STAGES]
    assert out["queue_ms"] == 750.0
    assert out["ttfb_ms"] == 12.3
    assert out["nlp_ms"] is None  # not measured is not zero


def test_record_timings_are_in_the_schema() -> None:
    properties = load_schema()["properties"]["timings"]["properties"]
    assert set(properties) == {f"{stage}_ms" for stage in STAGES}


def test_totals_count_only_measured_steps() -> None:
    totals = StageTotals()
    totals.observe({"queue_ms": 100.0, "nlp_ms": None})
    totals.observe({"queue_ms": 300.0, "nlp_ms": 50.0})
    totals.observe(None)
    figures = totals.to_dict()
    assert figures["queue"] == {"total_s": 0.4, "mean_ms": 200.0, "count": 2}
    assert figures["nlp"] == {"total_s": 0.05, "mean_ms": 50.0, "count": 1}
    assert "connect" not in figures


def test_bottleneck_names_the_busiest_part_and_fetch_idle() -> None:
    figures = {
        "elapsed_s": 100.0,
        "stage_busy_s": {"fetch": 400.0, "extract": 10.0, "nlp": 192.0, "sink": 1.0},
        "stage_workers": {"fetch": 10, "extract": 1, "nlp": 2, "sink": 1},
    }
    assert utilization(figures) == {"fetch": 0.4, "extract": 0.1, "nlp": 0.96, "sink": 0.01}
    assert bottleneck(figures) == "NLP busy 96 % of the run; fetch idle 60 %"


def test_bottleneck_when_fetching_limits() -> None:
    figures = {
        "elapsed_s": 10.0,
        "stage_busy_s": {"fetch": 95.0, "nlp": 3.0},
        "stage_workers": {"fetch": 10, "nlp": 1},
    }
    assert bottleneck(figures) == "Fetch busy 95 % of the run; NLP busy 30 %"
    assert bottleneck({"elapsed_s": 10.0}) is None


def test_run_stats_sum_timings_and_name_the_bottleneck() -> None:
    now = [0.0]
    stats = RunStats(clock=lambda: now[0])
    stats.fetch_slots = 4
    seen: list[str] = []
    stats.listeners.append(lambda record: seen.append(record.url))
    for n in range(4):
        stats.observe(Record(url=f"https://a.example/{n}", fetch_duration_ms=1000.0, timings={"nlp_ms": 500.0}))
    now[0] = 10.0
    stats.extra.update({"stage_busy_s": {"nlp": 9.0}, "stage_workers": {"nlp": 1}})
    figures = stats.to_dict()
    assert seen == [f"https://a.example/{n}" for n in range(4)]
    assert figures["stage_times"]["nlp"]["mean_ms"] == 500.0
    assert figures["utilization"] == {"fetch": 0.1, "nlp": 0.9}
    assert figures["bottleneck"] == "NLP busy 90 % of the run; fetch idle 90 %"
    assert "Bottleneck:  NLP busy 90 %" in stats.summary()
    table = format_summary(figures)
    assert "| Bottleneck" in table
    assert "Time in NLP" in table


def test_skipped_entries_leave_the_progress_total() -> None:
    stats = RunStats(total=10)
    stats.skipped_input = 2  # a repeated URL, one done before: no record in this run
    for n in range(8):
        stats.observe(Record(url=f"https://a.example/{n}"))
    assert stats.expected == 8
    assert "8/8 100%" in ProgressReporter.status(stats)
    assert "Processed: 8/8" in stats.progress_line()
    assert "| Skipped input" in format_summary(stats.to_dict())


async def test_sink_stage_writes_each_records_timings() -> None:
    sink = MemorySink()
    work = WorkItem(record=Record(url="https://a.example/"))
    work.times.add("extract", 0.002)
    async with StageChain([SinkStage(sinks=[sink], batch_size=1)]) as chain:
        await chain.process(work)
    timings = sink.records[0].timings
    assert timings is not None
    assert timings["extract_ms"] == 2.0
    assert timings["sink_ms"] is not None
    assert timings["queue_ms"] is None


async def test_nlp_stage_times_the_wait_and_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    class SlowAnalyzer:
        def analyze(self, texts: list[str], languages: list[str | None]) -> list[NLPResult]:
            time.sleep(0.05)  # wall time, no CPU
            deadline = time.thread_time() + 0.03
            while time.thread_time() < deadline:  # CPU time
                pass
            return [NLPResult(entities=[], keywords=[], summary=None, language="en") for _ in texts]

    monkeypatch.setattr(enrich.nlp, "_worker_analyzer", lambda config: SlowAnalyzer())
    stage = NLPStage(config=NLPConfig(batch_wait_ms=0))
    work = WorkItem(record=Record(url="https://a.example/", text="Some text"))
    async with StageChain([stage]) as chain:
        await chain.process(work)
    assert work.times.nlp is not None
    assert work.times.nlp >= 0.05  # the worker's own measure of its batch
    assert work.times.nlp_wait is not None
    assert stage.batches == 1
    assert stage.compute_s >= 0.08
    assert 0.03 <= stage.compute_cpu_s < stage.compute_s  # the sleep used none


def test_summary_output_is_text() -> None:
    stream = io.StringIO()
    reporter = ProgressReporter(stats=lambda: RunStats(total=1), stream=stream, tty=False, interval=0.0)
    reporter.tick(force=True)
    assert "Processed: 0/1" in stream.getvalue()
