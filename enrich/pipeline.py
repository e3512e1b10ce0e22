"""The standard stage list, built from one config: extraction, NLP, sinks. Both engines use it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from enrich.extract.stage import ExtractStage
from enrich.nlp import NLPStage
from enrich.sinks import JsonlSink, Sink, SinkStage, SqliteSink

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from enrich.config import EnrichConfig, OutputConfig
    from enrich.stages import Stage

__all__ = ["build_sinks", "build_stages"]


def build_sinks(output: OutputConfig, *, path: Path | str | None = None) -> list[Sink]:
    """The sinks an output config asks for: JSONL always, SQLite when ``sqlite_path`` is set."""
    sinks: list[Sink] = [JsonlSink(path=path if path is not None else output.path)]
    if output.sqlite_path is not None:
        sinks.append(SqliteSink(path=output.sqlite_path))
    return sinks


def build_stages(config: EnrichConfig, *, sinks: Sequence[Sink] | None = None) -> list[Stage]:
    """Extraction, then NLP (a no-op when disabled), then the sinks (from the config unless given)."""
    return [
        ExtractStage(config=config.extract),
        NLPStage(config=config.nlp),
        SinkStage(
            sinks=list(sinks) if sinks is not None else build_sinks(config.output), batch_size=config.output.batch_size
        ),
    ]
