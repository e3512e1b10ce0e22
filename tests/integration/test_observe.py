"""Looking inside a run from the command line, both engines: /metrics served while it goes, the node_exporter
text file and the HTML report at the end."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from crawler.demo import DEMO_ROOT, demo_pages
from crawler.localsite import ServerThread, static_app
from tests.checkout import checkout_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SLOW_URLS = 6


def site_app() -> web.Application:
    """The demo site plus ``/slow/N`` pages that answer after 0.4 s, so a run lasts long enough to be scraped."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.4)
        return web.Response(
            text="<html><title>slow</title><body><p>a slow page</p></body></html>", content_type="text/html"
        )

    app = static_app(DEMO_ROOT, demo_pages())
    app.router.add_get("/slow/{n}", slow)
    return app


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with ServerThread(site_app) as server:
        yield server.url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.mark.parametrize("engine", ["async", "scrapy"])
def test_metrics_served_during_the_run_and_written_at_the_end(site: str, tmp_path: Path, engine: str) -> None:
    urls = tmp_path / "urls.txt"
    lines = [f"{site}/slow/{n}" for n in range(SLOW_URLS)] + [f"{site}/lighthouse.html", f"{site}/missing.html"]
    urls.write_text("\n".join([*lines, lines[0]]) + "\n")  # one repeated entry: skipped, not written
    port = free_port()
    textfile, report = tmp_path / "run.prom", tmp_path / "report.html"
    command = [
        sys.executable, "-m", "crawler", "--progress", "lines", "--stage", "3", "--engine", engine, "--no-nlp",
        "--max-workers", "1", "--input", str(urls), "--output", str(tmp_path / "out.jsonl"),
        "--metrics-port", str(port), "--metrics-textfile", str(textfile), "--report", str(report),
    ]  # fmt: skip
    env = checkout_env()
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    live: str | None = None
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        body = scrape(port)
        if body is not None and "webenrich_in_flight_requests" in body:
            live = body
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert live is not None, "no /metrics answer while the run went"
    assert f'webenrich_in_flight_requests{{engine="{engine}"}}' in live
    assert scrape(port) is None  # no longer served once the run is over
    text = textfile.read_text()
    assert f'webenrich_records_total{{engine="{engine}",outcome="success"}} {SLOW_URLS + 1}.0' in text
    assert f'webenrich_errors_total{{engine="{engine}",stage="fetch",type="HTTPError"}} 1.0' in text
    assert f'webenrich_stage_duration_seconds_count{{engine="{engine}",stage="ttfb"}}' in text
    assert "Bottleneck" in stderr
    assert "Skipped input" in stderr
    assert report.read_text().startswith("<!DOCTYPE html>")


def test_a_metrics_port_in_use_is_a_usage_error(site: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [
            sys.executable, "-m", "crawler", "--progress", "off", "--stage", "3", "--no-nlp",
            "--output", str(tmp_path / "out.jsonl"), "--metrics-port", str(port), f"{site}/lighthouse.html",
        ]  # fmt: skip
        env = checkout_env()
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    assert result.returncode == 2, result.stderr
    assert f"--metrics-port {port}: cannot listen" in result.stderr
