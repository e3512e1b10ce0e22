"""Item pipelines of Scrapy mode: thin adapters, one per enrich stage.

Each pipeline wraps one :class:`~enrich.stages.Stage` and maps Scrapy's lifecycle onto the stage's:
``open_spider`` -> ``stage.open()``, ``process_item`` -> :func:`enrich.stages.run_stage` (a failure degrades the
record instead of dropping it), ``close_spider`` -> ``stage.close()``. The stages are the ones the async engine
runs, built from the same config (:func:`crawler.scrapy_mode.config.run_of`, once per crawler), so the records are
the same.

The last one, :class:`SinkPipeline`, hands on the record itself, as a ``dict`` in the record schema's field
order: what Scrapy's feed exports (``-O out.jsonl``, ``FEEDS``) and any later pipeline receive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, Self

from scrapy import signals
from scrapy.exceptions import DropItem

from crawler.scrapy_mode.commands.crawl import RUN_FAILED_STAT
from crawler.scrapy_mode.config import ENGINE, run_of
from crawler.scrapy_mode.jobstate import job_of
from crawler.scrapy_mode.metrics import ScrapyMetrics
from crawler.scrapy_mode.middlewares import POLICY_STATS
from crawler.scrapy_mode.retry import last_outcome_record
from crawler.scrapy_mode.scheduler import scheduler_of
from enrich.errors import SinkError
from enrich.pipeline import build_enrichment, build_sink_stage, build_sinks, run_figures
from enrich.record import dumps_record
from enrich.stages import WorkItem, run_stage
from enrich.stats import RunStats

if TYPE_CHECKING:
    from pathlib import Path

    from scrapy.crawler import Crawler

    from enrich.config import EnrichConfig
    from enrich.extract.stage import ExtractStage
    from enrich.nlp import NLPStage
    from enrich.stages import Stage
    from enrich.state import CrawlState

__all__ = ["ENGINE", "ExtractPipeline", "NLPPipeline", "SinkPipeline", "StagePipeline", "record_item"]

logger = logging.getLogger(__name__)


def record_item(item: WorkItem) -> dict[str, Any]:
    """The item a Scrapy user gets: the record as plain data, fields in the schema's order, serialized as the
    sinks write it (text repaired). Its line is kept on the item, so the sinks do not serialize it again."""
    if item.line is None:
        item.line = dumps_record(item.record)
    data: dict[str, Any] = json.loads(item.line)
    return data


class StagePipeline:
    """Runs one enrich stage as a Scrapy item pipeline. Subclasses say which stage in :meth:`build_stage`.

    Args:
        stage: the stage to drive; opened, fed and closed by Scrapy through this pipeline.
    """

    def __init__(self, *, stage: Stage) -> None:
        self.stage = stage

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Read the settings once into an :class:`EnrichConfig` and build the stage from it."""
        stage = cls.stage_for(crawler)
        job_of(crawler).stages.append(stage)
        return cls(stage=stage)

    @classmethod
    def stage_for(cls, crawler: Crawler) -> Stage:
        """The stage this pipeline runs: :meth:`build_stage` from the crawler's config and state."""
        return cls.build_stage(run_of(crawler).config, job_of(crawler).state)

    @classmethod
    def build_stage(cls, config: EnrichConfig, state: CrawlState | None) -> Stage:
        raise NotImplementedError(f"{cls.__name__} must say which stage it runs")

    async def open_spider(self) -> None:
        await self.stage.open()

    async def process_item(self, item: Any) -> Any:
        """Run the stage on a :class:`WorkItem`; a stage failure is recorded on the item, which goes on. Any other
        item (a spider's own, beside the add-on's) passes untouched."""
        if not isinstance(item, WorkItem):
            return item
        return await run_stage(self.stage, item)

    async def close_spider(self) -> None:
        await self.stage.close()


def enrichment_of(crawler: Crawler) -> tuple[ExtractStage, NLPStage]:
    """The crawler's extraction and NLP stages, built together once (:func:`enrich.pipeline.build_enrichment`:
    extraction may run in the NLP stage's worker processes)."""
    job = job_of(crawler)
    if job.enrichment is None:
        job.enrichment = build_enrichment(run_of(crawler).config, state=job.state)
    return job.enrichment


