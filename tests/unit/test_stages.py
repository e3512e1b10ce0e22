"""The stage composer, degrading on failure, and the sinks (memory, JSONL, real SQLite)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

import enrich.nlp
from enrich.config import NLPConfig
from enrich.errors import NLPError, SinkError
from enrich.nlp import NLPResult, NLPStage
from enrich.record import Entity, Record
from enrich.sinks import JsonlSink, MemorySink, Sink, SinkStage, SqliteSink
from enrich.stages import Stage, StageChain, WorkItem

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path


@dataclass
class RecordingStage:
    """A stage that logs its calls, optionally fails, and sets a field so later stages' effects can be seen."""

    name: str
    log: list[str]
    fail_open: bool = False
    fail_process: BaseException | None = None
    fail_close: bool = False
    keyword: str | None = None

    async def open(self) -> None:
        self.log.append(f"open {self.name}")
        if self.fail_open:
            raise RuntimeError(f"{self.name} cannot open")

    async def process(self, item: WorkItem) -> WorkItem:
        self.log.append(f"process {self.name}")
        if self.fail_process is not None:
            raise self.fail_process
        if self.keyword:
            item.record.keywords.append(self.keyword)
        return item

    async def close(self) -> None:
        self.log.append(f"close {self.name}")
        if self.fail_close:
            raise RuntimeError(f"{self.name} cannot close")


def item(url: str = "https://example.org/") -> WorkItem:
    return WorkItem(record=Record(url=url, title="kept title"))


def test_recording_stage_is_a_stage() -> None:
    assert isinstance(RecordingStage("a", []), Stage)
    assert isinstance(MemorySink(), Sink)


async def test_open_in_order_close_in_reverse() -> None:
    log: list[str] = []
    async with StageChain([RecordingStage(n, log) for n in ("a", "b", "c")]) as chain:
        await chain.process(item())
    assert log == ["open a", "open b", "open c", "process a", "process b", "process c", "close c", "close b", "close a"]


async def test_failed_open_closes_the_opened_ones_in_reverse() -> None:
    log: list[str] = []
    chain = StageChain([RecordingStage("a", log), RecordingStage("b", log), RecordingStage("c", log, fail_open=True)])
    with pytest.raises(RuntimeError, match="c cannot open"):
        await chain.open()
    assert log == ["open a", "open b", "open c", "close b", "close a"]
    await chain.close()  # closing again closes nothing twice
    assert log.count("close a") == 1


