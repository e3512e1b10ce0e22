"""SQLite sink: records in a real database, one transaction per batch, upserted by URL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from enrich.errors import SinkError
from enrich.record import dumps_record, repair_text
from enrich.sinks.columns import query_columns

if TYPE_CHECKING:
    from collections.abc import Sequence

    from enrich.record import Record

__all__ = ["SqliteSink"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    url TEXT PRIMARY KEY,
    final_url TEXT,
    status INTEGER,
    content_type TEXT,
    title TEXT,
    language TEXT,
    word_count INTEGER,
    error_type TEXT,
    enriched_at TEXT,
    record TEXT NOT NULL  -- the full record, serialized exactly as in the JSONL output
)
"""


class SqliteSink:
    """Writes records to a SQLite table; a rerun replaces the rows of URLs it enriches again.

    The common columns are indexed fields for queries; ``record`` holds the whole record as JSON, so the
    table and the JSONL output never disagree.
    """

    def __init__(self, *, path: Path | str) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SCHEMA)
        db.commit()
        return db

    async def open(self) -> None:
        try:
            self._db = await asyncio.to_thread(self._open_sync)
        except (OSError, sqlite3.Error) as exc:
            raise SinkError(f"cannot open database {self.path}: {exc}") from exc

    def _write_sync(self, rows: Sequence[tuple[object, ...]]) -> None:
        assert self._db is not None
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    async def write(self, records: Sequence[Record]) -> None:
        await self.write_serialized(records, [dumps_record(r) for r in records])

    async def write_serialized(self, records: Sequence[Record], lines: Sequence[str]) -> None:
        """Write records already serialized by :func:`~enrich.record.dumps_record` (one line each)."""
        if self._db is None:
            raise SinkError("SQLite sink written before open()")
        rows = [(*query_columns(r, repair_text), line) for r, line in zip(records, lines, strict=True)]
        async with self._lock:
            try:
                await asyncio.to_thread(self._write_sync, rows)
            except sqlite3.Error as exc:
                raise SinkError(f"cannot write to database {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    def read_all(self) -> list[dict[str, object]]:
        """Every stored record, decoded (for tests and tools; opens its own connection)."""
        with sqlite3.connect(self.path) as db:
            return [json.loads(row[0]) for row in db.execute("SELECT record FROM records ORDER BY url")]
