"""Parity: the async engine and Scrapy mode enrich the same real pages into the same records.

Only what depends on the run may differ: timings, attempts and the engine name. The async engine runs in this
process; Scrapy runs in a subprocess (its reactor starts once per process), both against one local server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from crawler import run_async_enrichment
from crawler.localsite import ServerThread, static_app
from enrich.config import EnrichConfig

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = 10
"""Python library reference pages crawled; ten of the forty keep the test under half a minute with NLP on."""

RUN_DEPENDENT = frozenset(
    {"fetched_at", "enriched_at", "fetch_duration_ms", "process_duration_ms", "attempts", "engine", "timings"}
)

pytestmark = [pytest.mark.slow, pytest.mark.corpus]


@pytest.fixture(scope="module")
def python_pages(corpus_dir: Path) -> Path:
    pages = corpus_dir / "pages" / "python"
    if not pages.is_dir():
        pytest.skip(f"corpus folder {pages} not found")
    return pages


@pytest.fixture(scope="module")
def corpus_urls(python_pages: Path) -> Iterator[list[str]]:
    names = sorted(p.name for p in python_pages.glob("*.html"))[:PAGES]
    with ServerThread(lambda: static_app(python_pages)) as server:
        yield [f"{server.url}/{name}" for name in names] + [f"{server.url}/no-such-page.html"]


def parity_config(output: Path) -> EnrichConfig:
    return EnrichConfig().replace(
        fetch={"max_concurrency": 8, "retries": 0, "timeout_s": 20},
        nlp={"enabled": True, "workers": 1},
        output={"path": str(output)},
    )


def comparable(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for record in records:
        assert record["url"] not in out, f"two records for {record['url']}"
        out[record["url"]] = {k: v for k, v in record.items() if k not in RUN_DEPENDENT}
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_both_engines_write_the_same_records(tmp_path: Path, corpus_urls: list[str]) -> None:
    async_out, scrapy_out = tmp_path / "async.jsonl", tmp_path / "scrapy.jsonl"

    asyncio.run(run_async_enrichment(urls=corpus_urls, output_file=async_out, config=parity_config(async_out)))

    config_file, input_file = tmp_path / "parity.yml", tmp_path / "urls.txt"
    config_file.write_text(yaml.safe_dump(parity_config(scrapy_out).model_dump(mode="json")), encoding="utf-8")
    input_file.write_text("\n".join(corpus_urls) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "enrich", "-a", f"input={input_file}", "-a", f"config={config_file}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    async_records, scrapy_records = read_jsonl(async_out), read_jsonl(scrapy_out)
    assert {r["engine"] for r in async_records} == {"async"}
    assert {r["engine"] for r in scrapy_records} == {"scrapy"}
    expected, actual = comparable(async_records), comparable(scrapy_records)
    assert sorted(actual) == sorted(expected) == sorted(corpus_urls)
    successes = [url for url, record in expected.items() if record["error"] is None]
    assert len(successes) == PAGES
    # NLP really ran (a page of pure API listings may have no entity, but not most of them)
    assert sum(bool(expected[url]["entities"] and expected[url]["keywords"]) for url in successes) >= PAGES // 2
    for url in corpus_urls:
        assert actual[url] == expected[url], url
