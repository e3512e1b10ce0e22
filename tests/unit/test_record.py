"""The record, its one serializer, and the JSON Schema that documents it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from jsonschema import Draft202012Validator

from crawler.demo import DEMO_ROOT, make_pdf, make_png
from enrich.errors import ContentError
from enrich.extract import extract_page
from enrich.record import RECORD_FIELDS, Entity, ErrorInfo, Record, dumps_record, load_schema, utc_now_iso
from enrich.stages import WorkItem

if TYPE_CHECKING:
    from collections.abc import Callable

    from enrich.record import FetchedPage

    PageFactory = Callable[..., FetchedPage]


def full_record() -> Record:
    return Record(
        url="https://example.org/a",
        final_url="https://example.org/b",
        status=200,
        content_type="text/html",
        size_bytes=1234,
        file_name="b",
        fetched_at="2024-06-01T12:00:00.000Z",
        enriched_at="2024-06-01T12:00:01.250Z",
        fetch_duration_ms=12.5,
        process_duration_ms=40.0,
        attempts=2,
        title="Café Løvstad",
        description="A description",
        author="Ingrid Solberg",
        published="2024-05-14",
        language="nb",
        text="Ingrid Solberg drank coffee at Café Løvstad in Bergen.",
        word_count=9,
        page_count=None,
        metadata={"site_name": "Example", "encoding": "utf-8", "tags": ["a", "b"]},
        links=["https://example.org/c", "http://example.org/d"],
        entities=[Entity("Ingrid Solberg", "PERSON", 1), Entity("Bergen", "GPE", 2)],
        keywords=["coffee", "café"],
        summary="Ingrid Solberg drank coffee.",
        error=ErrorInfo(type="NLPError", message="model crashed", stage="nlp"),
        engine="async",
    )


def test_serializer_field_order_is_record_fields() -> None:
    line = dumps_record(full_record())
    assert list(json.loads(line)) == list(RECORD_FIELDS)
    assert list(json.loads(dumps_record(Record(url="https://x.org/")))) == list(RECORD_FIELDS)


def test_serializer_is_one_line_and_keeps_unicode() -> None:
    record = full_record()
    record.text = "line one\nline two\u2028still one record"
    line = dumps_record(record)
    assert "\n" not in line
    assert "Café Løvstad" in line  # ensure_ascii=False
    assert json.loads(line)["text"] == record.text


def test_round_trip() -> None:
    record = full_record()
    again = Record.from_dict(json.loads(dumps_record(record)))
    assert again == record
    assert again.entities[1] == Entity(text="Bergen", label="GPE", count=2)
    assert again.error == ErrorInfo(type="NLPError", message="model crashed", stage="nlp")
    assert Record.from_dict(Record(url="https://x.org/").to_dict()) == Record(url="https://x.org/")


def test_from_dict_ignores_unknown_keys() -> None:
    data = full_record().to_dict() | {"added_by_a_newer_version": 1}
    assert Record.from_dict(data) == full_record()


def test_fail_keeps_the_first_cause() -> None:
    record = Record(url="https://x.org/")
    record.fail(ContentError("empty body"), "extract")
    record.fail(RuntimeError("later"), "nlp")
    assert record.error == ErrorInfo(type="ContentError", message="empty body", stage="extract")
    # an exception without a message still gets a readable one
    assert ErrorInfo.from_exception(KeyError(), "sink").message == "KeyError"


def test_utc_now_iso_format() -> None:
    validator = Draft202012Validator(load_schema())
    value = utc_now_iso()
    assert value.endswith("Z")
    assert not list(validator.iter_errors(Record(url="https://x.org/", enriched_at=value).to_dict()))


# --- the schema ---------------------------------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_lists_exactly_the_record_fields() -> None:
    """Fails when a field is added to Record but not to the schema (or the other way round)."""
    schema = load_schema()
    assert set(schema["properties"]) == set(RECORD_FIELDS)
    assert set(schema["required"]) == set(RECORD_FIELDS)
    assert schema["additionalProperties"] is False


def test_schema_lists_exactly_the_entity_and_error_fields() -> None:
    schema = load_schema()
    entity = schema["properties"]["entities"]["items"]
    assert set(entity["properties"]) == set(Entity.__dataclass_fields__)
    error = next(choice for choice in schema["properties"]["error"]["oneOf"] if choice["type"] == "object")
    assert set(error["properties"]) == set(ErrorInfo.__dataclass_fields__)


def test_full_and_minimal_records_validate(record_validator: Draft202012Validator) -> None:
    record_validator.validate(full_record().to_dict())
    record_validator.validate(Record(url="https://x.org/").to_dict())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("links", ["ftp://example.org/file"]),
        ("language", "English"),
        ("status", 42),
        ("fetched_at", "2024-06-01 12:00:00"),
        ("engine", "selenium"),
        ("word_count", -1),
        ("url", ""),
        ("entities", [{"text": "Bergen", "label": "GPE", "count": 0}]),
        ("error", {"type": "X", "message": "", "stage": "nlp"}),
    ],
)
def test_schema_rejects_bad_values(record_validator: Draft202012Validator, field: str, value: object) -> None:
    data = full_record().to_dict()
    data[field] = value
    assert list(record_validator.iter_errors(data)), f"{field}={value!r} should be rejected"


def test_schema_rejects_missing_and_extra_fields(record_validator: Draft202012Validator) -> None:
    data = full_record().to_dict()
    del data["summary"]
    assert list(record_validator.iter_errors(data))
    data = full_record().to_dict() | {"extra": 1}
    assert list(record_validator.iter_errors(data))


def _demo_bodies() -> list[tuple[str, bytes, str]]:
    html = [(p.name, p.read_bytes(), "text/html") for p in sorted(DEMO_ROOT.glob("*.html"))]
    return [
        *html,
        ("survey-report.pdf", make_pdf(), "application/pdf"),
        ("harbour-map.png", make_png(), "image/png"),
        ("broken.pdf", make_pdf()[:200], "application/pdf"),
        ("empty.html", b"", "text/html"),
    ]


@pytest.mark.parametrize(
    ("name", "body", "content_type"), _demo_bodies(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_records_from_real_extraction_validate(
    record_validator: Draft202012Validator, make_page: PageFactory, name: str, body: bytes, content_type: str
) -> None:
    page = make_page(body, content_type=content_type, url=f"http://127.0.0.1:8000/{name}")
    item = WorkItem.from_page(page, engine="async")
    result = extract_page(page)
    result.apply(item.record)
    if result.error is not None:
        item.record.fail(ContentError(result.error, url=page.url), "extract")
    item.record.enriched_at = utc_now_iso()
    data = json.loads(dumps_record(item.record))
    record_validator.validate(data)
    assert data["size_bytes"] == len(body)
    assert data["fetched_at"] == page.fetched_at


def test_work_item_from_error_validates(record_validator: Draft202012Validator) -> None:
    item = WorkItem.from_error(
        "https://example.org/x", TimeoutError("read timed out"), engine="scrapy", attempts=3, fetch_duration_ms=30000.04
    )
    assert item.page is None
    assert item.record.error == ErrorInfo(type="TimeoutError", message="read timed out", stage="fetch")
    assert item.record.fetch_duration_ms == 30000.0
    record_validator.validate(item.record.to_dict())