class ExtractPipeline(StagePipeline):
    """Text and metadata from the fetched body (HTML, PDF, images)."""

    @classmethod
    def stage_for(cls, crawler: Crawler) -> Stage:
        return enrichment_of(crawler)[0]


class NLPPipeline(StagePipeline):
    """Entities, keywords, summary and language; a no-op with ``nlp=off``. spaCy runs in the stage's own executor."""

    @classmethod
    def stage_for(cls, crawler: Crawler) -> Stage:
        return enrichment_of(crawler)[1]


class SinkPipeline(StagePipeline):
    """Writes records with the same sinks (and so the same serializer) as the async engine, hands each record on
    as the item (:func:`record_item`: feed exports get the records), and keeps the run's
    :class:`~enrich.stats.RunStats`: a progress line every ``progress_interval_s``, the summary at the end, and the
    stats as JSON when a stats file is set.

    The JSONL output is written only when one is configured (``RunOptions.write_output``); SQLite and PostgreSQL
    when theirs are. With none, the stage still stamps the records and commits them to the crawl state.

    A :class:`~enrich.errors.SinkError` stops the crawl: records must not be dropped silently. The error is logged
    (and printed plainly on standard error) with the number of records that were not written, items still in flight
    are dropped with that reason, and the run exits non-zero (:mod:`crawler.scrapy_mode.commands.crawl`).

    The summary and the stats file are written when the spider has closed (``spider_closed``), once the
    downloader middlewares have put their figures in the crawler's stats (:data:`POLICY_STATS`).
    """

    def __init__(
        self,
        *,
        stage: Stage,
        stats: RunStats,
        crawler: Crawler | None = None,
        stats_file: Path | None = None,
        progress_interval_s: float = 0.0,
    ) -> None:
        super().__init__(stage=stage)
        self.stats = stats
        self._crawler = crawler
        self._stats_file = stats_file
        self._progress_interval_s = progress_interval_s
        self._next_progress = stats.clock() + progress_interval_s
        self._stopping: asyncio.Task[None] | None = None
        self._sink_error: SinkError | None = None
        self._received = 0
        self.metrics: ScrapyMetrics | None = None
        """Prometheus metrics (``ENRICH_METRICS_*`` settings), set by :meth:`from_crawler`."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        run = run_of(crawler)
        job = job_of(crawler)
        if job.feed is None:
            resume_at = job.state.output_offset if job.state is not None else None
            sinks = build_sinks(run.config.output, jsonl=run.options.write_output, resume_at=resume_at)
            stage = build_sink_stage(run.config, sinks=sinks, state=job.state)
        else:  # a distributed worker: its own sinks, and each written batch acknowledged in the job's queue
            sinks = build_sinks(run.config.output, jsonl=job.jsonl)
            stage = build_sink_stage(run.config, sinks=sinks, state=job.state, acknowledge=job.feed.acknowledge)
        stats = RunStats(engine=ENGINE, concurrency=lambda: _in_flight(crawler))
        stats.fetch_slots = crawler.settings.getint("CONCURRENT_REQUESTS")
        job.stages.append(stage)
        pipeline = cls(
            stage=stage,
            stats=stats,
            crawler=crawler,
            stats_file=run.options.stats_file,
            progress_interval_s=run.options.progress_interval_s,
        )
        pipeline.metrics = ScrapyMetrics.from_crawler(crawler, stats)
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    @classmethod
    def build_stage(cls, config: EnrichConfig, state: CrawlState | None) -> Stage:
        return build_sink_stage(config, state=state)

    async def open_spider(self) -> None:
        self.stats.started = self.stats.clock()
        self._next_progress = self.stats.started + self._progress_interval_s
        if self.metrics is not None:
            self.metrics.start()
        try:
            await super().open_spider()
        except SinkError as exc:
            self._fail(exc)
            raise

    async def process_item(self, item: Any) -> Any:
        """Write the record and hand it on as plain data; after a sink failure, drop it with that reason (it is
        counted as not written). Items that are not :class:`WorkItem` pass untouched.

        Raises:
            DropItem: the output failed earlier in the run, or with this very item.
        """
        if not isinstance(item, WorkItem):
            return item
        self._received += 1
        if self._sink_error is not None:
            raise DropItem(f"not written: the output failed ({self._sink_error})")
        try:
            done = await super().process_item(item)
        except SinkError as exc:
            self._fail(exc)
            self._stop("sink_error")
            raise DropItem(f"not written: the output failed ({exc})") from exc
        self.stats.observe(done.record)
        if self._progress_interval_s and self.stats.clock() >= self._next_progress:
            self._next_progress = self.stats.clock() + self._progress_interval_s
            logger.info("%s", self.stats.progress_line())
        return record_item(done)

    async def close_spider(self) -> None:
        await self._write_stopped()
        try:
            await super().close_spider()
        except SinkError as exc:
            if self._sink_error is None:
                self._fail(exc)
            # already reported; raising again would only add Scrapy's traceback of the same error
        finally:
            if self._sink_error is not None:
                written = getattr(self.stage, "written", 0)
                message = (
                    f"output failed: {self._sink_error}; {self._received - written} of {self._received} "
                    "records were not written"
                )
                logger.error("%s", message)
                print(f"scrapy crawl enrich: {message}", file=sys.stderr)
            if self._crawler is not None:
                job = job_of(self._crawler)
                self.stats.extra["duplicates_skipped"] = job.admission.duplicates
                self.stats.extra.update(run_figures(job.stages, job.state))  # the state closes with the spider
            # entries that get no record in this run (the crawl state counted them as the spider read them)
            skipped = self.stats.extra.get("duplicates_skipped", 0) + self.stats.extra.get("already_done", 0)
            self.stats.skipped_input = skipped

    async def spider_closed(self) -> None:
        """Log the summary and write the stats file, with the policies' figures the middlewares left in the
        crawler's stats when the spider closed (and a distributed worker's queue figures, final once the scheduler
        has given back what it never started); then end the metrics."""
        stats = self._crawler.stats if self._crawler is not None else None
        policies = stats.get_value(POLICY_STATS) if stats is not None else None
        if policies:
            self.stats.extra["policies"] = policies
        feed = job_of(self._crawler).feed if self._crawler is not None else None
        if feed is not None:
            self.stats.extra["worker"] = feed.stats()
        logger.info("Enrichment summary:\n%s", self.stats.summary())
        if self._stats_file is not None:
            await asyncio.to_thread(_write_json, self._stats_file, self.stats.to_dict())
            logger.info("Stats written to %s", self._stats_file)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.finish)

    async def _write_stopped(self) -> None:
        """A run that stops early: URLs whose retry or redirect hop was still queued get the record of their last
        outcome, as in the async engine; URLs never started are counted (``not_started``)."""
        scheduler = scheduler_of(self._crawler)
        if scheduler is None:
            return
        for request in scheduler.drain():
            if self._sink_error is not None:
                scheduler.interrupted += 1
                continue
            try:
                await self.process_item(last_outcome_record(request, engine=ENGINE))
            except DropItem:
                scheduler.interrupted += 1
        self.stats.extra["not_started"] = scheduler.not_started

    def _fail(self, exc: SinkError) -> None:
        """Remember the first sink failure, log it, and mark the run failed for the exit status."""
        self._sink_error = exc
        logger.error("output failed, stopping the crawl: %s", exc, exc_info=exc)
        if self._crawler is not None and self._crawler.stats is not None:
            self._crawler.stats.set_value(RUN_FAILED_STAT, f"output failed: {exc}")

    def _stop(self, reason: str) -> None:
        # not awaited here: closing the spider waits for the items in flight, this one included
        if self._crawler is not None and self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(
                self._crawler.engine.close_spider_async(reason=reason)
            )


def _in_flight(crawler: Crawler) -> int:
    """Requests in flight: the frontier's leases, or the downloader's active requests under another scheduler."""
    scheduler = scheduler_of(crawler)
    if scheduler is not None:
        return scheduler.frontier.in_flight
    return len(crawler.engine.downloader.active)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
