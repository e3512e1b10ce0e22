"""Crash-safe resume and incremental recrawl, with real processes, real SQLite files and a real static file server.

A run is killed with SIGKILL at random moments and started again; the final output must hold exactly one record per
input URL, equal to an uninterrupted run's. A recrawl of a plain static server (Last-Modified, 304, no ETag) must
reuse what did not change and redo what did.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from crawler.cli import REPO_ROOT
from tests.checkout import checkout_env
from tests.integration.conftest import article
from tests.static_server import StaticServer

if TYPE_CHECKING:
    from pathlib import Path

    from crawler.localsite import ServerThread

TIMINGS = {"fetched_at", "enriched_at", "fetch_duration_ms", "process_duration_ms", "engine", "revisit", "timings"}

TOPICS = ["lighthouse", "harbour", "market", "railway", "library", "bridge", "museum", "orchard", "mill", "canal"]


def write_site(root: Path, count: int) -> list[str]:
    """``count`` pages with distinct texts; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        topic = TOPICS[n % len(TOPICS)]
        body = (
            f"The {topic} of Harbour Town number {n} was built by Anders Holm in {1850 + n}. "
            f"Ingrid Solberg wrote its history in Bergen, and the {topic} society keeps her notes."
        )
        (root / f"page{n}.html").write_bytes(article(f"{topic.title()} {n}", body))
        paths.append(f"/page{n}.html")
    return paths


def read_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "only whole lines"
    return [json.loads(line) for line in text.splitlines()]


