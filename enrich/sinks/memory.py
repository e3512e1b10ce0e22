"""In-memory sink for tests, benchmarks and programmatic use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from enrich.record import Record

__all__ = ["MemorySink"]


class MemorySink:
    """Keeps every record in :attr:`records`, in write order."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.batches = 0

    async def open(self) -> None:
        return None

    async def write(self, records: Sequence[Record]) -> None:
        self.records.extend(records)
        self.batches += 1

    async def close(self) -> None:
        return None
