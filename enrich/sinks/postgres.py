"""PostgreSQL sink: records in a real database, one transaction per batch, upserted by URL.

A batch is written with one ``executemany`` (psycopg 3 sends it as a pipeline: one round trip, not one per row) inside
one transaction, ``INSERT ... ON CONFLICT (url) DO UPDATE``: a batch written again after a crash (the crawl state
redoes what it had not committed) replaces its rows instead of adding new ones. The table is created on first use;
the whole record is kept as JSONB beside a few columns for queries.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from enrich.errors import SinkError
from enrich.record import dumps_record, repair_text
from enrich.sinks.columns import query_columns

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from enrich.record import Record

__all__ = ["PostgresSink", "jsonb_text", "redact_dsn"]

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
"""A ``\\u0000`` escape in JSON text (not an escaped backslash followed by ``u0000``): JSONB refuses it."""

_PASSWORD = re.compile(r"(password\s*=\s*)(\S+)|(://[^:/@]*:)([^@]*)(@)", re.IGNORECASE)


def jsonb_text(line: str) -> str:
    """A serialized record as PostgreSQL's JSONB takes it: NUL characters (which it refuses) become U+FFFD."""
    return _NUL_ESCAPE.sub(lambda m: m.group(1) + "\\ufffd", line) if "\\u0000" in line else line


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return _PASSWORD.sub(lambda m: (m.group(1) or m.group(3)) + "***" + (m.group(5) or ""), dsn)


class PostgresSink:
    """Writes records to a PostgreSQL table (created on first use); a rerun replaces the rows of URLs it writes again.

    Args:
        dsn: a libpq connection string or URI (``postgresql://user@host/db``).
        table: the table's name (lower-case letters, digits, underscores).
    """

    def __init__(self, *, dsn: str, table: str = "records") -> None:
        if not _IDENTIFIER.match(table):
            raise SinkError(f"PostgreSQL table name {table!r} must be lower-case letters, digits and underscores")
        self.dsn = dsn
        self.table = table
        self._db: psycopg.AsyncConnection[Any] | None = None

    def _schema(self) -> str:
        return f"""
        CREATE TABLE IF NOT EXISTS {self.table} (
            url TEXT PRIMARY KEY,
            final_url TEXT,
            status INTEGER,
            content_type TEXT,
            title TEXT,
            language TEXT,
            word_count INTEGER,
            error_type TEXT,
            enriched_at TIMESTAMPTZ,
            record JSONB NOT NULL
        )"""

    def _upsert(self) -> str:
        return (
            f"INSERT INTO {self.table} (url, final_url, status, content_type, title, language, word_count, "
            "error_type, enriched_at, record) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) "
            "ON CONFLICT (url) DO UPDATE SET "
            "final_url = EXCLUDED.final_url, status = EXCLUDED.status, content_type = EXCLUDED.content_type, "
            "title = EXCLUDED.title, language = EXCLUDED.language, word_count = EXCLUDED.word_count, "
            "error_type = EXCLUDED.error_type, enriched_at = EXCLUDED.enriched_at, record = EXCLUDED.record"
        )

    async def open(self) -> None:
        import psycopg  # deferred: only runs writing to PostgreSQL need the driver

        try:
            self._db = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=10)
            async with self._db.transaction():
                # CREATE TABLE IF NOT EXISTS is not safe against itself: two workers opening at once can both
                # try, and one fails on the catalog's unique index. A transaction-scoped advisory lock serializes it.
                await self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"webenrich:{self.table}",))
                await self._db.execute(self._schema())
        except psycopg.Error as exc:
            raise SinkError(f"cannot open PostgreSQL database {redact_dsn(self.dsn)}: {exc}".strip()) from exc

    async def write(self, records: Sequence[Record]) -> None:
        await self.write_serialized(records, [dumps_record(r) for r in records])

    async def write_serialized(self, records: Sequence[Record], lines: Sequence[str]) -> None:
        """Upsert records already serialized by :func:`~enrich.record.dumps_record`, in one transaction."""
        import psycopg

        if self._db is None:
            raise SinkError("PostgreSQL sink written before open()")
        rows = [(*query_columns(r, _text), jsonb_text(line)) for r, line in zip(records, lines, strict=True)]
        try:
            async with self._db.transaction(), self._db.cursor() as cursor:
                await cursor.executemany(self._upsert(), rows)
        except psycopg.Error as exc:
            raise SinkError(f"cannot write to PostgreSQL {redact_dsn(self.dsn)}: {exc}".strip()) from exc

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()


def _text(value: str) -> str:
    """A column value PostgreSQL stores: no lone surrogate, no NUL character."""
    return repair_text(value).replace("\x00", "\ufffd")
