"""JSON Lines sink: one record per line, written in whole batches so a line is never half-written."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from enrich.errors import SinkError
from enrich.record import dumps_record

if TYPE_CHECKING:
    from collections.abc import Sequence

    from enrich.record import Record

__all__ = ["JsonlSink"]


class _Stdout:
    """Standard output as a byte stream (``sys.stdout`` may be replaced by a text-only stream, as in tests)."""

    def write(self, data: bytes) -> int:
        sys.stdout.write(data.decode("utf-8"))
        return len(data)

    def flush(self) -> None:
        sys.stdout.flush()


class JsonlSink:
    """Writes records to a JSONL file. ``path`` ``-`` writes to standard output.

    Each batch is serialized first, then written with one ``write`` and flushed, in a worker thread so the event
    loop keeps running. :attr:`offset` is the file's length after the last batch: the crawl state stores it with
    the batch's URLs, and a resumed run passes it back as ``resume_at``, which cuts off whatever a crash left past
    it (lines of records the state never counted as written, or half a line) and appends from there.

    Args:
        path: the file, or ``-`` for standard output.
        append: keep what the file holds and add to it (ignored with ``resume_at``).
        resume_at: cut the file to this many bytes, then append (a resumed job).
    """

    def __init__(self, *, path: Path | str, append: bool = False, resume_at: int | None = None) -> None:
        self.path = Path(path) if str(path) != "-" else None
        self._append = append
        self._resume_at = resume_at
        self._file: IO[bytes] | _Stdout | None = None
        self._lock = asyncio.Lock()
        self.offset = 0
        """Bytes in the file after the last written batch."""

    def _open_sync(self) -> IO[bytes]:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file: IO[bytes]
        if self._resume_at is None:
            file = open(self.path, "ab" if self._append else "wb")  # noqa: SIM115 - closed in close()
        elif self._resume_at == 0 or (self.path.exists() and not self.path.is_file()):  # nothing kept; a device
            file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        else:
            file = open(self.path, "r+b" if self.path.exists() else "w+b")  # noqa: SIM115 - closed in close()
            size = file.seek(0, os.SEEK_END)
            if size < self._resume_at:
                file.close()
                raise SinkError(
                    f"output {self.path} holds {size} bytes but the crawl state counts {self._resume_at} as "
                    "written: it was changed or cut since; run with --restart to start the job over"
                )
            file.truncate(self._resume_at)
            file.seek(self._resume_at)
        self.offset = file.tell()
        return file

    async def open(self) -> None:
        if self.path is None:
            self._file = _Stdout()
            return
        try:
            self._file = await asyncio.to_thread(self._open_sync)
        except OSError as exc:
            raise SinkError(f"cannot open output file {self.path}: {exc.strerror or exc}") from exc

    def fileno(self) -> int | None:
        """The file's descriptor (to sync it to disk), ``None`` for standard output or when closed."""
        return self._file.fileno() if self._file is not None and not isinstance(self._file, _Stdout) else None

    def _write_sync(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._file.flush()
        self.offset += len(data)

    async def write(self, records: Sequence[Record]) -> None:
        await self.write_serialized(records, [dumps_record(r) for r in records])

    async def write_serialized(self, records: Sequence[Record], lines: Sequence[str]) -> None:
        """Write records already serialized by :func:`~enrich.record.dumps_record` (one line each)."""
        if self._file is None:
            raise SinkError("JSONL sink written before open()")
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        async with self._lock:
            try:
                await asyncio.to_thread(self._write_sync, data)
            except OSError as exc:
                raise SinkError(f"cannot write to {self.path or 'stdout'}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        if self._file is not None and not isinstance(self._file, _Stdout):
            file, self._file = self._file, None
            try:
                await asyncio.to_thread(file.close)
            except OSError as exc:
                raise SinkError(f"cannot close {self.path}: {exc.strerror or exc}") from exc
        self._file = None
