"""JSON Lines sink: one record per line, written in whole batches so a line is never half-written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO, TYPE_CHECKING

from enrich.errors import SinkError
from enrich.record import dumps_record

if TYPE_CHECKING:
    from collections.abc import Sequence

    from enrich.record import Record

__all__ = ["JsonlSink"]


class JsonlSink:
    """Appends records to a JSONL file. ``path`` ``-`` writes to standard output.

    Each batch is serialized first, then written with one ``write`` and flushed, in a worker thread so the event
    loop keeps running. A crash can at worst lose the batch being written, never leave a broken line behind
    the last complete batch.
    """

    def __init__(self, *, path: Path | str, append: bool = False) -> None:
        self.path = Path(path) if str(path) != "-" else None
        self._append = append
        self._file: IO[str] | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path is None:
            import sys

            self._file = sys.stdout
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = await asyncio.to_thread(
                open, self.path, "a" if self._append else "w", encoding="utf-8", newline="\n"
            )
        except OSError as exc:
            raise SinkError(f"cannot open output file {self.path}: {exc.strerror or exc}") from exc

    def _write_sync(self, data: str) -> None:
        assert self._file is not None
        self._file.write(data)
        self._file.flush()

    async def write(self, records: Sequence[Record]) -> None:
        if self._file is None:
            raise SinkError("JSONL sink written before open()")
        data = "".join(dumps_record(r) + "\n" for r in records)
        async with self._lock:
            try:
                await asyncio.to_thread(self._write_sync, data)
            except OSError as exc:
                raise SinkError(f"cannot write to {self.path or 'stdout'}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        if self._file is not None and self.path is not None:
            file, self._file = self._file, None
            try:
                await asyncio.to_thread(file.close)
            except OSError as exc:
                raise SinkError(f"cannot close {self.path}: {exc.strerror or exc}") from exc
        self._file = None
