"""The crawl state's decisions (real SQLite files), the NLP cache, and the JSONL sink's resume."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from enrich.config import NLPConfig
from enrich.errors import SinkError
from enrich.nlp import NLPResult
from enrich.nlp_cache import NLPCache
from enrich.record import Entity, Record
from enrich.sinks import JsonlSink
from enrich.stages import WorkItem
from enrich.state import Admission, CrawlState
from enrich.state.db import pack, unpack

if TYPE_CHECKING:
    from pathlib import Path


def done(url: str, **fields: object) -> WorkItem:
    record = Record(url=url, final_url=url, status=200, fetched_at="2026-12-01T10:00:00.000Z", **fields)  # type: ignore[arg-type]
    return WorkItem(record=record, etag='"v1"', last_modified="Tue, 01 Dec 2026 10:00:00 GMT", body_hash=b"h" * 16)


def test_a_new_job_then_a_resume_then_a_recrawl(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    state = CrawlState.open(path)
    assert (state.generation, state.resumed, state.output_offset) == (1, False, 0)
    assert state.admit("http://a.test/1")[0] is Admission.NEW
    assert state.admit("http://a.test/2")[0] is Admission.NEW
    assert state.admit("http://a.test/1")[0] is Admission.DUPLICATE
    state.commit([done("http://a.test/1")], output_offset=123)
    assert state.admit("http://a.test/1")[0] is Admission.DUPLICATE  # committed, still this run's
    state.close(complete=False)  # as after a crash: /2 was read, never written

    state = CrawlState.open(path)
    assert (state.generation, state.resumed, state.output_offset) == (1, True, 123)
    assert state.tally() == {"pending": 1, "done": 1, "failed": 0, "earlier": 0}
    assert state.admit("http://a.test/1")[0] is Admission.DONE
    assert state.admit("http://a.test/2")[0] is Admission.RESUMED
    assert state.admit("http://a.test/3")[0] is Admission.NEW
    state.commit([done("http://a.test/2"), done("http://a.test/3")], output_offset=456)
    state.close(complete=True)

    state = CrawlState.open(path, recrawl=True)
    assert (state.generation, state.resumed, state.output_offset) == (2, False, 0)
    kind, stored = state.admit("http://a.test/1")
    assert kind is Admission.REVISIT
    assert stored is not None
    assert stored.conditional_headers() == {
        "If-None-Match": '"v1"',
        "If-Modified-Since": "Tue, 01 Dec 2026 10:00:00 GMT",
    }
    assert state.revisit_of("http://a.test/1") == stored
    record = state.stored_record("http://a.test/1")
    assert record is not None
    assert record.url == "http://a.test/1"
    assert record.status == 200
    state.close(complete=False)

    state = CrawlState.open(path, recrawl=True)  # an unfinished recrawl resumes; it does not start a third
    assert (state.generation, state.resumed) == (2, True)
    state.close(complete=False)


def test_fresh_urls_are_not_fetched_again_within_max_age(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    state = CrawlState.open(path)
    state.admit("http://a.test/1")
    state.admit("http://a.test/2")
    state.commit([done("http://a.test/1"), done("http://a.test/2", error=None)], output_offset=0)
    state.close(complete=True)
    fetched = datetime(2026, 12, 1, 10, tzinfo=UTC).timestamp()  # the records' fetched_at
    state = CrawlState.open(path, recrawl=True, max_age_s=3600)
    state._clock = lambda: fetched + 1800
    assert state.admit("http://a.test/1")[0] is Admission.FRESH
    state._clock = lambda: fetched + 7200
    assert state.admit("http://a.test/2")[0] is Admission.REVISIT
    state.close(complete=False)


def test_restart_discards_the_state_and_a_second_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    state = CrawlState.open(path)
    state.admit("http://a.test/1")
    state.commit([done("http://a.test/1")], output_offset=10)
    with pytest.raises(SinkError, match="in use by another run"):
        CrawlState.open(path)
    state.close(complete=True)
    state = CrawlState.open(path, restart=True)
    assert state.admit("http://a.test/1")[0] is Admission.NEW
    assert state.output_offset == 0
    state.close(complete=True)


def test_a_state_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    CrawlState.open(path).close(complete=True)
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(SinkError, match=r"schema version 99.*--restart"):
        CrawlState.open(path)


def test_records_are_packed_small_as_they_are_and_large_compressed() -> None:
    small, large = '{"url":"x"}', '{"text":"' + "lighthouse " * 500 + '"}'
    assert pack(small)[:1] == b"j"
    assert pack(large)[:1] == b"z"
    assert len(pack(large)) < len(large) / 4
    assert (unpack(pack(small)), unpack(pack(large))) == (small, large)


def result(word: str) -> NLPResult:
    return NLPResult(entities=[Entity(word, "GPE", 1)], keywords=[word], summary=word, language="en")


async def test_nlp_cache_analyzes_identical_texts_once_even_in_flight() -> None:
    cache = NLPCache(config=NLPConfig(), model="m@1")
    calls = 0

    async def analyze() -> NLPResult:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return result("Bergen")

    key = cache.key("The harbour of Bergen.", None)
    results = await asyncio.gather(*(cache.get_or_analyze(key, analyze) for _ in range(3)))
    assert calls == 1
    assert {r.summary for r in results} == {"Bergen"}
    assert (cache.hits, cache.misses) == (2, 1)
    assert await cache.get_or_analyze(key, analyze) is results[0]
    assert calls == 1


def test_nlp_cache_keys_differ_by_text_language_model_and_settings() -> None:
    base = NLPCache(config=NLPConfig(), model="m@1")
    keys = {
        base.key("text", None),
        base.key("text", "de"),
        base.key("text.", None),
        NLPCache(config=NLPConfig(), model="m@2").key("text", None),
        NLPCache(config=NLPConfig(max_keywords=3), model="m@1").key("text", None),
    }
    assert len(keys) == 5
    assert NLPCache(config=NLPConfig(workers=4, batch_size=2), model="m@1").key("text", None) == base.key("text", None)


async def test_nlp_results_outlive_the_run_in_the_crawl_state(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    state = CrawlState.open(path)
    cache = NLPCache(config=NLPConfig(), model="m@1", store=state)
    key = cache.key("Oslo text", None)
    await cache.get_or_analyze(key, lambda: asyncio.sleep(0, result("Oslo")))
    state.commit([], output_offset=None)
    state.close(complete=True)

    state = CrawlState.open(path)
    fresh = NLPCache(config=NLPConfig(), model="m@1", store=state)

    async def fail() -> NLPResult:
        raise AssertionError("analyzed again")

    again = await fresh.get_or_analyze(key, fail)
    assert again == result("Oslo")
    state.close(complete=True)


async def test_jsonl_sink_resumes_at_the_committed_offset(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"url":"a"}\n{"url":"b"}\n{"url":"c", "te')  # b was never committed; c is half a line
    sink = JsonlSink(path=path, resume_at=12)
    await sink.open()
    await sink.write([Record(url="d")])
    await sink.close()
    lines = path.read_text().splitlines()
    assert lines[0] == '{"url":"a"}'
    assert [line[:14] for line in lines[1:]] == ['{"url":"d","fi']
    assert sink.offset == path.stat().st_size

    with pytest.raises(SinkError, match=r"holds .* bytes but the crawl state counts 10000"):
        await JsonlSink(path=path, resume_at=10_000).open()
