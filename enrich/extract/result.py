"""The result of extracting one document: plain data, so it can cross a thread or process boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enrich.record import Record

__all__ = ["Extraction"]


@dataclass(slots=True)
class Extraction:
    """Fields an extractor found. ``error`` is a message when the document was empty, truncated or malformed."""

    content_type: str | None = None
    title: str | None = None
    description: str | None = None
    author: str | None = None
    published: str | None = None
    language: str | None = None
    text: str | None = None
    page_count: int | None = None
    file_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    error: str | None = None
    error_type: str = "ContentError"

    def apply(self, record: Record) -> None:
        """Copy what was found onto a record, leaving fields it did not find untouched."""
        for name in (
            "content_type",
            "title",
            "description",
            "author",
            "published",
            "language",
            "text",
            "page_count",
            "file_name",
        ):
            value = getattr(self, name)
            if value is not None:
                setattr(record, name, value)
        record.metadata.update(self.metadata)
        if self.links:
            record.links = self.links
        record.word_count = len(record.text.split()) if record.text else 0