def comparable(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_url: dict[str, dict[str, Any]] = {}
    for record in records:
        assert record["url"] not in by_url, f"two records for {record['url']}"
        by_url[record["url"]] = {k: v for k, v in record.items() if k not in TIMINGS}
    return by_url


def cli(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", "--progress", "off", "--nlp-workers", "1", *args],
        cwd=cwd,
        env=checkout_env(),  # this checkout's code, not the one installed
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def scrapy_command(urls: Path, out: Path, state: Path) -> list[str]:
    return [
        sys.executable, "-m", "scrapy", "crawl", "enrich", "-a", f"input={urls}", "-a", f"output={out}",
        "-a", f"state={state}", "-a", "concurrency=8", "-L", "WARNING",
    ]  # fmt: skip


def cli_command(urls: Path, out: Path, data: Path) -> list[str]:
    return [
        sys.executable, "-m", "crawler", "--progress", "off", "-i", str(urls), "-o", str(out),
        "--data-dir", str(data), "--max-workers", "8",
    ]  # fmt: skip


@pytest.mark.parametrize("engine", ["async", "scrapy"])
def test_sigkill_at_random_moments_then_resume_gives_one_record_per_url(tmp_path: Path, engine: str) -> None:
    paths = write_site(tmp_path / "site", 120)
    rng = random.Random(20261201)
    with StaticServer(tmp_path / "site", delay_s=0.02) as server:
        urls = tmp_path / "urls.txt"
        lines = [server.url + p for p in paths]
        urls.write_text("\n".join([*lines, lines[3], "not a url"]) + "\n")  # a repeat and an invalid entry
        reference = tmp_path / "reference.jsonl"
        done = subprocess.run(cli_command(urls, reference, tmp_path / "ref"), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        out, data = tmp_path / "out.jsonl", tmp_path / "data"
        state = data / "state" / "job.sqlite"
        command = scrapy_command(urls, out, state) if engine == "scrapy" else cli_command(urls, out, data)
        kills = 0
        for _ in range(3):
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
            time.sleep(rng.uniform(2.0, 7.0))
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                kills += 1
            process.wait(30)
            assert process.stderr is not None
            process.stderr.close()
        final = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
    assert kills >= 1, "the runs were too quick to be killed: slow the server down"
    expected = comparable(read_records(reference))
    assert len(expected) == 121  # 120 pages and the invalid entry; the repeat is skipped
    got = comparable(read_records(out))
    differing = sorted(url for url in expected.keys() | got.keys() if got.get(url) != expected.get(url))
    assert not differing, [(url, expected.get(url), got.get(url)) for url in differing[:2]]
    with sqlite3.connect(data / "state" / ("job.sqlite" if engine == "scrapy" else next_state_name(data))) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM urls GROUP BY state").fetchall())
    assert states == {"done": 120, "failed": 1}


def next_state_name(data: Path) -> str:
    (name,) = [p.name for p in (data / "state").glob("*.sqlite")]
    return name


def test_rerun_of_a_finished_job_fetches_nothing_and_restart_starts_over(tmp_path: Path) -> None:
    paths = write_site(tmp_path / "site", 6)
    with StaticServer(tmp_path / "site") as server:
        urls = tmp_path / "urls.txt"
        urls.write_text("\n".join(server.url + p for p in paths) + "\n")
        args = ("-i", str(urls), "-o", "out.jsonl", "--data-dir", "data", "--no-nlp")
        first = cli(*args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "(new; state" in first.stderr
        output = (tmp_path / "out.jsonl").read_text()
        assert len(server.seen.pages()) == 6
        server.seen.clear()
        again = cli(*args, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "resuming job out-" in again.stderr
        assert "6 URLs already done" in again.stderr
        assert server.seen.pages() == []
        assert (tmp_path / "out.jsonl").read_text() == output
        restarted = cli(*args, "--restart", cwd=tmp_path)
        assert restarted.returncode == 0, restarted.stderr
        assert len(server.seen.pages()) == 6
        assert len(read_records(tmp_path / "out.jsonl")) == 6


@pytest.mark.parametrize("engine", ["async", "scrapy"])
def test_recrawl_reuses_what_did_not_change(tmp_path: Path, engine: str) -> None:
    root = tmp_path / "site"
    paths = write_site(root, 12)
    engine_flag = "--async-enrichment" if engine == "async" else "--no-async-enrichment"
    with StaticServer(root) as server:
        urls = tmp_path / "urls.txt"
        urls.write_text("\n".join(server.url + p for p in paths) + "\n")
        args = ("-i", str(urls), "-o", "out.jsonl", "--data-dir", "data", engine_flag, "--stats-file", "stats.json")
        first = cli(*args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        before = comparable(read_records(tmp_path / "out.jsonl"))
        later = time.time() + 60  # the server's Last-Modified has whole seconds: make every change visible
        changed = root / "page1.html"
        changed.write_bytes(article("Railway 1", "The railway reached Harbour Town in 1901, said Ingrid Solberg."))
        markup_only = root / "page2.html"
        markup_only.write_bytes(markup_only.read_bytes().replace(b"<article>", b"<article class='v2'>"))
        touched = root / "page3.html"  # a new time, the same bytes
        for path in (changed, markup_only, touched):
            os.utime(path, (later, later))
        server.seen.clear()
        second = cli(*args, "--recrawl", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert "recrawl 1, 12 URLs to revisit" in second.stderr
        requests = server.seen.pages()
        assert len(requests) == 12
        assert all(since is not None for _, _, since in requests), "every revisit is conditional"
        assert sorted(status for _, status, _ in requests) == [200] * 3 + [304] * 9
        after_records = read_records(tmp_path / "out.jsonl")
        revisit = {r["url"].rsplit("/", 1)[1]: r["revisit"] for r in after_records}
        assert revisit["page1.html"] == revisit["page2.html"] == "changed"
        assert revisit["page3.html"] == "unchanged"
        assert {revisit[f"page{n}.html"] for n in range(4, 12)} == {"not_modified"}
        after = comparable(after_records)
        for url, record in after.items():
            if url.endswith("page1.html"):
                assert record["title"] == "Railway 1"
                assert record != before[url]
            elif url.endswith("page2.html"):  # new markup, same text: the same record but for the size
                assert {**record, "size_bytes": 0} == {**before[url], "size_bytes": 0}
                assert record["size_bytes"] > before[url]["size_bytes"]
            else:
                assert record == before[url]
        stats = json.loads((tmp_path / "stats.json").read_text())
        assert (stats["not_modified"], stats["unchanged"], stats["changed"]) == (9, 1, 2)
        assert stats["nlp_cache_hits"] >= 1  # page2's text did not change: its analysis is reused
        server.seen.clear()
        fresh = cli(*args, "--recrawl", "--max-age", "1h", cwd=tmp_path)
        assert fresh.returncode == 0, fresh.stderr
        assert server.seen.pages() == []
        assert {r["revisit"] for r in read_records(tmp_path / "out.jsonl")} == {"fresh"}
        assert comparable(read_records(tmp_path / "out.jsonl")) == after


def test_a_second_run_on_a_running_job_is_refused(tmp_path: Path) -> None:
    from enrich.state import CrawlState

    held = CrawlState.open(tmp_path / "data" / "state" / "j.sqlite")
    try:
        result = cli("-i", "-", "--job", "j", "--data-dir", "data", "-o", "o.jsonl", "--no-nlp", cwd=tmp_path)
    finally:
        held.close(complete=True)
    assert result.returncode == 1
    assert f"in use by another run (pid {os.getpid()})" in result.stderr


def test_jsonl_input_with_a_lone_surrogate_writes_every_record(tmp_path: Path) -> None:
    urls = tmp_path / "in.jsonl"
    urls.write_text('{"url": "http://127.0.0.1:9/a"}\n{"url": "http://e.invalid/x\\ud800"}\n{"url": "nope"}\n')
    result = cli("-i", str(urls), "-o", "out.jsonl", "--data-dir", "data", "--no-nlp", "--retries", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = read_records(tmp_path / "out.jsonl")
    assert len(records) == 3
    assert "http://e.invalid/x\ufffd" in {r["url"] for r in records}


async def test_the_api_takes_a_crawl_state_and_skips_what_is_done(tmp_path: Path, site: ServerThread) -> None:
    from crawler import run_async_enrichment
    from enrich.state import CrawlState

    urls = [f"{site.url}/ok/api-state-{n}" for n in range(5)]
    out = tmp_path / "out.jsonl"
    state = CrawlState.open(tmp_path / "job.sqlite")
    try:
        first = await run_async_enrichment(urls[:3], output_file=out, nlp_config={"enabled": False}, state=state)
    finally:
        state.close(complete=True)
    assert first.processed == 3
    state = CrawlState.open(tmp_path / "job.sqlite")
    try:
        second = await run_async_enrichment(urls, output_file=out, nlp_config={"enabled": False}, state=state)
    finally:
        state.close(complete=True)
    assert second.processed == 2
    assert second.extra["already_done"] == 3
    assert sorted(r["url"] for r in read_records(out)) == sorted(urls)
