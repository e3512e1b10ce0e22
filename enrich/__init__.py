"""The engine-agnostic enrichment core: what happens to a page after it is fetched.

Never imports scrapy, twisted or aiohttp (enforced by ruff's banned-api rule).
"""

from __future__ import annotations

from enrich.config import EnrichConfig, load_config
from enrich.errors import ConfigError, ContentError, EnrichError, FetchError, InvalidURLError, NLPError, SinkError
from enrich.extract import extract_page
from enrich.extract.stage import ExtractStage
from enrich.nlp import NLPStage
from enrich.pipeline import build_sinks, build_stages
from enrich.record import Entity, ErrorInfo, FetchedPage, Record, dumps_record
from enrich.sinks import JsonlSink, MemorySink, Sink, SinkStage, SqliteSink
from enrich.stages import Stage, StageChain, WorkItem
from enrich.stats import RunStats

__all__ = [
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
]
