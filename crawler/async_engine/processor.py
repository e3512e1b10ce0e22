"""The asyncio enrichment engine: stream URLs in, fetch them with adaptive concurrency, run the stages, write.

Data flows through two bounded queues, so memory stays flat whatever the input size::

    inputs ──producer──> [url queue] ──fetch workers (AIMD-gated)──> [item queue] ──stage workers──> sinks

Every input entry ends as exactly one record: a fetched page enriched by the stages, or an error record (invalid
URL, policy refusal, transport failure, non-2xx answer). A repeated entry (the same URL again) is skipped and
counted (``duplicates_skipped``), so the output holds one record per URL. :meth:`AsyncEnrichmentProcessor.stop`
stops taking new URLs, lets in-flight ones finish and closes the stages, which flushes the sinks.

The hostile-web policies (robots.txt, per-domain slots, backoff and circuit breaker, address checks) are applied
by the fetcher (:class:`~crawler.async_engine.fetcher.AiohttpFetcher`); their figures go to ``stats.extra``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.async_engine.fetcher import AiohttpFetcher
from enrich.config import EnrichConfig, NLPConfig
from enrich.errors import FetchError
from enrich.pipeline import build_sinks, build_stages
from enrich.policy import AdaptiveLimiter, AIMDController, http_error
from enrich.stages import StageChain, WorkItem
from enrich.stats import RunStats
from enrich.urls import InputURL, read_urls

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Sequence

    from crawler.async_engine.fetcher import Fetcher
    from enrich.sinks import Sink
    from enrich.stages import Stage

__all__ = ["ENGINE", "AsyncEnrichmentProcessor", "iter_inputs", "run_async_enrichment"]

logger = logging.getLogger(__name__)

ENGINE = "async"
"""The ``engine`` field of records written by this engine."""

PROGRESS_INTERVAL_S = 10.0
"""Default time between two progress lines."""

MAX_SEEN_URLS = 200_000
"""Distinct URLs remembered to skip repeated entries: 8-byte digests, about 15 MB at most. Past this many the
input is expected to come de-duplicated (stage 2 does it) and later repeats are fetched again, with one warning."""

_DONE = None


class AsyncEnrichmentProcessor:
    """Runs a crawl: a bounded producer, fetch workers gated by the AIMD limiter, stage workers, progress.

    Args:
        stages: the stages every item goes through, last one writing (see :func:`enrich.pipeline.build_stages`).
        fetcher: the transport, entered once per run.
        controller: decides the concurrency; the fetcher reports attempts to it.
        limiter: enforces the controller's concurrency; the fetcher holds a slot per attempt.
        fetch_workers: tasks taking URLs; at least the controller's maximum so the limiter, not the pool, limits.
        stage_workers: items processed by the stages at once (the NLP stage batches across them).
        queue_size: capacity of each of the two queues.
        progress_interval_s: time between progress lines; 0 disables them.
        progress_callback: also called with the stats at each progress tick and once at the end.
        engine: the ``engine`` field of records.
        clock: monotonic seconds, for the stats.
    """

    def __init__(
        self,
        *,
        stages: Sequence[Stage],
        fetcher: Fetcher,
        controller: AIMDController,
        limiter: AdaptiveLimiter,
        fetch_workers: int,
        stage_workers: int = 8,
        queue_size: int = 100,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        progress_callback: Callable[[RunStats], None] | None = None,
        engine: str = ENGINE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fetch_workers < 1 or stage_workers < 1 or queue_size < 1:
            raise ValueError("fetch_workers, stage_workers and queue_size must be at least 1")
        self.chain = StageChain(stages)
        self.fetcher = fetcher
        self.controller = controller
        self.limiter = limiter
        self.fetch_workers = fetch_workers
        self.stage_workers = stage_workers
        self.queue_size = queue_size
        self.progress_interval_s = progress_interval_s
        self._progress_callback = progress_callback
        self.engine = engine
        self._clock = clock
        self._stopping = asyncio.Event()
        self.stats = RunStats(engine=engine, clock=clock, concurrency=lambda: self.controller.concurrency)
        self.not_started = 0
        """URLs read from the input but dropped unfetched because :meth:`stop` was called."""
        self.duplicates = 0
        """Input entries skipped because the same URL came earlier in the run."""
        self._seen: set[bytes] = set()

    @classmethod
    def from_config(
        cls,
        config: EnrichConfig,
        *,
        sinks: Sequence[Sink] | None = None,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        progress_callback: Callable[[RunStats], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> AsyncEnrichmentProcessor:
        """The standard engine for a config: stages from :func:`build_stages`, aiohttp fetcher, AIMD limiter.

        Args:
            config: the run's configuration.
            sinks: where records go; default: the sinks of ``config.output``.
            progress_interval_s: time between progress lines; 0 disables them.
            progress_callback: called with the stats at every progress tick and at the end.
            clock: monotonic seconds for the controller and the stats.
        """
        controller = AIMDController.from_config(config.aimd, config.fetch, require_saturation=True, clock=clock)
        limiter = AdaptiveLimiter(limit=lambda: controller.concurrency, on_saturated=controller.mark_saturated)
        controller.add_listener(limiter.notify)
        fetcher = AiohttpFetcher.from_config(
            config.fetch, politeness=config.politeness, limiter=limiter, on_attempt=controller.record
        )
        nlp = config.nlp
        # Enough items in the stages at once for the NLP stage to fill its batches on every worker.
        stage_workers = max(4, 2 * nlp.batch_size * nlp.workers) if nlp.enabled else max(4, 2 * config.extract.workers)
        return cls(
            stages=build_stages(config, sinks=sinks),
            fetcher=fetcher,
            controller=controller,
            limiter=limiter,
            fetch_workers=config.fetch.max_concurrency,
            stage_workers=stage_workers,
            queue_size=max(stage_workers, min(config.fetch.max_concurrency, 1000)),
            progress_interval_s=progress_interval_s,
            progress_callback=progress_callback,
            clock=clock,
        )

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop taking new URLs; in-flight ones finish and :meth:`run` returns after closing the stages."""
        if not self._stopping.is_set():
            logger.info("stopping: finishing in-flight URLs, taking no new ones")
        self._stopping.set()

    async def run(self, inputs: Iterable[InputURL] | AsyncIterable[InputURL]) -> RunStats:
        """Process every input entry (streamed, never loaded whole) and return the run's stats.

        Cancelling the task running this closes the stages too (flushing what was processed) and re-raises.

        Raises:
            SinkError: a sink could not write; the run stops.
        """
        stats = self.stats = RunStats(
            engine=self.engine, clock=self._clock, concurrency=lambda: self.controller.concurrency
        )
        self._seen.clear()
        urls: asyncio.Queue[InputURL | None] = asyncio.Queue(self.queue_size)
        items: asyncio.Queue[WorkItem | None] = asyncio.Queue(self.queue_size)
        await self.chain.open()
        try:
            async with self.fetcher:
                await self._run_tasks(inputs, urls, items)
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
        self,
        inputs: Iterable[InputURL] | AsyncIterable[InputURL],
        urls: asyncio.Queue[InputURL | None],
        items: asyncio.Queue[WorkItem | None],
    ) -> None:
        workers_left = [self.fetch_workers]
        tasks = [asyncio.create_task(self._produce(inputs, urls, items), name="enrich-producer")]
        tasks += [
            asyncio.create_task(self._fetch_worker(urls, items, workers_left), name=f"enrich-fetch-{n}")
            for n in range(self.fetch_workers)
        ]
        tasks += [
            asyncio.create_task(self._stage_worker(items), name=f"enrich-stage-{n}") for n in range(self.stage_workers)
        ]
        progress = asyncio.create_task(self._progress(), name="enrich-progress") if self.progress_interval_s else None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error
        finally:
            for task in [*tasks, *([progress] if progress else [])]:
                task.cancel()
            await asyncio.gather(*tasks, *([progress] if progress else []), return_exceptions=True)

    async def _produce(
        self,
        inputs: Iterable[InputURL] | AsyncIterable[InputURL],
        urls: asyncio.Queue[InputURL | None],
        items: asyncio.Queue[WorkItem | None],
    ) -> None:
        if hasattr(inputs, "__aiter__"):
            async for entry in inputs:
                if not await self._dispatch(entry, urls, items):
                    break
        else:
            for entry in inputs:
                if not await self._dispatch(entry, urls, items):
                    break
        # not in a finally: after a failure or a cancellation nobody reads the queue, and a put could block forever
        for _ in range(self.fetch_workers):
            await urls.put(_DONE)

    async def _dispatch(
        self, entry: InputURL, urls: asyncio.Queue[InputURL | None], items: asyncio.Queue[WorkItem | None]
    ) -> bool:
        """Route one entry; ``False`` once stopping (the entry in hand is counted as not started)."""
        if self.stopping:
            self.not_started += 1
            return False
        if self._repeated(entry.url):
            self.duplicates += 1
            logger.info("skipping repeated input entry %s (line %d)", entry.url, entry.line, extra={"url": entry.url})
            return True
        if entry.error is not None:
            await items.put(WorkItem.from_error(entry.url, entry.error, engine=self.engine, stage="input"))
        else:
            await urls.put(entry)
        return True

    def _repeated(self, url: str) -> bool:
        """Whether ``url`` came before in this run (remembering it if not, up to :data:`MAX_SEEN_URLS`)."""
        digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        if digest in self._seen:
            return True
        if len(self._seen) < MAX_SEEN_URLS:
            self._seen.add(digest)
            if len(self._seen) == MAX_SEEN_URLS:
                logger.warning("%d distinct URLs seen: later repeated entries are not detected", MAX_SEEN_URLS)
        return False

    async def _fetch_worker(
        self, urls: asyncio.Queue[InputURL | None], items: asyncio.Queue[WorkItem | None], workers_left: list[int]
    ) -> None:
        while (entry := await urls.get()) is not _DONE:
            if self.stopping:
                self.not_started += 1
                continue
            await items.put(await self._fetch_one(entry))
        workers_left[0] -= 1
        if workers_left[0] == 0:  # the last fetch worker out tells the stage workers the stream is over
            for _ in range(self.stage_workers):
                await items.put(_DONE)

    async def _fetch_one(self, entry: InputURL) -> WorkItem:
        started = time.perf_counter()
        try:
            page = await self.fetcher.fetch(entry.url, fetch_url=entry.fetch_url)
        except FetchError as exc:
            logger.info("fetch failed: %s", exc, extra={"url": entry.url})
            return WorkItem.from_error(
                entry.url,
                exc,
                engine=self.engine,
                attempts=exc.attempts,
                fetch_duration_ms=(time.perf_counter() - started) * 1000,
            )
        except Exception as exc:  # a bug in the transport must still leave one record for the URL
            logger.error("unexpected error fetching %s: %s", entry.url, exc, exc_info=True, extra={"url": entry.url})
            return WorkItem.from_error(
                entry.url, exc, engine=self.engine, fetch_duration_ms=(time.perf_counter() - started) * 1000
            )
        if 200 <= page.status < 300:
            return WorkItem.from_page(page, engine=self.engine)
        return WorkItem.from_error(
            entry.url,
            http_error(page.status, attempts=page.attempts),
            engine=self.engine,
            attempts=page.attempts,
            fetch_duration_ms=page.fetch_duration_ms,
            fetched_at=page.fetched_at,
            status=page.status,
            final_url=page.final_url,
        )

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
        stats.extra["aimd"] = self.controller.snapshot()
        stats.extra["concurrency_history"] = [[t, value] for t, value in self.controller.history]
        stats.extra["peak_in_flight"] = self.limiter.peak
        stats.extra["not_started"] = self.not_started
        stats.extra["duplicates_skipped"] = self.duplicates
        policy_stats = getattr(self.fetcher, "policy_stats", None)
        if callable(policy_stats):
            stats.extra.update(policy_stats())
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
) -> RunStats:
    """Enrich URLs with the asyncio engine and write one record per URL; return the run's stats.

    Args:
        urls: URLs or :class:`InputURL` entries (any iterable, consumed lazily), or the path of an input file.
        output_file: JSONL output; default ``config.output.path``. Ignored when ``sinks`` is given.
        nlp_config: NLP settings (an :class:`NLPConfig` or a mapping of its fields); default ``config.nlp``.
        max_concurrency: upper bound of requests in flight; default ``config.fetch.max_concurrency`` (50).
        timeout: seconds per fetch attempt; default ``config.fetch.timeout_s`` (30).
        batch_size: records per sink flush; default ``config.output.batch_size`` (100).
        config: the base configuration; default :class:`EnrichConfig` defaults.
        sinks: write to these instead of the configured ones (e.g. a ``MemorySink``).
        progress_interval_s: time between progress lines; 0 disables them.
        progress_callback: called with the stats at every progress tick and at the end.

    Raises:
        ConfigError: an argument makes the configuration invalid.
        SinkError: records could not be written.
    """
    config = config or EnrichConfig()
    fetch: dict[str, Any] = {}
    if max_concurrency is not None:
        fetch["max_concurrency"] = max_concurrency
        fetch["min_concurrency"] = min(config.fetch.min_concurrency, max_concurrency)
    if timeout is not None:
        fetch["timeout_s"] = timeout
        fetch["connect_timeout_s"] = min(config.fetch.connect_timeout_s, timeout)
    sections: dict[str, dict[str, Any]] = {"fetch": fetch}
    if nlp_config is not None:
        sections["nlp"] = nlp_config.model_dump() if isinstance(nlp_config, NLPConfig) else dict(nlp_config)
    if batch_size is not None:
        sections["output"] = {"batch_size": batch_size}
    config = config.replace(**sections)
    if sinks is None:
        sinks = build_sinks(config.output, path=output_file)
    processor = AsyncEnrichmentProcessor.from_config(
        config, sinks=sinks, progress_interval_s=progress_interval_s, progress_callback=progress_callback
    )
    return await processor.run(iter_inputs(urls))
