"""The asyncio enrichment engine: stream URLs into the frontier, fetch what it hands out, run the stages, write.

Data flows through the frontier and one bounded queue, so memory stays flat whatever the input size::

    inputs ──producer──> frontier (per-site queues) ──dispatcher──> request tasks ──> [item queue] ──stage workers
                            ^            | lease                         |                               └─> sinks
                            └── retries, redirect hops ──────────────────┘

The frontier (:mod:`enrich.frontier`) decides which request goes next: a site whose ``Crawl-delay``, backoff or
in-flight cap says "not now" is skipped, never waited on. At most ``fetch.max_concurrency`` request tasks run at
once, and a task holds its place until its record is in the item queue, so fetching never runs far ahead of the
stages (NLP).

Every input entry ends as exactly one record: a fetched page enriched by the stages, or an error record (invalid
URL, policy refusal, transport failure, non-2xx answer). A repeated entry (the same URL again) is skipped and
counted (``duplicates_skipped``), so the output holds one record per URL. :meth:`AsyncEnrichmentProcessor.stop`
stops reading, drains the frontier (URLs never started are counted as ``not_started``; a URL waiting for a retry
gets its last outcome as its record), lets in-flight requests finish and closes the stages, which flushes the sinks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.async_engine.crawl import Job, JobCodec, RequestRunner
from crawler.async_engine.fetcher import AiohttpFetcher
from crawler.async_engine.polite import PoliteFetcher
from enrich.config import EnrichConfig, NLPConfig, nlp_options
from enrich.errors import ConfigError, SinkError
from enrich.frontier import Frontier
from enrich.pipeline import build_sinks, build_stages, run_figures
from enrich.policy import RetryPolicy, RobotsPolicy
from enrich.stages import StageChain, WorkItem
from enrich.state import Admission, InputAdmission, fresh_item
from enrich.stats import RunStats
from enrich.urls import InputURL, read_urls
from enrich.warc import WarcWriter

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Sequence

    from enrich.frontier import Lease, SiteGate
    from enrich.record import Record
    from enrich.sinks import Sink
    from enrich.stages import Stage
    from enrich.state import CrawlState

__all__ = ["ENGINE", "AsyncEnrichmentProcessor", "iter_inputs", "run_async_enrichment"]

logger = logging.getLogger(__name__)

ENGINE = "async"
"""The ``engine`` field of records written by this engine."""

PROGRESS_INTERVAL_S = 10.0
"""Default time between two progress lines."""

QUEUED_JOB_BYTES = 1_200
"""What a queued :class:`~crawler.async_engine.crawl.Job` costs beside its URL and the frontier's own entry
(tracemalloc: about 1.6 KB in all per queued URL), for the frontier's bytes bound."""

_DONE = None


