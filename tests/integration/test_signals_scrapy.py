"""Interrupting ``scrapy crawl enrich``: SIGINT/SIGTERM stop gracefully, a second signal stops at once.

The crawl runs as a subprocess against the hostile server (threads of the test process); ``/trickle`` keeps it
busy, so the signal arrives mid-crawl. Whatever the signal, the output must stay valid JSONL, line by line.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from hostile_server import hostile_sites

from tests.checkout import checkout_env

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


TIMEOUT_S = 4.0
"""``fetch.timeout_s``: a graceful stop waits for the downloads in flight, each at most this long."""

PAGES = 6
TRICKLES = 4


@pytest.fixture(scope="module")
def sites() -> Iterator[dict[str, str]]:
    with hostile_sites(("127.0.0.1", "127.0.0.2")) as urls:
        yield urls


def start_crawl(
    tmp_path: Path, sites: dict[str, str], *, extra: tuple[str, ...] = (), retries: int = 0
) -> tuple[subprocess.Popen[str], Path, Path, Path]:
    pages = [f"{sites['127.0.0.1']}/page/{n}" for n in range(PAGES)]
    trickles = [f"{sites['127.0.0.2']}/trickle?seconds=60&n={n}" for n in range(TRICKLES)]
    input_file, config_file = tmp_path / "urls.txt", tmp_path / "config.yml"
    output, stats_file, log = tmp_path / "out.jsonl", tmp_path / "stats.json", tmp_path / "crawl.log"
    input_file.write_text("\n".join([*pages, *trickles, *extra]) + "\n", encoding="utf-8")
    config = {
        "fetch": {"timeout_s": TIMEOUT_S, "retries": retries},
        "politeness": {"max_crawl_delay_s": 0.05},
        "nlp": {"enabled": False},
        "output": {"batch_size": 2},
    }
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = [sys.executable, "-m", "scrapy", "crawl", "enrich", "-a", f"input={input_file}"]
    argv += ["-a", f"config={config_file}", "-a", f"output={output}", "-a", f"stats_file={stats_file}"]
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True)
    return process, output, stats_file, log


def wait_mid_crawl(output: Path, process: subprocess.Popen[str], *, records: int, limit_s: float = 30.0) -> None:
    """Wait until at least ``records`` lines are written (the pages) while the trickles still run."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the crawl ended before the signal"
        if output.exists() and len(output.read_text(encoding="utf-8").splitlines()) >= records:
            return
        time.sleep(0.1)
    pytest.fail(f"fewer than {records} records after {limit_s} s")


def read_lines(output: Path) -> list[dict[str, object]]:
    text = output.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the last line is incomplete"
    return [json.loads(line) for line in text.splitlines()]  # every line is complete JSON


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_stops_gracefully(tmp_path: Path, sites: dict[str, str], signum: int) -> None:
    process, output, stats_file, log = start_crawl(tmp_path, sites)
    try:
        wait_mid_crawl(output, process, records=PAGES - 1)
        sent = time.monotonic()
        process.send_signal(signum)
        process.wait(timeout=TIMEOUT_S + 15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert time.monotonic() - sent < TIMEOUT_S + 15
    records = read_lines(output)
    urls = [r["url"] for r in records]
    assert len(urls) == len(set(urls))
    assert len(records) == PAGES + TRICKLES  # the sink was flushed: the pages and the interrupted trickles
    text = log.read_text(encoding="utf-8")
    assert "Enrichment summary:" in text
    assert "(shutdown)" in text
    assert json.loads(stats_file.read_text(encoding="utf-8"))["processed"] == len(records)


def test_second_signal_stops_at_once(tmp_path: Path, sites: dict[str, str]) -> None:
    process, output, _stats_file, _log = start_crawl(tmp_path, sites)
    try:
        wait_mid_crawl(output, process, records=2)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert time.monotonic() - sent < 5, "the second signal must not wait for the downloads in flight"
    records = read_lines(output)
    assert 2 <= len(records) <= PAGES + TRICKLES


def test_a_retry_waiting_at_the_stop_gets_its_last_answer_as_its_record(tmp_path: Path, sites: dict[str, str]) -> None:
    """A URL whose retry waits in the frontier (here: 429 with Retry-After: 1, again and again) when the run stops
    gets the record of its last answer, as in the async engine, not nothing."""
    limited = f"{sites['127.0.0.2']}/rate-limited?n=1000&key={tmp_path.name}"
    process, output, stats_file, _log = start_crawl(tmp_path, sites, extra=(limited,), retries=20)
    try:
        wait_mid_crawl(output, process, records=PAGES - 1)
        time.sleep(1.5)  # at least one 429 answered, its retry waiting
        process.send_signal(signal.SIGINT)
        process.wait(timeout=TIMEOUT_S + 15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    records = {str(r["url"]): r for r in read_lines(output)}
    record = records[limited]
    assert record["status"] == 429
    error = record["error"]
    assert isinstance(error, dict)
    assert error["type"] == "HTTPError"
    assert "HTTP 429 Too Many Requests" in str(error["message"])
    assert isinstance(record["attempts"], int)
    assert record["attempts"] >= 1
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    assert stats["processed"] == len(records)


def test_sigterm_to_the_orchestrator_ends_its_scrapy_process(tmp_path: Path, sites: dict[str, str]) -> None:
    import psutil

    pages = [f"{sites['127.0.0.1']}/page/{n}" for n in range(PAGES)]
    trickles = [f"{sites['127.0.0.2']}/trickle?seconds=60&n={n}" for n in range(TRICKLES)]
    (tmp_path / "urls.txt").write_text("\n".join([*pages, *trickles]) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "crawler", "--engine", "scrapy", "--no-nlp", "-i", "urls.txt", "-o", str(output)]
    argv += ["--timeout", str(TIMEOUT_S), "--retries", "0", "--batch-size", "2", "--progress", "off"]
    argv += ["--data-dir", "data"]
    with (tmp_path / "cli.log").open("w", encoding="utf-8") as log:
        cli = subprocess.Popen(argv, cwd=tmp_path, env=checkout_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
    children: list[psutil.Process] = []
    try:
        wait_mid_crawl(output, cli, records=PAGES - 1)
        children = psutil.Process(cli.pid).children(recursive=True)
        assert children, "no Scrapy process under the orchestrator"
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=TIMEOUT_S + 20) == 130
        _, alive = psutil.wait_procs(children, timeout=10)
    finally:
        with contextlib.suppress(OSError):
            cli.kill()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
    assert alive == [], f"still running after the orchestrator ended: {alive}"
    urls = [r["url"] for r in read_lines(output)]
    assert len(urls) == len(set(urls)) >= PAGES - 1  # flushed; a URL not started yet has no record: the rerun's
    rerun = subprocess.run(
        argv, cwd=tmp_path, env=checkout_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    urls = [r["url"] for r in read_lines(output)]
    assert len(urls) == len(set(urls)) == PAGES + TRICKLES  # the job resumed: one record per URL
