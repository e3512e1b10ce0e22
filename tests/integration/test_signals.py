"""Faults and shutdown of the async engine through the command line, as a user meets them.

``python -m crawler --stage 3 -i urls.txt`` runs as a subprocess against the hostile server; the crawl is caught
mid-way on slow routes and signalled. A first SIGINT (or SIGTERM) stops taking URLs, finishes what is in flight,
flushes the output and prints the summary; a second one aborts at once. Either way the JSONL file holds only
complete lines and no URL twice. A sink that cannot write stops the run with a clear message and exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from hostile_server import make_app

from crawler import cli
from crawler.localsite import ServerThread

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.timeout(90), pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
stages:
  enrichment:
    timeout: {timeout}
    connect_timeout: 2
    retries: 0
    max_workers: 4
    per_domain_limit: 4
    max_crawl_delay: 0
    circuit_failures: 1000
    batch_size: 1
    nlp_enabled: false
    adaptive:
      enabled: false
"""

"""SIGTERM is handled like SIGINT only once ``crawler/cli.py`` installs a handler for it (see the tests below)."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with ServerThread(make_app) as site:
        yield site.url


class Crawl:
    """One ``python -m crawler --stage 3`` subprocess over a URL file."""

    def __init__(self, tmp_path: Path, urls: list[str], *, timeout_s: float = 10.0, output: Path | None = None) -> None:
        self.input = tmp_path / "urls.txt"
        self.input.write_text("\n".join(urls) + "\n", encoding="utf-8")
        self.output = output or tmp_path / "out.jsonl"
        config = tmp_path / "config.yml"
        config.write_text(CONFIG.format(timeout=timeout_s), encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "crawler",
            "--stage",
            "3",
            "-i",
            str(self.input),
            "--output",
            str(self.output),
            "--config",
            str(config),
            "--data-dir",
            str(tmp_path / "data"),
            "--progress",
            "off",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.stderr = ""

    def wait_for_lines(self, count: int, limit_s: float = 30.0) -> None:
        """Until the output holds ``count`` lines (the crawl is mid-way), bounded in time."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the crawl ended early: {self.finish()}"
            if self.output.is_file() and len(self.output.read_bytes().splitlines()) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"no {count} lines in {limit_s} s")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, limit_s: float = 30.0) -> int:
        try:
            _, self.stderr = self.process.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, self.stderr = self.process.communicate()
            raise
        return self.process.returncode

    def rows(self) -> list[dict[str, object]]:
        """Every line of the output, each a complete JSON record; no URL twice."""
        text = self.output.read_text(encoding="utf-8") if self.output.is_file() else ""
        assert text == "" or text.endswith("\n"), "the last line is complete"
        rows = [json.loads(line) for line in text.splitlines()]
        urls = [row["url"] for row in rows]
        assert len(urls) == len(set(urls)), "no URL twice"
        assert all({"url", "status", "error", "engine"} <= row.keys() for row in rows)
        return rows


def slow_urls(server: str, count: int, seconds: int = 1) -> list[str]:
    # /trickle sends one byte per second for `seconds`: each URL takes that long, so the crawl is caught mid-way
    return [f"{server}/trickle?seconds={seconds}&n={n}" for n in range(count)]


def _graceful_stop(tmp_path: Path, server: str, signum: int) -> None:
    urls = slow_urls(server, 60)
    crawl = Crawl(tmp_path, urls)
    crawl.wait_for_lines(4)
    signalled = time.monotonic()
    crawl.signal(signum)
    code = crawl.finish()
    assert code == cli.EXIT_INTERRUPTED, crawl.stderr
    # in-flight URLs finish (each takes ~1 s): the stop is prompt, not the whole remaining crawl
    assert time.monotonic() - signalled < 10
    rows = crawl.rows()
    assert 4 <= len(rows) < len(urls)
    assert {row["url"] for row in rows} <= set(urls)
    assert "interrupted: finishing URLs in flight" in crawl.stderr
    assert "Stage 3: enrich" in crawl.stderr
    assert "Interrupted" in crawl.stderr
    assert "yes (partial run)" in crawl.stderr
    assert f"| Processed | {len(rows)}".replace(" ", "") in crawl.stderr.replace(" ", "")


