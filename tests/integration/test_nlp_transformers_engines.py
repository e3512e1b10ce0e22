"""The transformers NLP backend in both engines, end to end: ``python -m crawler --nlp-backend transformers`` with
the tiny NER model built in ``tests/tiny_ner.py`` (a local folder), against a loopback site.

The async engine runs the model in a worker process (``--nlp-executor process``), Scrapy mode in a thread, so each
executor meets the backend in a real run. Needs the ``[transformers]`` extra (skipped without it; CI installs it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from crawler.localsite import ServerThread, static_app
from tests.checkout import checkout_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


CONLL_RECORD_LABELS = {"PERSON", "ORG", "LOC", "MISC"}
"""A CoNLL model's labels in the record's scheme; the spaCy model would also say GPE (Oslo) and DATE (last year),
so these alone also show that the transformers backend did the tagging."""

PAGES = {
    "/team.html": (
        "Our team",
        "Dora Lind works at Globex in Oslo. She met Emil Novak in Toronto after the Olympics.",
        "Chen Wei said that Initech will grow, and Acme Corp opened an office in Paris.",
    ),
    "/news.html": (
        "News from Lisbon",
        "Bruno Keller joined Umbrella Labs in Lisbon last year.",
        "Fatima Haddad met Alice Smith in Nairobi, where Northwind Traders paid for the market.",
    ),
}


def page(title: str, *paragraphs: str) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><article><h1>{title}</h1>{body}</article></body></html>"
    ).encode()


@pytest.fixture(scope="module")
def ner_site() -> Iterator[str]:
    pages = {path: (page(*parts), "text/html") for path, parts in PAGES.items()}
    with ServerThread(lambda: static_app(None, pages)) as server:
        yield server.url


@pytest.mark.slow
@pytest.mark.parametrize(("engine", "executor"), [("async", "process"), ("scrapy", "thread")])
def test_engine_tags_entities_with_the_transformers_backend(
    ner_site: str, tiny_ner_model: Path, tmp_path: Path, engine: str, executor: str
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{ner_site}{path}\n" for path in PAGES))
    out = tmp_path / "out.jsonl"
    command = [
        sys.executable, "-m", "crawler", "--progress", "off", "--stage", "3", "--engine", engine, "--no-state",
        "--input", str(urls), "--output", str(out),
        "--nlp-backend", "transformers", "--nlp-model", str(tiny_ner_model), "--nlp-device", "cpu",
        "--nlp-executor", executor,
    ]  # fmt: skip
    env = checkout_env(HF_HUB_OFFLINE="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(PAGES)
    found: set[tuple[str, str]] = set()
    for record in records:
        assert record["error"] is None, record["error"]
        assert record["engine"] == engine
        assert record["entities"], record["url"]
        normalized = " ".join(record["text"].split())
        for entity in record["entities"]:
            assert entity["label"] in CONLL_RECORD_LABELS, entity
            assert entity["text"] in normalized, entity
            found.add((entity["text"], entity["label"]))
        assert record["keywords"]
    # a floor on what the tiny model trained on these names finds: it can fail
    assert {("Dora Lind", "PERSON"), ("Bruno Keller", "PERSON")} <= found
    assert any(label == "ORG" for _, label in found)


@pytest.mark.parametrize("engine", ["async", "scrapy"])
def test_missing_model_stops_the_run_before_any_fetch(ner_site: str, tmp_path: Path, engine: str) -> None:
    pytest.importorskip("transformers")
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{ner_site}/team.html\n")
    command = [
        sys.executable, "-m", "crawler", "--progress", "off", "--stage", "3", "--engine", engine, "--no-state",
        "--input", str(urls), "--output", str(tmp_path / "out.jsonl"),
        "--nlp-backend", "transformers", "--nlp-model", str(tmp_path / "no-model"),
    ]  # fmt: skip
    env = checkout_env(HF_HUB_OFFLINE="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"webenrich: failed: nlp.model '{tmp_path / 'no-model'}': no such folder" in result.stderr
    assert not (tmp_path / "out.jsonl").exists() or not (tmp_path / "out.jsonl").read_text()


async def test_run_async_enrichment_takes_use_transformers(ner_site: str, tiny_ner_model: Path) -> None:
    """The programmatic API's spelling: ``nlp_config={"use_transformers": True, "model": ...}``."""
    from crawler import run_async_enrichment
    from enrich.sinks import MemorySink

    sink = MemorySink()
    stats = await run_async_enrichment(
        [f"{ner_site}{path}" for path in PAGES],
        nlp_config={"use_transformers": True, "model": str(tiny_ner_model), "device": "cpu"},
        sinks=[sink],
        progress_interval_s=0,
    )
    assert stats.processed == len(PAGES)
    entities = {(e.text, e.label) for record in sink.records for e in record.entities}
    assert ("Bruno Keller", "PERSON") in entities
    assert {label for _, label in entities} <= CONLL_RECORD_LABELS


async def test_run_async_enrichment_refuses_a_contradiction(ner_site: str) -> None:
    from crawler import run_async_enrichment
    from enrich.errors import ConfigError

    with pytest.raises(ConfigError, match="contradicts"):
        await run_async_enrichment([f"{ner_site}/team.html"], nlp_config={"use_transformers": True, "backend": "spacy"})
