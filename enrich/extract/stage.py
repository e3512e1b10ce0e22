"""The extraction stage: runs :func:`enrich.extract.extract_page` off the event loop, in threads or processes."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, TypeVar

from enrich.config import ExtractConfig
from enrich.errors import ContentError
from enrich.extract import extract_page
from enrich.extract.fast_html import require_resiliparse
from enrich.nlp_pool import WorkerPool
from enrich.state.revisit import reuse_unchanged

if TYPE_CHECKING:
    from collections.abc import Callable

    from enrich.extract.result import Extraction
    from enrich.record import FetchedPage
    from enrich.stages import WorkItem
    from enrich.state import CrawlState

__all__ = ["ExtractStage", "WorkerProcesses"]

T = TypeVar("T")


class WorkerProcesses(Protocol):
    """Worker processes another stage owns and lends: the NLP stage's (:meth:`enrich.nlp.NLPStage.run_in_workers`)."""

    @property
    def workers(self) -> int: ...

    async def run_in_workers(self, func: Callable[..., T], *args: object) -> T: ...

    def workers_ready(self) -> bool: ...


def extract_in_worker(page: FetchedPage, config: ExtractConfig) -> tuple[Extraction, float, float]:
    """:func:`extract_page`, the seconds it took as the worker measured them (the caller's wait also holds the
    queue of the worker pool) and the CPU-seconds its thread used (what the page cost, however busy the cores)."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    result = extract_page(page, config)
    return result, time.perf_counter() - started, time.thread_time() - cpu_started


def _ready() -> None:
    """A process worker needs no setup: the first call imports the extractors."""


class ExtractStage:
    """Fills text and metadata from the fetched body, then drops the body: later stages need only the record.

    With a crawl state, a page a recrawl finds unchanged (304, same body) gets its stored record instead.

    Parsing a large page takes tens of milliseconds of CPU, so it never runs on the event loop. ``executor``
    thread (the default) runs it in the stage's own threads; ``process`` in worker processes: those of
    ``processes`` when given (the NLP stage's, so one pool shares the cores between both steps and the engine's
    process only fetches and writes; while they load their models, one page at a time is extracted in a thread
    here), else a process pool of ``workers`` of its own. A body then travels to the worker (pickled bytes)
    and the extraction back, instead of the text going to the NLP workers alone.
    """

    name = "extract"

    def __init__(
        self,
        *,
        config: ExtractConfig | None = None,
        state: CrawlState | None = None,
        processes: WorkerProcesses | None = None,
    ) -> None:
        self._config = config or ExtractConfig()
        self._state = state
        self._processes = processes if self._config.executor == "process" else None
        self._threads: ThreadPoolExecutor | None = None
        self._pool: WorkerPool | None = None
        self.busy_s = 0.0
        self.cpu_s = 0.0
        """CPU-seconds the extractions used, wherever they ran."""
        self.in_workers = 0
        """Pages extracted in the lent worker processes (the others, in this process's thread)."""
        self._local = 0
        self.workers = self._processes.workers if self._processes is not None else self._config.workers

    @property
    def executor(self) -> str:
        """Where extraction runs: ``thread``, ``process`` (a pool of its own) or ``nlp_workers``."""
        if self._config.executor == "thread":
            return "thread"
        return "nlp_workers" if self._processes is not None else "process"

    async def open(self) -> None:
        if self._config.backend == "resiliparse":
            require_resiliparse()  # a missing optional package fails the run before any fetch, not every page
        if self._config.executor == "thread" or self._processes is not None:
            threads = self._config.workers if self._processes is None else 1
            self._threads = ThreadPoolExecutor(threads, thread_name_prefix="extract")
        else:
            self._pool = WorkerPool(
                kind="process",
                workers=self._config.workers,
                initializer=_ready,
                initargs=(),
                name=self.name,
                preload=("enrich.pipeline",),
            )
            await self._pool.open()

    async def process(self, item: WorkItem) -> WorkItem:
        page = item.page
        if page is None or (self._state is not None and reuse_unchanged(self._state, item)):
            return item
        item.page = None  # release the body as soon as it is read
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._processes is not None and (self._processes.workers_ready() or self._local > 0):
            # while the workers load their models, one page at a time is extracted in this process's thread: a
            # crawl's first pages come all at once, and would all queue for that one thread
            result, busy, cpu = await self._processes.run_in_workers(extract_in_worker, page, self._config)
            self.in_workers += 1
        elif self._pool is not None:
            result, busy, cpu = await self._pool.run(extract_in_worker, page, self._config)
        else:
            self._local += 1
            try:
                result, busy, cpu = await loop.run_in_executor(self._threads, extract_in_worker, page, self._config)
            finally:
                self._local -= 1
        self.busy_s += busy
        self.cpu_s += cpu
        item.times.add("extract", loop.time() - started)
        result.apply(item.record)
        if result.error is not None:
            item.record.fail(ContentError(result.error, url=page.url), self.name)
        return item

    async def close(self) -> None:
        if self._threads is not None:
            threads, self._threads = self._threads, None
            await asyncio.to_thread(threads.shutdown, wait=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
