"""The extraction stage: runs :func:`enrich.extract.extract_page` off the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from enrich.config import ExtractConfig
from enrich.errors import ContentError
from enrich.extract import extract_page
from enrich.extract.fast_html import require_resiliparse
from enrich.state.revisit import reuse_unchanged

if TYPE_CHECKING:
    from enrich.stages import WorkItem
    from enrich.state import CrawlState

__all__ = ["ExtractStage"]


class ExtractStage:
    """Fills text and metadata from the fetched body, then drops the body: later stages need only the record.

    With a crawl state, a page a recrawl finds unchanged (304, same body) gets its stored record instead.

    Parsing a large page takes tens of milliseconds of CPU, so it runs in the stage's own threads to keep the
    event loop (and so the fetching) responsive.
    """

    name = "extract"

    def __init__(self, *, config: ExtractConfig | None = None, state: CrawlState | None = None) -> None:
        self._config = config or ExtractConfig()
        self._state = state
        self._executor: ThreadPoolExecutor | None = None
        self.busy_s = 0.0
        self.workers = self._config.workers

    async def open(self) -> None:
        if self._config.backend == "resiliparse":
            require_resiliparse()  # a missing optional package fails the run before any fetch, not every page
        self._executor = ThreadPoolExecutor(self._config.workers, thread_name_prefix="extract")

    async def process(self, item: WorkItem) -> WorkItem:
        page = item.page
        if page is None or (self._state is not None and reuse_unchanged(self._state, item)):
            return item
        item.page = None  # release the body as soon as it is read
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await loop.run_in_executor(self._executor, extract_page, page, self._config)
        elapsed = loop.time() - started
        self.busy_s += elapsed
        item.times.add("extract", elapsed)
        result.apply(item.record)
        if result.error is not None:
            item.record.fail(ContentError(result.error, url=page.url), self.name)
        return item

    async def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)
