"""The standard stage list, built from one config: extraction, NLP, sinks. Both engines use it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from enrich.contacts import ContactStage
from enrich.extract.stage import ExtractStage
from enrich.nlp import NLPStage
from enrich.nlp_cache import NLPCache
from enrich.sinks import JsonlSink, PostgresSink, Sink, SinkStage, SqliteSink

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

    from enrich.config import EnrichConfig, OutputConfig
    from enrich.contacts import ContactFetch
    from enrich.stages import Stage, WorkItem
    from enrich.state import CrawlState

__all__ = ["build_enrichment", "build_sink_stage", "build_sinks", "build_stages", "run_figures", "state_committer"]


def build_sinks(
    output: OutputConfig, *, path: Path | str | None = None, resume_at: int | None = None, jsonl: bool = True
) -> list[Sink]:
    """The sinks an output config asks for: JSONL unless ``jsonl`` is false (cut back to ``resume_at`` bytes and
    appended to, for a resumed job), SQLite when ``sqlite_path`` is set, PostgreSQL when ``postgres_dsn`` is (both
    upsert by URL, so a resumed job or a URL delivered twice to distributed workers needs nothing there)."""
    sinks: list[Sink] = []
    if jsonl:
        sinks.append(JsonlSink(path=path if path is not None else output.path, resume_at=resume_at))
    if output.sqlite_path is not None:
        sinks.append(SqliteSink(path=output.sqlite_path))
    if output.postgres_dsn is not None:
        sinks.append(PostgresSink(dsn=output.postgres_dsn))
    return sinks


def build_stages(
    config: EnrichConfig,
    *,
    sinks: Sequence[Sink] | None = None,
    state: CrawlState | None = None,
    acknowledge: Callable[[Sequence[WorkItem]], Awaitable[None]] | None = None,
    contact_fetch: ContactFetch | None = None,
) -> list[Stage]:
    """Contacts (when ``contacts.enabled``), extraction, then NLP (a no-op when disabled), then the sinks (from
    the config unless given).

    With a crawl ``state``: extraction reuses the stored record of an unchanged page in a recrawl, NLP analyses are
    kept in the state, and each batch the sinks have written is committed to it (with the JSONL output's length).
    ``acknowledge`` is called with each written batch after that (a distributed worker acknowledges its URLs).
    ``contact_fetch`` is the engine's fetch of a site's contact pages; without it the contacts stage looks at each
    page alone.
    """
    contacts: list[Stage] = []
    if config.contacts.enabled:
        contacts.append(ContactStage.from_config(config, fetch=contact_fetch))
    return [
        *contacts,
        *build_enrichment(config, state=state),
        build_sink_stage(config, sinks=sinks, state=state, acknowledge=acknowledge),
    ]


def build_enrichment(config: EnrichConfig, *, state: CrawlState | None = None) -> tuple[ExtractStage, NLPStage]:
    """The extraction and NLP stages of one run, built together: with ``extract.executor: process`` and NLP in
    processes, extraction runs in the NLP stage's worker processes (``state``: see :func:`build_stages`)."""
    nlp = NLPStage(config=config.nlp, store=state)
    lend = config.extract.executor == "process" and nlp.lends_processes
    return ExtractStage(config=config.extract, state=state, processes=nlp if lend else None), nlp


def build_sink_stage(
    config: EnrichConfig,
    *,
    sinks: Sequence[Sink] | None = None,
    state: CrawlState | None = None,
    acknowledge: Callable[[Sequence[WorkItem]], Awaitable[None]] | None = None,
) -> SinkStage:
    """The sink stage of :func:`build_stages`: the configured sinks (a JSONL output resumed where the state says)
    unless ``sinks`` is given, committing each written batch to ``state``, then passing it to ``acknowledge``."""
    if sinks is None:
        sinks = build_sinks(config.output, resume_at=state.output_offset if state is not None else None)
    steps = [step for step in (state_committer(state, sinks) if state is not None else None, acknowledge) if step]

    async def on_written(items: Sequence[WorkItem]) -> None:
        for step in steps:
            await step(items)

    return SinkStage(
        sinks=sinks,
        batch_size=config.output.batch_size,
        on_written=(steps[0] if len(steps) == 1 else on_written) if steps else None,
        max_wait_s=config.output.flush_interval_s,
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
    """What the crawl state and the NLP cache did in a run, and how busy each stage was (``stage_busy_s``,
    ``stage_workers``: see :func:`enrich.timing.utilization`), for the stats of either engine."""
    figures: dict[str, Any] = {}
    busy: dict[str, float] = {}
    workers: dict[str, int] = {}
    for stage in stages:
        timed = isinstance(getattr(stage, "busy_s", None), float) and isinstance(getattr(stage, "workers", None), int)
        if timed and getattr(stage, "enabled", True):
            busy[stage.name] = round(getattr(stage, "busy_s", 0.0), 3)
            workers[stage.name] = getattr(stage, "workers", 1)
        if isinstance(stage, ContactStage):
            figures.update(stage.figures())
        if isinstance(stage, ExtractStage):
            figures["extract_executor"] = stage.executor
            figures["extract_cpu_s"] = round(stage.cpu_s, 3)
            if stage.executor == "nlp_workers":
                figures["extract_in_nlp_workers"] = stage.in_workers
        cache = getattr(stage, "cache", None)
        if isinstance(cache, NLPCache) and cache.hits + cache.misses:
            figures["nlp_cache_hits"] = cache.hits
            figures["nlp_cache_misses"] = cache.misses
            figures["nlp_cache_hit_ratio"] = round(cache.hit_ratio or 0.0, 4)
        if getattr(stage, "batches", 0):
            figures["nlp_batches"] = getattr(stage, "batches", 0)
            figures["nlp_compute_s"] = round(getattr(stage, "compute_s", 0.0), 3)
            figures["nlp_compute_cpu_s"] = round(getattr(stage, "compute_cpu_s", 0.0), 3)
        if getattr(stage, "worker_restarts", 0):
            figures["nlp_worker_restarts"] = getattr(stage, "worker_restarts", 0)
            figures["nlp_worker_death_errors"] = getattr(stage, "worker_death_errors", 0)
    if busy:
        figures["stage_busy_s"] = busy
        figures["stage_workers"] = workers
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