def test_sigint_finishes_in_flight_flushes_and_prints_the_summary(tmp_path: Path, server: str) -> None:
    _graceful_stop(tmp_path, server, signal.SIGINT)


def test_sigterm_is_handled_like_sigint(tmp_path: Path, server: str) -> None:
    _graceful_stop(tmp_path, server, signal.SIGTERM)


def test_second_sigint_aborts_at_once_leaving_valid_jsonl(tmp_path: Path, server: str) -> None:
    # /hang never answers: after one SIGINT the run would wait for the 20 s timeout of the URLs in flight
    urls = [f"{server}/page/{n}" for n in range(6)] + [f"{server}/hang?n={n}" for n in range(40)]
    crawl = Crawl(tmp_path, urls, timeout_s=20.0)
    crawl.wait_for_lines(6)
    crawl.signal(signal.SIGINT)
    time.sleep(0.5)
    assert crawl.process.poll() is None, "still finishing the hanging URLs after the first signal"
    second = time.monotonic()
    crawl.signal(signal.SIGINT)
    code = crawl.finish()
    assert code == cli.EXIT_INTERRUPTED, crawl.stderr
    assert time.monotonic() - second < 5
    rows = crawl.rows()
    assert len(rows) >= 6
    assert all(row["status"] == 200 for row in rows)  # the hanging URLs were aborted, not recorded as done


def test_sink_that_cannot_open_fails_the_run_with_a_clear_message(tmp_path: Path, server: str) -> None:
    output = tmp_path / "out.jsonl"
    output.mkdir()  # the output file was replaced by a directory
    crawl = Crawl(tmp_path, [f"{server}/page/1"], output=output)
    assert crawl.finish() == cli.EXIT_FAILED
    assert f"webenrich: failed: cannot open output file {output}" in crawl.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_sink_that_fails_mid_run_stops_the_run(tmp_path: Path, server: str) -> None:
    crawl = Crawl(tmp_path, [f"{server}/page/{n}" for n in range(50)], output=Path("/dev/full"))
    assert crawl.finish() == cli.EXIT_FAILED
    assert "webenrich: failed: cannot write to /dev/full: No space left on device" in crawl.stderr


@pytest.mark.parametrize("engine", ["--async-enrichment", "--no-async-enrichment"])
def test_sigterm_stops_discovery_and_keeps_what_it_found(engine: str, tmp_path: Path) -> None:
    """Stage 1 on an endless site: SIGTERM stops it promptly; the URLs found so far are written, the report says
    it was interrupted, and ``--stage all`` would not go on to stage 2 (exit status 130)."""
    hits: list[str] = []

    def endless() -> web.Application:
        async def page(request: web.Request) -> web.Response:
            hits.append(request.path)
            if request.path == "/robots.txt":
                return web.Response(text="User-agent: *\n")
            await asyncio.sleep(0.2)
            n = int(request.match_info.get("n", "0"))
            links = "".join(f'<a href="/page/{m}">p{m}</a>' for m in (2 * n + 1, 2 * n + 2))
            return web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")

        app = web.Application()
        app.router.add_get("/page/{n}", page)
        app.router.add_get("/robots.txt", page)
        return app

    with ServerThread(endless) as site:
        command = [sys.executable, "-m", "crawler", "--stage", "1", engine, "--seeds", f"{site.url}/page/0"]
        command += ["--max-depth", "50", "--max-pages", "1000000", "--data-dir", str(tmp_path / "d")]
        process = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while sum(path.startswith("/page/") for path in hits) < 5 and time.monotonic() < deadline:
                assert process.poll() is None, process.communicate()[1]
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr
    assert time.monotonic() - signalled < 10
    urls = (tmp_path / "d/stage01/discovered_urls.txt").read_text().splitlines()
    assert len(urls) >= 5
    assert urls[0] == f"{site.url}/page/0"
    report = json.loads((tmp_path / "d/stage01/discover_report.json").read_text())
    assert report["interrupted"] is True
    assert report["urls"] == len(urls)
