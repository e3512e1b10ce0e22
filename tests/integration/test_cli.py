"""The command line end to end, as a subprocess, against a local site: each stage alone, ``--stage all``, both
engines, the demo, bad configs and bad inputs, the error-rate gate and Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from crawler.demo import DEMO_ROOT, demo_pages
from crawler.localsite import ServerThread, static_app
from tests.checkout import checkout_env

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRAPY_PRESENT = (REPO_ROOT / "scrapy.cfg").is_file() and (REPO_ROOT / "crawler/scrapy_mode/spiders").is_dir()

ROBOTS = "User-agent: *\nDisallow: /festival.html\nSitemap: {base}/sitemap.xml\n"
SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>{base}/</loc></url>
  <url><loc>{base}/sitemap-only.html</loc></url>
  <url><loc>{base}/festival.html</loc></url>
</urlset>
"""
SITEMAP_ONLY = (
    b"<html><head><title>Only in the sitemap</title></head><body><p>Found through sitemap.xml.</p></body></html>"
)


def site_app() -> web.Application:
    """The demo site, plus robots.txt (disallowing /festival.html), sitemap.xml and a slow page."""

    @web.middleware
    async def extra_routes(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        base = f"{request.scheme}://{request.host}"
        if request.path == "/robots.txt":
            return web.Response(text=ROBOTS.format(base=base))
        if request.path == "/sitemap.xml":
            return web.Response(text=SITEMAP.format(base=base), content_type="application/xml")
        if request.path.startswith("/slow/"):
            await asyncio.sleep(0.5)
            return web.Response(
                text="<html><title>slow</title><body><p>slow page</p></body></html>", content_type="text/html"
            )
        return await handler(request)

    pages = {**demo_pages(), "/sitemap-only.html": (SITEMAP_ONLY, "text/html")}
    app = static_app(DEMO_ROOT, pages)
    app.middlewares.append(extra_routes)
    return app


@pytest.fixture(scope="session")
def site() -> Iterator[str]:
    with ServerThread(site_app) as server:
        yield server.url


ENGINES = [
    pytest.param(True, id="async"),
    pytest.param(
        False,
        id="scrapy",
        marks=pytest.mark.skipif(not SCRAPY_PRESENT, reason="Scrapy mode not yet present"),
    ),
]


def run_cli(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = checkout_env()
    return subprocess.run(
        [sys.executable, "-m", "crawler", "--progress", "lines", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def engine_flag(use_async: bool) -> str:
    return "--async-enrichment" if use_async else "--no-async-enrichment"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_help_is_grouped() -> None:
    result = run_cli("--help", cwd=REPO_ROOT)
    assert result.returncode == 0
    for group in ("configuration:", "stages:", "input:", "engine:", "fetching:", "NLP:", "output:"):
        assert group in result.stdout
    assert "python -m crawler demo" in result.stdout


def test_stage1_discovers_sitemap_and_links_honouring_robots(site: str, tmp_path: Path) -> None:
    result = run_cli("--stage", "1", "--seeds", site + "/", "--data-dir", "data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    urls = (tmp_path / "data/stage01/discovered_urls.txt").read_text().splitlines()
    assert urls[0] == site + "/"
    assert set(urls) == {
        site + path
        for path in (
            "/",
            "/sitemap-only.html",
            "/lighthouse.html",
            "/market.html",
            "/survey-report.pdf",
            "/harbour-map.png",
        )
    }
    report = json.loads((tmp_path / "data/stage01/discover_report.json").read_text())
    assert report["robots_disallowed"] == 1
    assert report["sitemaps_read"] == 1
    assert report["offsite_skipped"] >= 1  # https://example.org/about
    assert "Stage 1: discover" in result.stderr


def test_stage1_depth_and_page_limits(site: str, tmp_path: Path) -> None:
    config = tmp_path / "nositemap.yml"
    config.write_text("stages:\n  discover:\n    use_sitemaps: false\n")
    result = run_cli("--stage", "1", "--config", str(config), "--max-depth", "0", "--data-dir", "d", site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d/stage01/discovered_urls.txt").read_text().splitlines() == [site + "/"]
    result = run_cli("--stage", "1", "--max-pages", "2", "--data-dir", "d", site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "d/stage01/discovered_urls.txt").read_text().splitlines()) == 2


def test_stage2_prepares_and_counts_drops(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "\n".join(
            [
                "https://Example.org:443/a?utm_source=news&id=2#part",
                "https://example.org/a?id=2",
                "ftp://example.org/file",
                "https://example.org/style.css",
                "https://ads.example.net/x",
                "https://example.org/report.pdf",
                "# a comment",
                "",
            ]
        )
    )
    config = tmp_path / "deny.yml"
    config.write_text("stages:\n  prepare:\n    deny_domains: [example.net]\n")
    result = run_cli("--stage", "2", "--input", str(raw), "--config", str(config), "--data-dir", "data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    prepared = (tmp_path / "data/stage02/prepared_urls.txt").read_text().splitlines()
    assert prepared == ["https://example.org/a?id=2", "https://example.org/report.pdf"]
    report = json.loads((tmp_path / "data/stage02/prepare_report.json").read_text())
    assert report["read"] == 6
    assert report["dropped_by_reason"] == {"duplicate": 1, "scheme": 1, "extension": 1, "domain_denied": 1}
    assert "Dropped: duplicate" in result.stderr


@pytest.mark.parametrize("use_async", ENGINES)
def test_stage3_alone_writes_records_and_stats(site: str, tmp_path: Path, use_async: bool) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site}/lighthouse.html\n{site}/market.html\n{site}/missing-page.html\nnot a url\n")
    out, stats_file = tmp_path / "out.jsonl", tmp_path / "stats.json"
    result = run_cli(
        "--stage", "3", engine_flag(use_async), "--no-nlp", "--input", str(urls),
        "--output", str(out), "--stats-file", str(stats_file), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert len(records) == 4
    by_url = {r["url"]: r for r in records}
    assert by_url[f"{site}/lighthouse.html"]["error"] is None
    assert by_url[f"{site}/lighthouse.html"]["engine"] == ("async" if use_async else "scrapy")
    assert by_url[f"{site}/missing-page.html"]["error"]["type"] == "HTTPError"
    stats = json.loads(stats_file.read_text())
    assert stats["processed"] == 4
    assert stats["failed"] == 2
    assert stats["total"] == 4
    assert stats["interrupted"] is False
    assert "| Processed" in result.stderr


@pytest.mark.parametrize("use_async", ENGINES)
def test_stage_all_runs_one_two_three(site: str, tmp_path: Path, use_async: bool) -> None:
    config = tmp_path / "test.yml"
    config.write_text(
        "data_dir: work\nstages:\n  enrichment:\n    nlp_enabled: false\n    max_workers: 4\n"
        "  prepare:\n    skip_extensions: [.png]\n"
    )
    result = run_cli(
        "--env", "test", "--config", str(config), "--stage", "all", engine_flag(use_async), site, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    discovered = (tmp_path / "work/stage01/discovered_urls.txt").read_text().splitlines()
    prepared = (tmp_path / "work/stage02/prepared_urls.txt").read_text().splitlines()
    assert len(discovered) == 6
    assert prepared == [u for u in discovered if not u.endswith(".png")]
    records = read_jsonl(tmp_path / "work/processed/stage03/enrichment_output.jsonl")
    assert sorted(r["url"] for r in records) == sorted(prepared)
    assert all(r["error"] is None for r in records)
    assert all(r["entities"] in (None, []) for r in records)  # NLP off
    # the job's crawl state is in the data folder under the working directory (Scrapy's runs in the checkout)
    (state,) = (tmp_path / "work/state").glob("*.sqlite")
    with contextlib.closing(sqlite3.connect(state)) as db:
        done = db.execute("SELECT url FROM urls WHERE state = 'done'").fetchall()
    assert sorted(url for (url,) in done) == sorted(prepared)
    for title in ("Stage 1: discover", "Stage 2: prepare", "Stage 3: enrich"):
        assert title in result.stderr
    # the job's state is under the data folder the user named, relative to where they ran the command (the Scrapy
    # process runs from the checkout: a relative path handed to it used to land there)
    assert list((tmp_path / "work/state").glob("*.sqlite"))


def test_stage3_reads_stage2_output_by_default(site: str, tmp_path: Path) -> None:
    prepared = tmp_path / "data/development/stage02/prepared_urls.txt"
    prepared.parent.mkdir(parents=True)
    prepared.write_text(f"{site}/market.html\n")
    result = run_cli("--stage", "3", "--no-nlp", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "data/development/processed/stage03/enrichment_output.jsonl")
    assert [r["url"] for r in records] == [f"{site}/market.html"]


def test_stage3_without_stage2_output_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("--stage", "3", cwd=tmp_path)
    assert result.returncode == 2
    assert "stage02/prepared_urls.txt does not exist; run --stage 2 first" in result.stderr


def test_csv_jsonl_and_stdin_inputs(site: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(f"name,link\nmarket,{site}/market.html\n")
    result = run_cli("--no-nlp", "-i", str(csv_file), "--input-column", "link", "-o", "a.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["url"] for r in read_jsonl(tmp_path / "a.jsonl")] == [f"{site}/market.html"]

    jsonl_file = tmp_path / "in.jsonl"
    jsonl_file.write_text(json.dumps({"page": f"{site}/lighthouse.html"}) + "\n")
    result = run_cli("--no-nlp", "-i", str(jsonl_file), "--input-field", "page", "-o", "b.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["url"] for r in read_jsonl(tmp_path / "b.jsonl")] == [f"{site}/lighthouse.html"]

    result = run_cli("--no-nlp", "-i", "-", "-o", "c.jsonl", cwd=tmp_path, stdin=f"{site}/festival.html\n")
    assert result.returncode == 0, result.stderr
    assert [r["url"] for r in read_jsonl(tmp_path / "c.jsonl")] == [f"{site}/festival.html"]


def test_demo_runs_and_writes_default_output(tmp_path: Path) -> None:
    result = run_cli("demo", "--no-nlp", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "data/demo/enrichment_output.jsonl")
    assert len(records) == 7
    assert sum(r["error"] is not None for r in records) == 1
    assert re.search(r"\| Processed +\| +7 \|", result.stderr)


def test_max_error_rate_exceeded_exits_1(site: str, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site}/market.html\n{site}/missing-page.html\n")
    result = run_cli("--no-nlp", "-i", str(urls), "-o", "o.jsonl", "--max-error-rate", "0.25", cwd=tmp_path)
    assert result.returncode == 1
    assert "error rate 50.0% is above --max-error-rate 25.0%" in result.stderr
    result = run_cli("--no-nlp", "-i", str(urls), "-o", "o.jsonl", "--max-error-rate", "0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        (
            "stages:\n  enrichment:\n    max_worker: 5\n",
            ["stages.enrichment.max_worker: unknown key (did you mean 'max_workers'?"],
        ),
        (
            "stages:\n  enrichment:\n    max_workers: -3\n",
            ["stages.enrichment.max_workers: Input should be greater than or equal to 1 (got -3)"],
        ),
        (
            "stages:\n  enrichment:\n    timeout: fast\n    nlp_enabled: maybe\n",
            ["stages.enrichment.timeout: Input should be a valid number", "stages.enrichment.nlp_enabled:"],
        ),
        (
            "stages:\n  enrichment:\n    backoff_base: 60\n    backoff_cap: 8\n",
            ["stages.enrichment.backoff_base (60.0) must not exceed stages.enrichment.backoff_cap (8.0)"],
        ),
        ("stages: [1, 2]\n", ["stages: must be a mapping"]),
        ("datadir: x\n", ["datadir: unknown key"]),
    ],
)
def test_bad_config_stops_before_any_fetch(site: str, tmp_path: Path, yaml_text: str, needles: list[str]) -> None:
    config = tmp_path / "bad.yml"
    config.write_text(yaml_text)
    result = run_cli("--config", str(config), "-o", "out.jsonl", f"{site}/market.html", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_flag_value_names_key_and_flag(tmp_path: Path) -> None:
    result = run_cli("--max-workers", "-1", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "stages.enrichment.max_workers (from --max-workers): Input should be greater than or equal to 1"
        in result.stderr
    )


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = run_cli("--stage", "9", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: '9'" in result.stderr
    result = run_cli("--env", "nowhere", cwd=tmp_path)
    assert result.returncode == 2
    assert "no configuration for environment 'nowhere'" in result.stderr
    result = run_cli("--stage", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "stage 1 needs seed URLs" in result.stderr


def test_missing_input_file(tmp_path: Path) -> None:
    result = run_cli("--input", "nope.txt", cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot read input nope.txt: No such file or directory" in result.stderr


def test_csv_without_the_column(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("name,address\nx,https://example.org/\n")
    result = run_cli("--input", "in.csv", "-o", "out.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    assert "CSV input has no column 'url' (columns: name, address); choose one with --input-column" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_ctrl_c_flushes_what_is_done_and_exits_130(site: str, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{site}/slow/{n}\n" for n in range(200)))
    env = checkout_env()
    command = [sys.executable, "-m", "crawler", "--no-nlp", "-i", str(urls), "-o", "out.jsonl",
               "--max-workers", "2", "--no-adaptive", "--batch-size", "1",
               "--stats-file", "stats.json", "--progress", "lines", "--progress-interval", "0.2"]  # fmt: skip
    with subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + 60
        out = tmp_path / "out.jsonl"
        while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 2):
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted: finishing URLs in flight" in stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["interrupted"] is True
    records = read_jsonl(tmp_path / "out.jsonl")
    assert 2 <= len(records) < 200
    assert stats["processed"] == len(records)


def test_output_dash_writes_the_records_to_standard_output(tmp_path: Path) -> None:
    result = run_cli("demo", "--no-nlp", "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 7
    assert not list(tmp_path.rglob("-")), "a file named '-' was written"