async def test_close_goes_on_after_a_failing_close_and_raises_the_first(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    chain = StageChain(
        [RecordingStage("a", log), RecordingStage("b", log, fail_close=True), RecordingStage("c", log, fail_close=True)]
    )
    await chain.open()
    with caplog.at_level(logging.ERROR, logger="enrich.stages"), pytest.raises(RuntimeError, match="c cannot close"):
        await chain.close()
    assert log[-3:] == ["close c", "close b", "close a"]
    assert [r.getMessage() for r in caplog.records] == [
        "closing stage c failed: c cannot close",
        "closing stage b failed: b cannot close",
    ]


async def test_failing_stage_degrades_the_record(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    stages = [
        RecordingStage("a", log, keyword="from-a"),
        RecordingStage("b", log, fail_process=ValueError("bad value in b")),
        RecordingStage("c", log, keyword="from-c"),
        RecordingStage("d", log, fail_process=KeyError("also bad")),
    ]
    with caplog.at_level(logging.WARNING, logger="enrich.stages"):
        async with StageChain(stages) as chain:
            result = await chain.process(item("https://example.org/x"))
    record = result.record
    assert record.error is not None
    assert (record.error.type, record.error.message, record.error.stage) == ("ValueError", "bad value in b", "b")
    assert record.keywords == ["from-a", "from-c"]  # earlier fields kept, later stages still ran
    assert record.title == "kept title"
    assert "process d" in log
    warning = caplog.records[0]
    assert warning.getMessage() == "stage b failed on https://example.org/x: bad value in b"
    assert warning.exc_info is not None
    assert warning.__dict__["stage"] == "b"
    assert warning.__dict__["url"] == "https://example.org/x"


async def test_sink_error_stops_the_chain() -> None:
    log: list[str] = []
    stages = [RecordingStage("a", log, fail_process=SinkError("disk full")), RecordingStage("b", log)]
    async with StageChain(stages) as chain:
        with pytest.raises(SinkError, match="disk full"):
            await chain.process(item())
    assert "process b" not in log
    assert log[-2:] == ["close b", "close a"]


async def test_nlp_failure_degrades_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake analyzer (no model load) that fails: the record keeps its text and notes the NLP stage."""

    class BrokenAnalyzer:
        def analyze(self, texts: list[str], languages: list[str | None]) -> list[NLPResult]:
            raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(enrich.nlp, "_worker_analyzer", lambda config: BrokenAnalyzer())
    work = WorkItem(record=Record(url="https://example.org/", text="Some text about Bergen in Norway."))
    async with StageChain([NLPStage(config=NLPConfig(batch_wait_ms=0))]) as chain:
        result = await chain.process(work)
    assert result.record.error is not None
    assert result.record.error.type == "NLPError"
    assert result.record.error.stage == "nlp"
    assert result.record.error.message == "RuntimeError: CUDA out of memory"
    assert result.record.text == "Some text about Bergen in Norway."
    assert result.record.entities == []


async def test_nlp_results_are_copied_onto_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    class FixedAnalyzer:
        def analyze(self, texts: list[str], languages: list[str | None]) -> list[NLPResult]:
            return [
                NLPResult(
                    entities=[Entity("Bergen", "GPE", 1)], keywords=[t.split()[0].lower()], summary=t, language="no"
                )
                for t in texts
            ]

    monkeypatch.setattr(enrich.nlp, "_worker_analyzer", lambda config: FixedAnalyzer())
    stage = NLPStage(config=NLPConfig(batch_wait_ms=0))
    declared = WorkItem(record=Record(url="https://a.example/", text="Alpha text", language="en"))
    detected = WorkItem(record=Record(url="https://b.example/", text="Beta text"))
    empty = WorkItem(record=Record(url="https://c.example/"))
    async with StageChain([stage]) as chain:
        for work in (declared, detected, empty):
            await chain.process(work)
    assert declared.record.keywords == ["alpha"]
    assert declared.record.language == "en"  # a declared language wins
    assert detected.record.language == "no"
    assert detected.record.entities == [Entity("Bergen", "GPE", 1)]
    assert empty.record.keywords == []  # no text, no NLP
    assert stage.words == 4


def test_a_worker_keeps_one_analyzer_per_configuration_and_warms_it(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[NLPConfig, list[list[str]]]] = []

    class RecordingAnalyzer:
        def __init__(self, config: NLPConfig) -> None:
            self.calls: list[list[str]] = []
            built.append((config, self.calls))

        def analyze(self, texts: list[str], languages: list[str | None]) -> list[NLPResult]:
            self.calls.append(texts)
            return []

    monkeypatch.setattr(enrich.nlp.TextAnalyzer, "from_config", RecordingAnalyzer)
    monkeypatch.setattr(enrich.nlp, "_local", threading.local())
    first, second = NLPConfig(), NLPConfig(max_keywords=3)
    one = enrich.nlp._worker_analyzer(first)
    assert enrich.nlp._worker_analyzer(NLPConfig()) is one  # an equal configuration: the same analyzer
    # a worker forked from a fork server that built an analyzer for another stage's configuration builds its own
    other = enrich.nlp._worker_analyzer(second)
    assert other is not one
    assert [config for config, _ in built] == [first, second]
    assert all(len(calls) == 1 for _, calls in built)  # each analyzed the warm-up text once, when built


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (it reads state that worker threads change, which no event signals) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_free_worker_takes_its_share_of_the_queue_not_all_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    release = {"slow-a": threading.Event(), "slow-b": threading.Event()}
    batches: list[list[str]] = []

    class HeldAnalyzer:
        def analyze(self, texts: list[str], languages: list[str | None]) -> list[NLPResult]:
            batches.append(texts)
            if texts[0] in release:
                release[texts[0]].wait(10)
            return [NLPResult(entities=[], keywords=[], summary=None, language=None) for _ in texts]

    monkeypatch.setattr(enrich.nlp, "_worker_analyzer", lambda config: HeldAnalyzer())
    stage = NLPStage(config=NLPConfig(executor="thread", workers=2, batch_size=16, batch_wait_ms=0))

    def work(text: str) -> WorkItem:
        return WorkItem(record=Record(url=f"https://a.example/{text}", text=text))

    async with StageChain([stage]) as chain:
        held = [asyncio.create_task(chain.process(work(text))) for text in release]
        await _until(lambda: len(batches) == 2)  # both workers busy, one text each
        rest = [asyncio.create_task(chain.process(work(f"text {n}"))) for n in range(10)]
        await _until(lambda: stage._queue is not None and stage._queue.qsize() == 10)
        release["slow-b"].set()  # one worker is free, the other still busy: it takes half the queue
        await _until(lambda: len(batches) >= 3)
        release["slow-a"].set()
        await asyncio.gather(*held, *rest)
    assert len(batches[2]) == 5
    assert sorted(text for batch in batches[2:] for text in batch) == sorted(f"text {n}" for n in range(10))


async def test_nlp_stage_used_before_open_fails_the_record() -> None:
    async with StageChain([]) as chain:
        assert chain.stages == []
    stage = NLPStage(config=NLPConfig())
    chain = StageChain([stage])  # never opened
    result = await chain.process(WorkItem(record=Record(url="https://x.example/", text="words")))
    assert result.record.error is not None
    assert result.record.error.message == "NLP stage used before open()"


async def test_nlp_stage_with_a_missing_model_fails_to_open() -> None:
    stage = NLPStage(config=NLPConfig(model="xx_no_such_model_sm"))
    with pytest.raises(NLPError, match=r"spaCy model 'xx_no_such_model_sm' is not installed"):
        await stage.open()
    await stage.close()


async def test_disabled_nlp_stage_does_nothing() -> None:
    stage = NLPStage(config=NLPConfig(enabled=False, model="xx_no_such_model_sm"))
    async with StageChain([stage]) as chain:
        result = await chain.process(WorkItem(record=Record(url="https://x.example/", text="Bergen")))
    assert result.record.error is None
    assert result.record.entities == []


# --- SinkStage and sinks ------------------------------------------------------------------------------------------


def records(n: int, prefix: str = "https://example.org/") -> list[Record]:
    return [Record(url=f"{prefix}{i}", title=f"Page {i}", text="naïve café text", word_count=3) for i in range(n)]


async def test_sink_stage_batches() -> None:
    sink = MemorySink()
    stage = SinkStage(sinks=[sink], batch_size=3)
    await stage.open()
    for record in records(7):
        await stage.process(WorkItem(record=record))
    await stage.wait_written()
    assert (sink.batches, len(sink.records)) == (2, 6)
    await stage.close()
    assert (sink.batches, len(sink.records), stage.written) == (3, 7, 7)
    assert [r.url for r in sink.records] == [f"https://example.org/{i}" for i in range(7)]
    for record in sink.records:
        assert record.enriched_at is not None
        assert record.enriched_at.endswith("Z")
        assert record.process_duration_ms is not None
        assert record.process_duration_ms >= 0


async def test_a_partial_batch_is_written_once_it_has_waited_max_wait_s() -> None:
    sink = MemorySink()
    acknowledged: list[str] = []

    async def on_written(items: Sequence[WorkItem]) -> None:
        acknowledged.extend(item.record.url for item in items)

    stage = SinkStage(sinks=[sink], batch_size=100, max_wait_s=0.05, on_written=on_written)
    await stage.open()
    for record in records(3):
        await stage.process(WorkItem(record=record))
    assert sink.records == []  # not yet: the batch is not full and has not waited long enough
    await asyncio.sleep(0.2)
    assert (sink.batches, len(sink.records), len(acknowledged)) == (1, 3, 3)
    await stage.process(WorkItem(record=records(1, "https://example.net/")[0]))
    await asyncio.sleep(0.2)
    assert (sink.batches, len(sink.records)) == (2, 4)  # the timer starts again with the next record
    await stage.close()
    assert (sink.batches, stage.written) == (2, 4)


def test_sink_stage_rejects_a_zero_batch() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        SinkStage(sinks=[], batch_size=0)


@dataclass
class FailingSink:
    fail: bool = True
    written: list[Record] = field(default_factory=list)
    closed: bool = False

    async def open(self) -> None:
        return None

    async def write(self, records: Sequence[Record]) -> None:
        if self.fail:
            raise SinkError("disk full")
        self.written.extend(records)

    async def close(self) -> None:
        self.closed = True


async def test_sink_error_keeps_the_batch_for_a_later_flush() -> None:
    sink = FailingSink()
    stage = SinkStage(sinks=[sink], batch_size=2)
    await stage.open()
    await stage.process(WorkItem(record=records(1)[0]))
    await stage.process(WorkItem(record=records(2)[1]))  # hands the batch to the background, which fails
    with pytest.raises(SinkError, match="disk full"):
        await stage.flush()
    assert stage.written == 0
    sink.fail = False
    await stage.close()
    assert [r.url for r in sink.written] == ["https://example.org/0", "https://example.org/1"]
    assert sink.closed


async def test_sinks_are_closed_even_when_the_last_flush_fails() -> None:
    sink = FailingSink()
    stage = SinkStage(sinks=[sink], batch_size=10)
    await stage.open()
    await stage.process(WorkItem(record=records(1)[0]))
    with pytest.raises(SinkError):
        await stage.close()
    assert sink.closed


class BuggySink(FailingSink):
    """Fails with an exception that is not a :class:`SinkError` (a bug, an encoding error)."""

    async def write(self, records: Sequence[Record]) -> None:
        if self.fail:
            raise ValueError("unexpected value in column 3")
        self.written.extend(records)


async def test_any_sink_exception_keeps_the_batch_and_no_sink_writes_it_twice() -> None:
    first, second = MemorySink(), BuggySink()
    stage = SinkStage(sinks=[first, second], batch_size=2)
    await stage.open()
    await stage.process(WorkItem(record=records(1)[0]))
    await stage.process(WorkItem(record=records(2)[1]))
    await asyncio.wait({stage._writing})  # type: ignore[arg-type]
    with pytest.raises(SinkError, match=r"BuggySink failed .*ValueError: unexpected value in column 3.*kept"):
        await stage.process(WorkItem(record=records(3)[2]))  # the next item meets the failure
    with pytest.raises(SinkError, match=r"BuggySink failed"):
        await stage.flush()
    assert [r.url for r in first.records] == ["https://example.org/0", "https://example.org/1"]
    with pytest.raises(SinkError):  # still failing: the first sink is not offered the batch again
        await stage.flush()
    assert len(first.records) == 2
    second.fail = False
    await stage.close()
    expected = [f"https://example.org/{i}" for i in range(3)]
    assert [r.url for r in first.records] == expected
    assert [r.url for r in second.written] == expected
    assert stage.written == 3


async def test_on_written_sees_each_batch_once_all_sinks_have_it() -> None:
    seen: list[list[str]] = []

    async def written(batch: Sequence[WorkItem]) -> None:
        seen.append([item.record.url for item in batch])

    sink = FailingSink()
    stage = SinkStage(sinks=[sink], batch_size=1, on_written=written)
    await stage.open()
    await stage.process(WorkItem(record=records(1)[0]))
    with pytest.raises(SinkError):
        await stage.flush()
    assert seen == []
    sink.fail = False
    await stage.close()
    assert seen == [["https://example.org/0"]]


async def test_lone_surrogates_are_repaired_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    broken = Record(url="http://e.org/x\ud800", text="PDF text \udcff with a pair \ud83d\ude00 kept")
    stage = SinkStage(sinks=[JsonlSink(path=path), SqliteSink(path=tmp_path / "r.sqlite")], batch_size=10)
    await stage.open()
    for record in [*records(1), broken, *records(3)[2:]]:
        await stage.process(WorkItem(record=record))
    await stage.close()
    lines = read_jsonl(path)
    assert len(lines) == 3
    assert lines[1]["url"] == "http://e.org/x\ufffd"
    assert lines[1]["text"] == "PDF text \ufffd with a pair \U0001f600 kept"


def read_jsonl(path: Path) -> list[dict[str, object]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")  # only whole lines
    return [json.loads(line) for line in text.splitlines()]


async def test_jsonl_sink_writes_whole_lines_and_close_flushes(tmp_path: Path) -> None:
    path = tmp_path / "out" / "records.jsonl"  # the folder is created
    stage = SinkStage(sinks=[JsonlSink(path=path)], batch_size=2)
    await stage.open()
    for record in records(5):
        await stage.process(WorkItem(record=record))
    await stage.wait_written()
    assert len(read_jsonl(path)) == 4  # two full batches; the fifth waits in the buffer
    await stage.close()
    lines = read_jsonl(path)
    assert [line["url"] for line in lines] == [f"https://example.org/{i}" for i in range(5)]
    assert lines[0]["text"] == "naïve café text"
    assert "naïve café" in path.read_text(encoding="utf-8")  # UTF-8, not escaped


async def test_jsonl_sink_truncates_or_appends(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    for append, expected in ((False, 2), (False, 2), (True, 4)):
        sink = JsonlSink(path=path, append=append)
        await sink.open()
        await sink.write(records(2))
        await sink.close()
        assert len(read_jsonl(path)) == expected


async def test_jsonl_sink_into_a_non_writable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    sink = JsonlSink(path=blocker / "records.jsonl")
    with pytest.raises(SinkError, match=r"cannot open output file .*not-a-dir/records\.jsonl: ") as excinfo:
        await sink.open()
    assert isinstance(excinfo.value, OSError)
    assert isinstance(excinfo.value.__cause__, OSError)


async def test_jsonl_sink_written_before_open(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="before open"):
        await JsonlSink(path=tmp_path / "x.jsonl").write(records(1))


async def test_sqlite_sink_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "db" / "records.sqlite"
    first = records(3)
    first[1].error = None
    first[2].fail(RuntimeError("boom"), "nlp")
    first[0].entities = [Entity("Bergen", "GPE", 2)]
    sink = SqliteSink(path=path)
    stage = SinkStage(sinks=[sink], batch_size=2)
    await stage.open()
    for record in first:
        await stage.process(WorkItem(record=record))
    await stage.close()
    stored = sink.read_all()
    assert stored == [r.to_dict() for r in sorted(first, key=lambda r: r.url)]
    assert Record.from_dict(stored[0]) == first[0]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT url, title, word_count, error_type FROM records ORDER BY url").fetchall()
    assert rows == [
        ("https://example.org/0", "Page 0", 3, None),
        ("https://example.org/1", "Page 1", 3, None),
        ("https://example.org/2", "Page 2", 3, "RuntimeError"),
    ]


async def test_sqlite_sink_rerun_replaces_rows(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    for title in ("old", "new"):
        sink = SqliteSink(path=path)
        await sink.open()
        again = records(2)
        for record in again:
            record.title = title
        await sink.write(again)
        await sink.close()
    stored = SqliteSink(path=path).read_all()
    assert [(r["url"], r["title"]) for r in stored] == [
        ("https://example.org/0", "new"),
        ("https://example.org/1", "new"),
    ]


async def test_sqlite_sink_into_a_non_writable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(SinkError, match="cannot open database"):
        await SqliteSink(path=blocker / "db.sqlite").open()
