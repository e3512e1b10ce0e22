"""Where records go. A :class:`Sink` writes batches; :class:`SinkStage` buffers records and feeds its sinks.

Add a sink by implementing the three methods of :class:`Sink`; :class:`SinkStage` handles batching, timing and
failure. A sink that cannot write raises :class:`~enrich.errors.SinkError`, which stops the run: records are
never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from enrich.errors import SinkError
from enrich.record import dumps_record, utc_now_iso
from enrich.sinks.jsonl import JsonlSink
from enrich.sinks.memory import MemorySink
from enrich.sinks.postgres import PostgresSink
from enrich.sinks.sqlite import SqliteSink

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from enrich.record import Record
    from enrich.stages import WorkItem

__all__ = ["JsonlSink", "MemorySink", "PostgresSink", "SerializedSink", "Sink", "SinkStage", "SqliteSink"]


@runtime_checkable
class Sink(Protocol):
    """A destination for records, written in batches in arrival order."""

    async def open(self) -> None: ...

    async def write(self, records: Sequence[Record]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class SerializedSink(Protocol):
    """A sink that can take each record's JSON line as the sink stage made it (serialized once for all sinks)."""

    async def write_serialized(self, records: Sequence[Record], lines: Sequence[str]) -> None: ...


class SinkStage:
    """The last stage: stamps ``enriched_at`` and ``process_duration_ms``, buffers, writes every ``batch_size``.

    A full batch is written in the background while the next one fills (one batch in flight at most: a worker
    waits only when the previous batch is still being written), so the stages never stall on a disk or a commit.

    A batch is kept until every sink has written it: a sink that fails (with any exception) stops the run with a
    :class:`SinkError` naming it (raised to the next item, or by :meth:`flush`), and a later flush (``close``)
    offers the batch again only to the sinks that have not written it, so one failing sink never makes another
    write a line twice. ``close`` flushes what is buffered, so an interrupted run that closes its stages loses
    nothing it processed.

    With ``max_wait_s``, a partial batch is written once its first record has waited that long, so a slow crawl
    keeps little unwritten and a distributed worker acknowledges what it did while it waits for more.

    ``on_written`` is called with each batch once every sink has it (the crawl state marks those URLs done).
    Batches are written one after the other, so what ``on_written`` reads of a sink (the JSONL offset) is that
    batch's.
    """

    name = "sink"

    def __init__(
        self,
        *,
        sinks: Sequence[Sink],
        batch_size: int = 100,
        on_written: Callable[[Sequence[WorkItem]], Awaitable[None]] | None = None,
        max_wait_s: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_wait_s is not None and max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be positive, got {max_wait_s}")
        self.max_wait_s = max_wait_s
        self._timer: asyncio.TimerHandle | None = None
        self._sinks = list(sinks)
        self._batch_size = batch_size
        self._on_written = on_written
        self._serialize = on_written is not None or any(isinstance(sink, SerializedSink) for sink in self._sinks)
        """Serialize each record once here, for the sinks and the crawl state, when any of them needs it."""
        self._buffer: list[WorkItem] = []
        self._partial: tuple[list[WorkItem], set[int]] | None = None
        """A batch some sinks wrote before another failed, and the indexes of the sinks that have it."""
        self._flushing = asyncio.Lock()
        self._writing: asyncio.Task[None] | None = None
        """The batch being written in the background."""
        self.written = 0
        self.busy_s = 0.0
        """Seconds spent writing batches (every sink and the crawl state's commit)."""
        self.workers = 1
        """Batches written at once, for :func:`enrich.timing.utilization`."""

    async def open(self) -> None:
        for sink in self._sinks:
            await sink.open()

    async def process(self, item: WorkItem) -> WorkItem:
        record = item.record
        started = time.perf_counter()
        record.enriched_at = utc_now_iso()
        record.process_duration_ms = round((started - item.started) * 1000, 1)
        item.page = None
        self._buffer.append(item)
        if len(self._buffer) == 1 and self.max_wait_s is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._due)
        if len(self._buffer) >= self._batch_size:
            await self._hand_off()
        elif self._writing is not None and self._writing.done():
            await self._settle()  # a failed background write stops the run at the next item
        # Set before the batch is serialized: a full batch's write starts only once this returns.
        item.times.add("sink", time.perf_counter() - started)
        record.timings = item.times.to_record()
        return item

    def _due(self) -> None:
        """The first buffered record has waited ``max_wait_s``: write the partial batch in the background (or look
        again later while the batch before it is being written; a failed one is raised by the next item)."""
        self._timer = None
        if not self._buffer or self.max_wait_s is None:
            return
        task = self._writing
        if task is not None and not task.done():
            self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._due)
            return
        if task is not None and (task.cancelled() or task.exception() is not None):
            return  # left for process() or close() to raise
        batch, self._buffer = self._buffer, []
        self._writing = asyncio.create_task(self._write_next(batch), name="sink-write")

    async def wait_written(self) -> None:
        """Wait until the batch handed to the background is written (what is buffered stays buffered).

        Raises:
            SinkError: that batch could not be written.
        """
        await self._settle()

    async def _hand_off(self) -> None:
        """Start writing the full buffer in the background, once the batch before it is written."""
        await self._settle()
        if len(self._buffer) < self._batch_size:
            return  # another worker handed it off while this one waited
        batch, self._buffer = self._buffer, []
        self._writing = asyncio.create_task(self._write_next(batch), name="sink-write")

    async def _settle(self) -> None:
        """Wait for the batch being written; raise its error (once: a retry is :meth:`flush`'s job)."""
        task = self._writing
        if task is None:
            return
        await asyncio.wait({task})  # a cancelled waiter leaves the write going
        if self._writing is task:
            self._writing = None
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    async def _write_next(self, batch: list[WorkItem]) -> None:
        async with self._flushing:
            if self._partial is not None:
                try:
                    await self._write(*self._partial)
                except BaseException:
                    self._buffer = batch + self._buffer  # not started: back in line, nothing lost
                    raise
            await self._write(batch, set())

    async def flush(self) -> None:
        """Write everything buffered (and a batch a failed sink still lacks) now.

        Raises:
            SinkError: a sink cannot write.
        """
        with contextlib.suppress(SinkError):  # its batch is kept: offered again just below
            await self._settle()
        async with self._flushing:
            if self._partial is not None:
                await self._write(*self._partial)
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            await self._write(batch, set())

    async def _write(self, batch: list[WorkItem], done: set[int]) -> None:
        started = time.perf_counter()
        try:
            await self._write_batch(batch, done)
        finally:
            self.busy_s += time.perf_counter() - started

    async def _write_batch(self, batch: list[WorkItem], done: set[int]) -> None:
        self._partial = (batch, done)
        records = [item.record for item in batch]
        lines: list[str] = []
        if self._serialize:
            for item in batch:
                if item.line is None:
                    item.line = dumps_record(item.record)
                lines.append(item.line)
        for index, sink in enumerate(self._sinks):
            if index in done:
                continue
            try:
                if isinstance(sink, SerializedSink):
                    await sink.write_serialized(records, lines)
                else:
                    await sink.write(records)
            except SinkError:
                raise
            except Exception as exc:  # a bug or an unexpected failure in a sink: same outcome, a clear stop
                raise SinkError(
                    f"{type(sink).__name__} failed writing a batch of {len(batch)} records "
                    f"({type(exc).__name__}: {exc}); the batch is kept and the run stops"
                ) from exc
            done.add(index)
        if self._on_written is not None:
            try:
                await self._on_written(batch)
            except SinkError:
                raise
            except Exception as exc:
                raise SinkError(f"recording a written batch failed ({type(exc).__name__}: {exc})") from exc
        self._partial = None
        self.written += len(batch)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self.flush()
        finally:
            for sink in self._sinks:
                await sink.close()
