"""The PostgreSQL sink against a real server (started for the session, stopped after): batched upserts, JSONB, the
table created on first use, and the sink used by a real run of each engine through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from enrich.errors import SinkError
from enrich.record import Entity, ErrorInfo, Record
from enrich.sinks import PostgresSink, SinkStage
from enrich.stages import WorkItem
from tests.checkout import checkout_env

if TYPE_CHECKING:
    from pathlib import Path

    from crawler.localsite import ServerThread

psycopg = pytest.importorskip("psycopg")


def rows(dsn: str, table: str = "records") -> dict[str, tuple[object, ...]]:
    with psycopg.connect(dsn) as db:
        result = db.execute(f"SELECT url, status, title, error_type, record FROM {table} ORDER BY url").fetchall()
    return {row[0]: row[1:] for row in result}


async def test_batches_are_upserted_by_url_with_the_record_as_jsonb(postgres_dsn: str) -> None:
    table = "sink_roundtrip"
    first = [
        Record(url="https://a.test/1", status=200, title="One", text="x\x00y", entities=[Entity("Oslo", "GPE", 2)]),
        Record(url="https://a.test/2", status=404, error=ErrorInfo("HTTPError", "HTTP 404 Not Found", "fetch")),
        Record(url="https://a.test/\ud800", status=200, title="Surrogate \udcff"),
    ]
    stage = SinkStage(sinks=[PostgresSink(dsn=postgres_dsn, table=table)], batch_size=2)
    await stage.open()
    for record in first:
        await stage.process(WorkItem(record=record))
    await stage.close()
    stored = rows(postgres_dsn, table)
    assert set(stored) == {"https://a.test/1", "https://a.test/2", "https://a.test/\ufffd"}
    status, title, error_type, record = stored["https://a.test/1"]
    assert (status, title, error_type) == (200, "One", None)
    assert record["text"] == "x\ufffdy"  # JSONB refuses NUL: repaired, not dropped
    assert record["entities"] == [{"text": "Oslo", "label": "GPE", "count": 2}]
    assert stored["https://a.test/2"][2] == "HTTPError"

    again = SinkStage(sinks=[PostgresSink(dsn=postgres_dsn, table=table)], batch_size=10)
    await again.open()
    await again.process(WorkItem(record=Record(url="https://a.test/1", status=200, title="One, again")))
    await again.close()
    stored = rows(postgres_dsn, table)
    assert len(stored) == 3  # a redelivered URL replaces its row
    assert stored["https://a.test/1"][1] == "One, again"
    with psycopg.connect(postgres_dsn) as db:  # JSONB: queryable by field
        (count,) = db.execute(f"SELECT count(*) FROM {table} WHERE record->>'status' = '200'").fetchone()  # type: ignore[misc]
    assert count == 2


async def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    sink = PostgresSink(dsn="postgresql://me:s3cret@127.0.0.1:9/none")
    with pytest.raises(SinkError, match=r"cannot open PostgreSQL database postgresql://me:\*\*\*@127.0.0.1:9/none"):
        await sink.open()


def test_a_bad_table_name_is_refused() -> None:
    with pytest.raises(SinkError, match="table name"):
        PostgresSink(dsn="postgresql://x", table="records; DROP TABLE x")


@pytest.mark.parametrize("engine", ["async", "scrapy"])
def test_a_run_writes_its_records_to_postgres(
    tmp_path: Path, demo_site: ServerThread, postgres_dsn: str, engine: str
) -> None:
    from crawler.demo import demo_urls

    urls = demo_urls(demo_site.url)
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n", encoding="utf-8")
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS records")
    argv = [sys.executable, "-m", "crawler", "--engine", engine, "--no-nlp", "-i", "urls.txt", "-o", "out.jsonl"]
    result = subprocess.run(
        [*argv, "--postgres", postgres_dsn, "--data-dir", "data", "--progress", "off"],
        cwd=tmp_path,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    stored = rows(postgres_dsn)
    assert set(stored) == set(urls)
    assert {url: row[3] for url, row in stored.items()} == {r["url"]: r for r in lines}
