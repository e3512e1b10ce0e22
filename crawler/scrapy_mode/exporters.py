"""Feed exporters for records: Scrapy's CSV and XML exporters, with a record's empty and nested fields written so
that they read back unambiguously.

Scrapy's own CSV exporter writes a nested value as its Python ``repr`` (``{'a': 1}``) and joins a list of strings
with commas, which URLs may contain; its XML exporter writes ``None`` as the text ``None``. Here a nested value
(``metadata``, ``links``, ``entities``, ``error``) is one JSON text in its CSV cell, and a missing value is an
empty cell or element. JSON, JSON lines and the other formats need nothing: the items are plain JSON data already.

Scrapy mode lists them in ``FEED_EXPORTERS``; the add-on does not (a project's other items are its own business),
but a project may list them too.
"""

from __future__ import annotations

import json
from typing import Any

from scrapy.exporters import CsvItemExporter, XmlItemExporter

__all__ = ["RecordCsvItemExporter", "RecordXmlItemExporter"]


class RecordCsvItemExporter(CsvItemExporter):
    """CSV with one column per record field: nested values as JSON text, ``None`` as an empty cell."""

    def serialize_field(self, field: Any, name: str, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return super().serialize_field(field, name, value)


class RecordXmlItemExporter(XmlItemExporter):
    """Scrapy's XML (nested values as nested elements), with ``None`` as an empty element."""

    def serialize_field(self, field: Any, name: str, value: Any) -> Any:
        return "" if value is None else super().serialize_field(field, name, value)