class AsyncEnrichmentProcessor:
    """Runs a crawl: a producer filling the frontier, a dispatcher starting requests, stage workers, progress.

    Args:
        stages: the stages every item goes through, last one writing (see :func:`enrich.pipeline.build_stages`).
        fetcher: the transport, entered once per run.
        frontier: decides which request is made next.
        robots: robots.txt rules (its transport should be ``fetcher.fetch_robots``); ``None`` obeys none.
        retry: when failures are retried.
        max_concurrency: requests in flight at most (their tasks hold a place until the record is queued).
        timeout_s: time allowed for one request, body included.
        max_redirects: redirects followed per input URL.
        stage_workers: items processed by the stages at once (the NLP stage batches across them).
        queue_size: capacity of the item queue.
        progress_interval_s: time between progress lines; 0 disables them.
        progress_callback: also called with the stats at each progress tick and once at the end.
        engine: the ``engine`` field of records.
        clock: monotonic seconds, for the stats.
        state: the job's crawl state (resume, recrawl); it decides which input URLs are fetched. Its sink stage
            commits to it (:func:`enrich.pipeline.build_stages`). ``None``: every input URL is fetched.
    """

    def __init__(
        self,
        *,
        stages: Sequence[Stage],
        fetcher: AiohttpFetcher,
        frontier: Frontier[Job],
        robots: RobotsPolicy | None,
        retry: RetryPolicy,
        max_concurrency: int,
        timeout_s: float = 30.0,
        max_redirects: int = 10,
        stage_workers: int = 8,
        queue_size: int = 100,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        progress_callback: Callable[[RunStats], None] | None = None,
        engine: str = ENGINE,
        clock: Callable[[], float] = time.monotonic,
        state: CrawlState | None = None,
    ) -> None:
        if max_concurrency < 1 or stage_workers < 1 or queue_size < 1:
            raise ValueError("max_concurrency, stage_workers and queue_size must be at least 1")
        self.chain = StageChain(stages)
        self.fetcher = fetcher
        self.frontier = frontier
        self.robots = robots
        self.max_concurrency = max_concurrency
        self.stage_workers = stage_workers
        self.queue_size = queue_size
        self.progress_interval_s = progress_interval_s
        self._progress_callback = progress_callback
        self.engine = engine
        self._clock = clock
        self.state = state
        self.runner = RequestRunner(
            fetcher=fetcher,
            frontier=frontier,
            retry=retry,
            robots=robots,
            timeout_s=timeout_s,
            max_redirects=max_redirects,
            engine=engine,
        )
        self._stopping = asyncio.Event()
        self._active = 0
        self.peak_active = 0
        self.stats = RunStats(engine=engine, clock=clock, concurrency=lambda: self._active)
        self.not_started = 0
        """URLs read from the input but dropped unfetched because :meth:`stop` was called."""
        self.admission = InputAdmission(state)
        """What to do with each input URL (with the crawl state, or skipping repeats without one)."""
        self.listeners: list[Callable[[Record], None]] = []
        """Called with every finished record of each run (:attr:`RunStats.listeners`), e.g. the metrics."""

    @classmethod
    def from_config(
        cls,
        config: EnrichConfig,
        *,
        sinks: Sequence[Sink] | None = None,
        stages: Sequence[Stage] | None = None,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        progress_callback: Callable[[RunStats], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        state: CrawlState | None = None,
        gate: SiteGate | None = None,
        acknowledge: Callable[[Sequence[WorkItem]], Awaitable[None]] | None = None,
    ) -> AsyncEnrichmentProcessor:
        """The standard engine for a config: stages from :func:`build_stages`, aiohttp fetcher, frontier.

        Args:
            config: the run's configuration.
            sinks: where records go; default: the sinks of ``config.output``.
            stages: run these instead of the configured ones (e.g. a sink alone, to measure fetching).
            progress_interval_s: time between progress lines; 0 disables them.
            progress_callback: called with the stats at every progress tick and at the end.
            clock: monotonic seconds for the frontier and the stats.
            state: the job's crawl state (see :class:`AsyncEnrichmentProcessor`).
            gate: per-site permits shared with other workers (a distributed job), asked before each request.
            acknowledge: called with each batch the sinks have written (a distributed worker acknowledges its URLs).
        """
        fetcher = AiohttpFetcher.from_config(
            config.fetch, politeness=config.politeness, warc=WarcWriter.from_config(config)
        )
        robots = RobotsPolicy.from_config(config.politeness, config.fetch, fetch_robots=fetcher.fetch_robots)
        contacts = PoliteFetcher(
            fetcher=fetcher,
            robots=robots,
            max_redirects=min(config.fetch.max_redirects, 5),
            timeout_s=config.fetch.timeout_s,
        )
        nlp = config.nlp
        # Enough items in the stages at once for the NLP stage to fill its batches on every worker.
        stage_workers = max(4, 2 * nlp.batch_size * nlp.workers) if nlp.enabled else max(4, 2 * config.extract.workers)
        return cls(
            stages=stages
            if stages is not None
            else build_stages(config, sinks=sinks, state=state, contact_fetch=contacts, acknowledge=acknowledge),
            fetcher=fetcher,
            # a distributed worker reads ahead from the job's queue, not into a spill file: the rest is other workers'
            frontier=Frontier.from_config(
                config, spill_codec=JobCodec() if gate is None else None, clock=clock, gate=gate
            ),
            robots=robots,
            retry=RetryPolicy.from_config(config.fetch),
            max_concurrency=config.fetch.max_concurrency,
            timeout_s=config.fetch.timeout_s,
            max_redirects=config.fetch.max_redirects,
            stage_workers=stage_workers,
            queue_size=max(stage_workers, min(config.fetch.max_concurrency, 1000)),
            progress_interval_s=progress_interval_s,
            progress_callback=progress_callback,
            clock=clock,
            state=state,
        )

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop taking new URLs; in-flight ones finish and :meth:`run` returns after closing the stages."""
        if not self._stopping.is_set():
            logger.info("stopping: finishing in-flight URLs, taking no new ones")
        self._stopping.set()
        self.runner.stopping = True

    async def run(self, inputs: Iterable[InputURL] | AsyncIterable[InputURL]) -> RunStats:
        """Process every input entry (streamed, never loaded whole) and return the run's stats.

        Cancelling the task running this closes the stages too (flushing what was processed) and re-raises.

        Raises:
            SinkError: a sink could not write; the run stops.
        """
        stats = self.stats = RunStats(engine=self.engine, clock=self._clock, concurrency=lambda: self._active)
        stats.fetch_slots = self.max_concurrency
        stats.listeners.extend(self.listeners)
        self.admission = InputAdmission(self.state)
        items: asyncio.Queue[WorkItem | None] = asyncio.Queue(self.queue_size)
        await self.chain.open()
        try:
            async with self.fetcher:
                try:
                    await self._run_tasks(inputs, items)
                finally:
                    self.frontier.close()
                    if self.robots is not None:
                        await self.robots.close()
        except Exception:
            # The run's own error (a sink that cannot write) is the one to report: a sink failing again while
            # closing is logged, not raised over it.
            try:
                await self.chain.close()
            except Exception:
                logger.error("closing the stages after a failed run failed too", exc_info=True)
            self._finish(stats)
            raise
        except BaseException:  # cancelled: flush what was processed; a sink error while flushing wins
            try:
                await self.chain.close()
            finally:
                self._finish(stats)
            raise
        try:
            await self.chain.close()
        finally:
            self._finish(stats)
        return stats

    async def _run_tasks(
        self, inputs: Iterable[InputURL] | AsyncIterable[InputURL], items: asyncio.Queue[WorkItem | None]
    ) -> None:
        producer = asyncio.create_task(self._produce(inputs, items), name="enrich-producer")
        watcher = asyncio.create_task(self._watch_stop(items), name="enrich-stop")
        dispatcher = asyncio.create_task(self._dispatch(items, watcher), name="enrich-dispatcher")
        workers = [
            asyncio.create_task(self._stage_worker(items), name=f"enrich-stage-{n}") for n in range(self.stage_workers)
        ]
        tasks = [producer, watcher, dispatcher, *workers]
        progress = asyncio.create_task(self._progress(), name="enrich-progress") if self.progress_interval_s else None
        try:
            # the watcher only ends on stop: the run is over when the stage workers are (or something failed)
            pending = {producer, dispatcher, *workers}
            while pending & {dispatcher, *workers}:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        raise error
        finally:
            for task in [*tasks, *([progress] if progress else [])]:
                task.cancel()
            await asyncio.gather(*tasks, *([progress] if progress else []), return_exceptions=True)

    async def _produce(
        self, inputs: Iterable[InputURL] | AsyncIterable[InputURL], items: asyncio.Queue[WorkItem | None]
    ) -> None:
        try:
            if hasattr(inputs, "__aiter__"):
                async for entry in inputs:
                    if not await self._route(entry, items):
                        break
            else:
                for entry in inputs:
                    if not await self._route(entry, items):
                        break
        finally:
            self.frontier.close_input()

    async def _route(self, entry: InputURL, items: asyncio.Queue[WorkItem | None]) -> bool:
        """Route one entry; ``False`` once stopping (the entry in hand is counted as not started)."""
        if self.stopping:
            self.not_started += 1
            return False
        kind, revisit = self.admission.admit(entry.url, priority=entry.priority)
        if kind is Admission.FRESH and self.state is not None:
            item = fresh_item(self.state, entry.url, engine=self.engine)
            if item is not None:
                await items.put(item)
                return True
        elif not kind.fetch:
            self.stats.skipped_input += 1
            if kind is Admission.DUPLICATE:
                logger.info(
                    "skipping repeated input entry %s (line %d)", entry.url, entry.line, extra={"url": entry.url}
                )
            return True
        if entry.error is not None:
            await items.put(WorkItem.from_error(entry.url, entry.error, engine=self.engine, stage="input"))
            return True
        if not self.frontier.wants_input():  # wait for room, or for a stop (no task per entry on the fast path)
            room = asyncio.ensure_future(self.frontier.wait_for_room())
            stop = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({room, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                room.cancel()
                stop.cancel()
            if self._stopping.is_set():
                self.not_started += 1
                return False
        else:
            await asyncio.sleep(0)  # a synchronous input must still let the fetches run between entries
        job = Job.of(entry, revisit)
        self.frontier.add(str(job.target), job, priority=entry.priority, size=QUEUED_JOB_BYTES)
        return True

    async def _watch_stop(self, items: asyncio.Queue[WorkItem | None]) -> None:
        """On :meth:`stop`: drain the frontier; started URLs get their records, the rest count as not started."""
        await self._stopping.wait()
        self.frontier.close_input()
        for job in list(self.frontier.drain()):
            item = self.runner.stopped(job)
            if item is None:
                self.not_started += 1
            else:
                await items.put(item)

    async def _dispatch(self, items: asyncio.Queue[WorkItem | None], watcher: asyncio.Task[None]) -> None:
        """Start a request task for each lease the frontier hands out, at most ``max_concurrency`` at once."""
        places = asyncio.Semaphore(self.max_concurrency)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await places.acquire()
                lease = await self.frontier.next()
                if lease is None:
                    places.release()
                    break
                task = asyncio.create_task(self._request(lease, items, places))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
            if self.stopping:
                await watcher  # the records of drained URLs go before the end of the stream
        finally:
            for task in running:
                task.cancel()
        for _ in range(self.stage_workers):  # the stream is over: tell the stage workers
            await items.put(_DONE)

    async def _request(
        self, lease: Lease[Job], items: asyncio.Queue[WorkItem | None], places: asyncio.Semaphore
    ) -> None:
        self._active += 1
        self.peak_active = max(self.peak_active, self._active)
        try:
            try:
                item = await self.runner.run(lease)
            except SinkError as exc:  # the WARC file cannot be written: stop; closing the fetcher raises it
                if not self.stopping:
                    logger.error("stopping the run: %s", exc)
                self.stop()
                return
            except Exception as exc:  # a bug in the transport must still leave one record for the URL
                job = lease.payload
                logger.error("unexpected error fetching %s: %s", job.entry.url, exc, exc_info=True)
                item = WorkItem.from_error(job.entry.url, exc, engine=self.engine)
            if item is not None:
                if lease.payload.times is not None:
                    item.times = lease.payload.times
                await items.put(item)
        finally:
            self._active -= 1
            places.release()

    async def _stage_worker(self, items: asyncio.Queue[WorkItem | None]) -> None:
        while (item := await items.get()) is not _DONE:
            item = await self.chain.process(item)
            self.stats.observe(item.record)

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval_s)
            logger.info("%s", self.stats.progress_line())
            if self._progress_callback is not None:
                self._progress_callback(self.stats)

    def _finish(self, stats: RunStats) -> None:
        stats.extra["peak_in_flight"] = self.peak_active
        stats.extra["not_started"] = self.not_started
        stats.extra["duplicates_skipped"] = self.admission.duplicates
        stats.extra["frontier"] = self.frontier.stats()
        stats.extra["respect_robots"] = self.robots is not None and self.robots.enabled
        if self.robots is not None:
            stats.extra["robots"] = self.robots.stats()
        stats.extra.update(self.fetcher.stats())
        stats.extra.update(run_figures(self.chain.stages, self.state))
        logger.info("run finished\n%s", stats.summary())
        if self._progress_callback is not None:
            self._progress_callback(stats)


def iter_inputs(urls: Iterable[str | InputURL] | str | Path) -> Iterator[InputURL]:
    """Lazily turn what :func:`run_async_enrichment` accepts into :class:`InputURL` entries.

    A ``str`` or ``Path`` is an input file (text, CSV or JSONL by suffix; ``-`` is stdin); any other iterable
    yields URLs (validated here) or ready :class:`InputURL` entries.
    """
    if isinstance(urls, (str, Path)):
        from enrich.urls import iter_input_lines

        yield from read_urls(iter_input_lines(urls))
        return
    for number, value in enumerate(urls, 1):
        if isinstance(value, InputURL):
            yield value
        else:
            yield from read_urls([(number, value)])


async def run_async_enrichment(
    urls: Iterable[str | InputURL] | str | Path,
    output_file: str | Path | None = None,
    nlp_config: NLPConfig | dict[str, Any] | None = None,
    max_concurrency: int | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - per-request fetch timeout, part of the public signature
    batch_size: int | None = None,
    config: EnrichConfig | None = None,
    *,
    sinks: Sequence[Sink] | None = None,
    progress_interval_s: float = PROGRESS_INTERVAL_S,
    progress_callback: Callable[[RunStats], None] | None = None,
    state: CrawlState | None = None,
) -> RunStats:
    """Enrich URLs with the asyncio engine and write one record per URL; return the run's stats.

    Args:
        urls: URLs or :class:`InputURL` entries (any iterable, consumed lazily), or the path of an input file.
        output_file: JSONL output; default ``config.output.path``. Ignored when ``sinks`` is given.
        nlp_config: NLP settings (an :class:`NLPConfig` or a mapping of its fields, where ``use_transformers: True``
            means ``backend: "transformers"`` and ``model`` names the model); default ``config.nlp``.
        max_concurrency: upper bound of requests in flight; default ``config.fetch.max_concurrency`` (50).
        timeout: seconds per fetch attempt; default ``config.fetch.timeout_s`` (30).
        batch_size: records per sink flush; default ``config.output.batch_size`` (100).
        config: the base configuration; default :class:`EnrichConfig` defaults.
        sinks: write to these instead of the configured ones (e.g. a ``MemorySink``).
        progress_interval_s: time between progress lines; 0 disables them.
        progress_callback: called with the stats at every progress tick and at the end.
        state: a job's crawl state (``CrawlState.open(path)``; the caller closes it): the run resumes where the
            job stopped and commits what it writes. The JSONL output is then cut back to the state's offset.

    Raises:
        ConfigError: an argument makes the configuration invalid.
        SinkError: records could not be written.
    """
    config = config or EnrichConfig()
    fetch: dict[str, Any] = {}
    if max_concurrency is not None:
        fetch["max_concurrency"] = max_concurrency
    if timeout is not None:
        fetch["timeout_s"] = timeout
        fetch["connect_timeout_s"] = min(config.fetch.connect_timeout_s, timeout)
    sections: dict[str, dict[str, Any]] = {"fetch": fetch}
    if nlp_config is not None:
        if isinstance(nlp_config, NLPConfig):
            sections["nlp"] = nlp_config.model_dump()
        else:
            try:
                sections["nlp"] = nlp_options(dict(nlp_config))
            except ValueError as exc:
                raise ConfigError(f"invalid configuration:\n  {exc}") from exc
    if batch_size is not None:
        sections["output"] = {"batch_size": batch_size}
    config = config.replace(**sections)
    if sinks is None:
        sinks = build_sinks(
            config.output, path=output_file, resume_at=state.output_offset if state is not None else None
        )
    processor = AsyncEnrichmentProcessor.from_config(
        config,
        sinks=sinks,
        progress_interval_s=progress_interval_s,
        progress_callback=progress_callback,
        state=state,
    )
    return await processor.run(iter_inputs(urls))
