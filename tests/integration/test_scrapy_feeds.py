"""Scrapy's feed exports in Scrapy mode, as a Scrapy user runs them: ``scrapy crawl enrich -a input=... -O out.csv``.

The items are the records (fields in the schema's order) in every format; the project's own JSONL output is
written only when one is asked for. Scrapy runs in a subprocess from a folder of its own (the project found
through ``SCRAPY_SETTINGS_MODULE``), so anything it writes beside the feeds is seen.
"""

from __future__ import annotations

import csv
import json
import marshal
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pytest
from lxml import etree

from crawler.demo import DEMO_ROOT, demo_pages
from crawler.localsite import ServerThread, static_app
from enrich.record import RECORD_FIELDS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from jsonschema import Draft202012Validator

REPO_ROOT = Path(__file__).resolve().parents[2]

RUN_DEPENDENT = {"fetched_at", "enriched_at", "fetch_duration_ms", "process_duration_ms"}
NESTED = {"metadata", "links", "entities", "keywords", "error"}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with ServerThread(lambda: static_app(DEMO_ROOT, demo_pages())) as server:
        yield server.url


def urls_file(folder: Path, site: str) -> Path:
    path = folder / "urls.txt"
    lines = [f"{site}/lighthouse.html", f"{site}/market.html", f"{site}/survey-report.pdf", f"{site}/gone.html"]
    path.write_text("\n".join([*lines, "not a url"]) + "\n", encoding="utf-8")
    return path


def scrapy_crawl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "crawler.scrapy_mode.settings"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "scrapy", "crawl", "enrich", "-a", "nlp=off", "-a", "retries=0", *args]
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def read_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    return header, rows


def read_all(path: Path, load: Callable[[BinaryIO], Any]) -> list[dict[str, Any]]:
    """Every object of a file of successive pickles or marshals, as Scrapy writes them."""
    items = []
    with path.open("rb") as handle:
        while handle.peek(1):
            items.append(load(handle))
    return items


def xml_items(path: Path) -> list[etree._Element]:
    return list(etree.parse(str(path)).getroot())


@pytest.mark.slow
def test_feed_exports_are_the_records_in_every_format(
    tmp_path: Path, site: str, record_validator: Draft202012Validator
) -> None:
    urls = urls_file(tmp_path, site)
    feeds = ["out.jsonl", "out.json", "out.csv", "out.xml", "out.pickle", "out.marshal"]
    scrapy_crawl(tmp_path, "-a", f"input={urls}", *(arg for feed in feeds for arg in ("-O", feed)))

    # -O alone writes the feeds and nothing else (no default output under data/)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*feeds, "urls.txt"])

    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    listed = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    header, rows = read_csv(tmp_path / "out.csv")
    items = xml_items(tmp_path / "out.xml")
    assert len(lines) == len(listed) == len(rows) == len(items) == 5

    for record in [*lines, *listed]:
        assert tuple(record) == RECORD_FIELDS  # the record itself, in the schema's order
        record_validator.validate(record)
    assert tuple(header) == RECORD_FIELDS
    for item in items:
        assert tuple(child.tag for child in item) == RECORD_FIELDS

    by_url = {r["url"]: r for r in lines}
    for name, load in (("out.pickle", pickle.load), ("out.marshal", marshal.load)):
        assert {r["url"]: r for r in read_all(tmp_path / name, load)} == by_url, name
    assert by_url[f"{site}/lighthouse.html"]["title"]
    assert by_url[f"{site}/survey-report.pdf"]["content_type"] == "application/pdf"
    assert by_url[f"{site}/gone.html"]["error"]["message"] == "HTTP 404 Not Found"
    assert by_url["not a url"]["error"]["stage"] == "input"
    assert {r["url"]: r["status"] for r in listed} == {url: r["status"] for url, r in by_url.items()}

    # CSV: one JSON text per nested field, empty cells for missing values; the rest as text
    for row in rows:
        expected = by_url[row["url"]]
        for name in NESTED:
            assert (json.loads(row[name]) if row[name] else None) == expected[name], name
        assert row["status"] == ("" if expected["status"] is None else str(expected["status"]))
        assert row["title"] == (expected["title"] or "")
    # XML: nested values as elements, missing ones empty
    for item in items:
        expected = by_url[item.findtext("url")]
        assert (item.findtext("title") or "") == (expected["title"] or "")
        assert [v.text for v in item.find("links")] == expected["links"]
        error = item.find("error")
        assert (error.findtext("message") if len(error) else None) == (expected["error"] or {}).get("message")


@pytest.mark.slow
def test_configured_output_and_a_feed_get_the_same_records(tmp_path: Path, site: str) -> None:
    urls = urls_file(tmp_path, site)
    scrapy_crawl(tmp_path, "-a", f"input={urls}", "-a", "output=records.jsonl", "-o", "feed.jsonl")

    def read(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (tmp_path / name).read_text(encoding="utf-8").splitlines()]

    written, fed = read("records.jsonl"), read("feed.jsonl")
    assert sorted(written, key=lambda r: r["url"]) == sorted(fed, key=lambda r: r["url"])
    assert len(written) == 5
    assert not (tmp_path / "data").exists()
