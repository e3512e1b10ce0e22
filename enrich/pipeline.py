"""The standard stage list, built from one config: extraction, NLP, sinks. Both engines use it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from enrich.extract.stage import ExtractStage
from enrich.nlp import NLPStage
from enrich.nlp_cache import NLPCache
from enrich.sinks import JsonlSink, PostgresSink, Sink, SinkStage, SqliteSink

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

    from enrich.config import EnrichConfig, OutputConfig
    from enrich.stages import Stage, WorkItem
    from enrich.state import CrawlState

__all__ = ["build_sink_stage", "build_sinks", "build_stages", "run_figures", "state_committer"]


def build_sinks(
    output: OutputConfig, *, path: Path | str | None = None, resume_at: int | None = None, jsonl: bool = True
) -> list[Sink]:
    """The sinks an output config asks for: JSONL unless ``jsonl`` is false (cut back to ``resume_at`` bytes and
    appended to, for a resumed job), SQLite when ``sqlite_path`` is set, PostgreSQL when ``postgres_dsn`` is (both
    upsert by URL, so a resumed job needs nothing there)."""
    sinks: list[Sink] = []
    if jsonl:
        sinks.append(JsonlSink(path=path if path is not None else output.path, resume_at=resume_at))
    if output.sqlite_path is not None:
        sinks.append(SqliteSink(path=output.sqlite_path))
    if output.postgres_dsn is not None:
        sinks.append(PostgresSink(dsn=output.postgres_dsn))
    return sinks


def build_stages(
    config: EnrichConfig, *, sinks: Sequence[Sink] | None = None, state: CrawlState | None = None
) -> list[Stage]:
    """Extraction, then NLP (a no-op when disabled), then the sinks (from the config unless given).

    With a crawl ``state``: extraction reuses the stored record of an unchanged page in a recrawl, NLP analyses are
    kept in the state, and each batch the sinks have written is committed to it (with the JSONL output's length).
    """
    return [
        ExtractStage(config=config.extract, state=state),
        NLPStage(config=config.nlp, store=state),
        build_sink_stage(config, sinks=sinks, state=state),
    ]


def build_sink_stage(
    config: EnrichConfig, *, sinks: Sequence[Sink] | None = None, state: CrawlState | None = None
) -> SinkStage:
    """The sink stage of :func:`build_stages`: the configured sinks (a JSONL output resumed where the state says)
    unless ``sinks`` is given, committing each written batch to ``state``."""
    if sinks is None:
        sinks = build_sinks(config.output, resume_at=state.output_offset if state is not None else None)
    return SinkStage(
        sinks=sinks,
        batch_size=config.output.batch_size,
        on_written=state_committer(state, sinks) if state is not None else None,
    )


def state_committer(state: CrawlState, sinks: Sequence[Sink]) -> Callable[[Sequence[WorkItem]], Awaitable[None]]:
    """What the sink stage calls after each batch: sync the JSONL file to disk (in a thread), then commit the batch
    to the crawl state with the file's length (on the loop: see :meth:`CrawlState.commit`), and now and then fold
    the state's log into its database (in a thread)."""
    jsonl = next((s for s in sinks if isinstance(s, JsonlSink)), None)

    async def commit(items: Sequence[WorkItem]) -> None:
        offset = jsonl.offset if jsonl is not None and jsonl.path is not None else None
        fd = jsonl.fileno() if jsonl is not None else None
        if fd is not None and state.durable:
            await asyncio.to_thread(state.sync_output, fd)
        state.commit(items, output_offset=offset)
        if state.checkpoint_due():
            await asyncio.to_thread(state.checkpoint)

    return commit


def run_figures(stages: Sequence[Stage], state: CrawlState | None) -> dict[str, Any]:
    """What the crawl state and the NLP cache did in a run, for the stats of either engine."""
    figures: dict[str, Any] = {}
    for stage in stages:
        cache = getattr(stage, "cache", None)
        if isinstance(cache, NLPCache) and cache.hits + cache.misses:
            figures["nlp_cache_hits"] = cache.hits
            figures["nlp_cache_misses"] = cache.misses
            figures["nlp_cache_hit_ratio"] = round(cache.hit_ratio or 0.0, 4)
        if getattr(stage, "worker_restarts", 0):
            figures["nlp_worker_restarts"] = getattr(stage, "worker_restarts", 0)
            figures["nlp_worker_death_errors"] = getattr(stage, "worker_death_errors", 0)
    if state is not None:
        counts = state.counts
        figures["job_state"] = str(state.path)
        figures["generation"] = state.generation
        figures["resumed"] = state.resumed
        figures["already_done"] = counts["done"]
        figures["duplicates_skipped"] = counts["duplicate"]
        figures["resumed_urls"] = counts["resumed"]
        figures["revisited"] = counts["revisit"]
        figures["fresh_skipped"] = counts["fresh"]
        figures["not_modified"] = counts["not_modified"]
        figures["unchanged"] = counts["unchanged"]
        figures["changed"] = counts["changed"]
    return figures
