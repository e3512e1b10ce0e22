"""Where records go. A :class:`Sink` writes batches; :class:`SinkStage` buffers records and feeds its sinks.

Add a sink by implementing the three methods of :class:`Sink`; :class:`SinkStage` handles batching, timing and
failure. A sink that cannot write raises :class:`~enrich.errors.SinkError`, which stops the run: records are
never dropped silently.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from enrich.errors import SinkError
from enrich.record import utc_now_iso
from enrich.sinks.jsonl import JsonlSink
from enrich.sinks.memory import MemorySink
from enrich.sinks.sqlite import SqliteSink

if TYPE_CHECKING:
    from collections.abc import Sequence

    from enrich.record import Record
    from enrich.stages import WorkItem

__all__ = ["JsonlSink", "MemorySink", "Sink", "SinkStage", "SqliteSink"]


@runtime_checkable
class Sink(Protocol):
    """A destination for records, written in batches in arrival order."""

    async def open(self) -> None: ...

    async def write(self, records: Sequence[Record]) -> None: ...

    async def close(self) -> None: ...


class SinkStage:
    """The last stage: stamps ``enriched_at`` and ``process_duration_ms``, buffers, writes every ``batch_size``.

    ``close`` flushes what is buffered, so an interrupted run that closes its stages loses nothing it processed.
    """

    name = "sink"

    def __init__(self, *, sinks: Sequence[Sink], batch_size: int = 100) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._sinks = list(sinks)
        self._batch_size = batch_size
        self._buffer: list[Record] = []
        self.written = 0

    async def open(self) -> None:
        for sink in self._sinks:
            await sink.open()

    async def process(self, item: WorkItem) -> WorkItem:
        record = item.record
        record.enriched_at = utc_now_iso()
        record.process_duration_ms = round((time.perf_counter() - item.started) * 1000, 1)
        item.page = None
        self._buffer.append(record)
        if len(self._buffer) >= self._batch_size:
            await self.flush()
        return item

    async def flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        for sink in self._sinks:
            try:
                await sink.write(batch)
            except SinkError:
                self._buffer = batch + self._buffer  # keep them: a caller may report what was not written
                raise
        self.written += len(batch)

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            for sink in self._sinks:
                await sink.close()
