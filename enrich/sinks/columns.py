"""The query columns the database sinks (SQLite, PostgreSQL) keep beside each whole record: one definition."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from enrich.record import Record

__all__ = ["query_columns"]


def query_columns(record: Record, text: Callable[[str], str]) -> tuple[object, ...]:
    """``url, final_url, status, content_type, title, language, word_count, error_type, enriched_at``, its strings
    passed through ``text`` (what the database can store)."""

    def clean(value: str | None) -> str | None:
        return None if value is None else text(value)

    return (
        clean(record.url),
        clean(record.final_url),
        record.status,
        clean(record.content_type),
        clean(record.title),
        clean(record.language),
        record.word_count,
        record.error.type if record.error else None,
        record.enriched_at,
    )
