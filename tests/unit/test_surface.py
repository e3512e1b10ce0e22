"""Pin what the engines and tools import from ``enrich``, and that the core never imports an engine."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import enrich

ENRICH_DIR = Path(enrich.__file__).parent
ENGINE_PACKAGES = {"scrapy", "twisted", "aiohttp"}

EXPECTED_TOP_LEVEL = {
    "ConfigError",
    "ContentError",
    "EnrichConfig",
    "EnrichError",
    "Entity",
    "ErrorInfo",
    "ExtractStage",
    "FetchError",
    "FetchedPage",
    "InvalidURLError",
    "JsonlSink",
    "MemorySink",
    "NLPError",
    "NLPStage",
    "Record",
    "RunStats",
    "Sink",
    "SinkError",
    "SinkStage",
    "SqliteSink",
    "Stage",
    "StageChain",
    "WorkItem",
    "build_sinks",
    "build_stages",
    "dumps_record",
    "extract_page",
    "load_config",
}

# What the engines (crawler/), the benchmark and the tools reach below the top level.
EXPECTED_SUBMODULE_NAMES = {
    "enrich.codings": {"decompress_capped"},
    "enrich.config": {
        "NLPConfig",
        "ExtractConfig",
        "FetchConfig",
        "OutputConfig",
        "WarcConfig",
        "config_error_message",
        "nlp_options",
    },
    "enrich.contacts": {"ContactFetch", "ContactStage"},
    "enrich.errors": {"FetchTimeoutError"},
    "enrich.metrics": {"RunMetrics"},
    "enrich.report": {"render_report", "render_reports"},
    "enrich.timing": {"LABELS", "STAGES", "UTILIZATION_NAMES", "StageTimes", "bottleneck", "utilization"},
    "enrich.extract": {"Kind", "decode_text", "sniff_kind", "file_name_of", "Extraction"},
    "enrich.nlp": {"TextAnalyzer", "NLPResult", "load_model", "resolve_model", "detect_language", "analyzer_identity"},
    "enrich.record": {"RECORD_FIELDS", "load_schema", "utc_now_iso"},
    "enrich.urls": {"InputURL", "iter_input_lines", "read_urls", "validate_url", "normalize_url", "redact_url"},
    "enrich.warc": {"Exchange", "WarcWriter"},
}


def test_top_level_exports() -> None:
    assert set(enrich.__all__) == EXPECTED_TOP_LEVEL
    assert len(enrich.__all__) == len(set(enrich.__all__))
    for name in enrich.__all__:
        assert getattr(enrich, name) is not None, name


@pytest.mark.parametrize(("module_name", "names"), sorted(EXPECTED_SUBMODULE_NAMES.items()))
def test_submodule_exports(module_name: str, names: set[str]) -> None:
    module = importlib.import_module(module_name)
    assert names <= set(module.__all__), names - set(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name}"


def test_error_hierarchy() -> None:
    from enrich.errors import FetchTimeoutError

    for error in (enrich.ConfigError, enrich.InvalidURLError, enrich.FetchError, enrich.ContentError, enrich.NLPError):
        assert issubclass(error, enrich.EnrichError)
    assert issubclass(enrich.SinkError, OSError)
    assert issubclass(FetchTimeoutError, TimeoutError)
    assert issubclass(FetchTimeoutError, enrich.FetchError)
    assert enrich.FetchError("gone", url="https://x.example/", attempts=3).attempts == 3


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_import_scanner_sees_nested_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import twisted.internet\n    from aiohttp import web\n", encoding="utf-8")
    assert _imported_modules(sample) == {"twisted.internet", "aiohttp"}


def test_enrich_never_imports_an_engine() -> None:
    sources = sorted(ENRICH_DIR.rglob("*.py"))
    assert len(sources) >= 15
    offenders = {
        f"{path.relative_to(ENRICH_DIR)}: {module}"
        for path in sources
        for module in _imported_modules(path)
        if module.split(".")[0] in ENGINE_PACKAGES
    }
    assert not offenders
