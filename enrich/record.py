"""The enriched record, the fetched page it is made from, and the one serializer every engine and sink uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_FIELDS",
    "SCHEMA_PATH",
    "Contact",
    "Entity",
    "ErrorInfo",
    "FetchedPage",
    "Record",
    "dumps_record",
    "load_schema",
    "repair_text",
    "utc_now_iso",
]

SCHEMA_PATH = Path(__file__).with_name("record.schema.json")


def utc_now_iso() -> str:
    """Current time as ISO 8601 in UTC with millisecond precision, e.g. ``2026-11-25T12:00:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True, frozen=True)
class FetchedPage:
    """What an engine hands the core: the response, whatever transport produced it.

    ``headers`` has lower-case names. ``truncated`` is set when the body was cut at the size cap.
    """

    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    body: bytes
    fetched_at: str
    fetch_duration_ms: float
    attempts: int = 1
    truncated: bool = False

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("content-type")
        return value.split(";", 1)[0].strip().lower() or None if value else None


@dataclass(slots=True, frozen=True)
class Entity:
    """A named entity: its text as found, its spaCy label, and how often it occurs in the text."""

    text: str
    label: str
    count: int


@dataclass(slots=True, frozen=True)
class Contact:
    """A way to reach the people behind a site, found by the contacts stage (:mod:`enrich.contacts`).

    ``type`` is ``email`` (lower case), ``phone`` (E.164, e.g. ``+14155552671``) or ``social`` (a profile URL,
    ``network`` naming the service); ``source`` is the URL of the page it was found on.
    """

    type: str
    value: str
    source: str
    network: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"type": self.type, "value": self.value, "source": self.source, "network": self.network}


@dataclass(slots=True, frozen=True)
class ErrorInfo:
    """Why a record is incomplete: the error type, a message for people, and the step that failed."""

    type: str
    message: str
    stage: str

    @classmethod
    def from_exception(cls, exc: BaseException, stage: str) -> ErrorInfo:
        return cls(type=type(exc).__name__, message=str(exc) or type(exc).__name__, stage=stage)


@dataclass(slots=True)
class Record:
    """One output record per input URL, enriched or carrying its error. Field order is the output order."""

    url: str
    final_url: str | None = None
    status: int | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    file_name: str | None = None
    fetched_at: str | None = None
    enriched_at: str | None = None
    fetch_duration_ms: float | None = None
    process_duration_ms: float | None = None
    attempts: int = 0
    title: str | None = None
    description: str | None = None
    author: str | None = None
    published: str | None = None
    language: str | None = None
    text: str | None = None
    word_count: int = 0
    page_count: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    """Emails, phone numbers and social profiles of the page and its site (the optional contacts stage)."""
    entities: list[Entity] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    summary: str | None = None
    error: ErrorInfo | None = None
    engine: str | None = None
    revisit: str | None = None
    """How a recrawl found the URL: ``not_modified``, ``unchanged``, ``changed`` or ``fresh`` (see the schema)."""
    timings: dict[str, float | None] | None = None
    """Milliseconds spent in each step (:mod:`enrich.timing`), set by the sink stage."""

    def fail(self, exc: BaseException, stage: str) -> None:
        """Record the first failure; later ones are logged by the caller but the first cause is kept."""
        if self.error is None:
            self.error = ErrorInfo.from_exception(exc, stage)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in RECORD_FIELDS:
            value = getattr(self, name)
            if name == "entities":
                value = [{"text": e.text, "label": e.label, "count": e.count} for e in value]
            elif name == "contacts":
                value = [c.to_dict() for c in value]
            elif name == "error" and value is not None:
                value = {"type": value.type, "message": value.message, "stage": value.stage}
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        values = dict(data)
        values["entities"] = [Entity(**e) for e in values.get("entities") or []]
        values["contacts"] = [Contact(**c) for c in values.get("contacts") or []]
        if values.get("error") is not None:
            values["error"] = ErrorInfo(**values["error"])
        return cls(**{k: v for k, v in values.items() if k in RECORD_FIELDS})


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Record))


def repair_text(text: str) -> str:
    """``text`` with every lone surrogate (from a PDF's text layer, a JSON ``\\ud800`` escape, a file name decoded
    with ``surrogateescape``) replaced by U+FFFD, so it can be written as UTF-8; valid text comes back as is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # surrogatepass keeps well-formed pairs (they decode to their character); lone halves become U+FFFD
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def dumps_record(record: Record) -> str:
    """Serialize a record as one JSON line (no trailing newline), fields in :data:`RECORD_FIELDS` order.

    Text that cannot be encoded (lone surrogates) is repaired here, the one place every sink serializes through,
    so a record is never dropped for it.
    """
    line = json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"), default=str)
    return line if line.isascii() else repair_text(line)


def load_schema() -> dict[str, Any]:
    """The JSON Schema of a serialized record, kept beside this module."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema
