"""The stage protocol both engines drive, the item that flows through stages, and the composer that chains them.

A stage has three async methods: ``open`` once before the first item, ``process`` per item, ``close`` once after
the last. The async engine calls them through :class:`StageChain`; Scrapy mode wraps each stage in an item
pipeline whose ``open_spider`` / ``process_item`` / ``close_spider`` call the same methods.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from enrich.errors import SinkError
from enrich.record import ErrorInfo, FetchedPage, Record
from enrich.timing import StageTimes

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

__all__ = ["Stage", "StageChain", "WorkItem", "run_stage"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class WorkItem:
    """A URL on its way through the stages: the record being built and, when the fetch succeeded, the page.

    ``started`` is when processing began (a ``perf_counter`` value), for the record's ``process_duration_ms``.
    The other fields are facts the crawl state (:mod:`enrich.state`) keeps once the record is written.
    """

    record: Record
    page: FetchedPage | None = None
    started: float = field(default_factory=time.perf_counter)
    etag: str | None = None
    last_modified: str | None = None
    body_hash: bytes | None = None
    """What the crawl state keeps for a revisit: the response's validators and a hash of its body."""
    nlp_key: bytes | None = None
    """The NLP cache key of the record's analysis."""
    line: str | None = None
    """The record serialized (:func:`~enrich.record.dumps_record`), once, by the sink stage for every consumer."""
    reused: bool = False
    """The record is a stored one (not modified, unchanged, fresh): extraction and NLP leave it alone."""
    times: StageTimes = field(default_factory=StageTimes)
    """Seconds spent in each step so far (:mod:`enrich.timing`); the sink stage copies them into the record."""

    @classmethod
    def from_page(cls, page: FetchedPage, *, engine: str) -> WorkItem:
        """A fetched page; the record gets the fetch facts now, the rest from the stages."""
        record = Record(
            url=page.url,
            final_url=page.final_url,
            status=page.status,
            content_type=page.content_type,
            size_bytes=len(page.body),
            fetched_at=page.fetched_at,
            fetch_duration_ms=round(page.fetch_duration_ms, 1),
            attempts=page.attempts,
            engine=engine,
        )
        return cls(record=record, page=page)

    @classmethod
    def from_error(
        cls,
        url: str,
        error: BaseException | ErrorInfo,
        *,
        engine: str,
        stage: str = "fetch",
        attempts: int = 0,
        fetch_duration_ms: float | None = None,
        fetched_at: str | None = None,
        status: int | None = None,
        final_url: str | None = None,
    ) -> WorkItem:
        """A URL that never produced a page (invalid, refused, failed after retries): its record carries why."""
        info = error if isinstance(error, ErrorInfo) else ErrorInfo.from_exception(error, stage)
        record = Record(
            url=url,
            final_url=final_url,
            status=status,
            fetched_at=fetched_at,
            fetch_duration_ms=None if fetch_duration_ms is None else round(fetch_duration_ms, 1),
            attempts=attempts,
            error=info,
            engine=engine,
        )
        return cls(record=record)


@runtime_checkable
class Stage(Protocol):
    """One step applied to every item. ``process`` may raise; the caller records the failure on the item."""

    name: str

    async def open(self) -> None: ...

    async def process(self, item: WorkItem) -> WorkItem: ...

    async def close(self) -> None: ...


async def run_stage(stage: Stage, item: WorkItem) -> WorkItem:
    """Run one stage on one item, degrading instead of failing: the record keeps what earlier stages found
    and notes which stage failed and why. A :class:`SinkError` is the exception: it stops the run.
    """
    try:
        return await stage.process(item)
    except SinkError:
        raise
    except Exception as exc:
        logger.warning(
            "stage %s failed on %s: %s",
            stage.name,
            item.record.url,
            exc,
            exc_info=True,
            extra={"url": item.record.url, "stage": stage.name},
        )
        item.record.fail(exc, stage.name)
        return item


class StageChain:
    """Runs stages in order: opens them first to last, closes them last to first, even after a failure."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)
        self._opened: list[Stage] = []

    async def open(self) -> None:
        for stage in self.stages:
            try:
                await stage.open()
            except BaseException:
                await self.close()
                raise
            self._opened.append(stage)

    async def process(self, item: WorkItem) -> WorkItem:
        for stage in self.stages:
            item = await run_stage(stage, item)
        return item

    async def close(self) -> None:
        errors: list[BaseException] = []
        while self._opened:
            stage = self._opened.pop()
            try:
                await stage.close()
            except Exception as exc:
                logger.error("closing stage %s failed: %s", stage.name, exc, exc_info=True)
                errors.append(exc)
        if errors:
            raise errors[0]

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
