"""Where the frontier keeps queued requests: per-site priority queues behind one small interface.

The :class:`~enrich.frontier.core.Frontier` decides *which site* goes next; its storage only keeps each site's
entries in order (highest priority first, then first in, first out). Backends differ in durability, not in
behaviour: :class:`MemoryStorage` here; a SQLite backend (crash-safe resume) and a Redis one (many workers) plug in
behind the same :class:`FrontierStorage` protocol, as crawlee's request queue sits over several storage clients.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FrontierEntry", "FrontierStorage", "MemoryStorage"]

T = TypeVar("T")


@dataclass(slots=True, order=True)
class FrontierEntry(Generic[T]):
    """One queued request: the URL that decides its site, and what the engine wants back when it is its turn.

    Ordered by ``(-priority, seq)``: higher priority first, then first in, first out.
    """

    sort_key: tuple[int, int] = field(init=False, repr=False)
    url: str = field(compare=False)
    payload: T = field(compare=False)
    priority: int = field(default=0, compare=False)
    seq: int = field(default=0, compare=False)
    size: int = field(default=0, compare=False)
    """Bytes this entry is counted as, for the frontier's memory bound."""
    from_input: bool = field(default=True, compare=False)
    """Read from the input (counted in the look-ahead bound), not a retry or a redirect hop."""
    queued_at: float = field(default=0.0, compare=False)
    """When it was queued (the frontier's clock), for the time a request waits."""

    def __post_init__(self) -> None:
        self.sort_key = (-self.priority, self.seq)


class FrontierStorage(Protocol[T]):
    """Per-site queues of :class:`FrontierEntry`; the frontier keeps the scheduling state, this keeps the entries."""

    def push(self, site: str, entry: FrontierEntry[T]) -> None:
        """Queue ``entry`` under ``site``."""
        ...

    def pop(self, site: str) -> FrontierEntry[T] | None:
        """Remove and return the site's first entry (highest priority, then oldest), ``None`` if it has none."""
        ...

    def head(self, site: str) -> FrontierEntry[T] | None:
        """The site's first entry without removing it."""
        ...

    def count(self, site: str) -> int:
        """Entries queued under ``site``."""
        ...

    def __len__(self) -> int: ...

    def drain(self) -> Iterator[FrontierEntry[T]]:
        """Remove and yield every entry (a run that stops: each becomes ``not_started`` or a record)."""
        ...


class MemoryStorage(Generic[T]):
    """Per-site binary heaps in a dict; a site whose queue empties is dropped, so idle sites cost nothing."""

    def __init__(self) -> None:
        self._queues: dict[str, list[FrontierEntry[T]]] = {}
        self._size = 0

    def push(self, site: str, entry: FrontierEntry[T]) -> None:
        heapq.heappush(self._queues.setdefault(site, []), entry)
        self._size += 1

    def pop(self, site: str) -> FrontierEntry[T] | None:
        queue = self._queues.get(site)
        if not queue:
            return None
        entry = heapq.heappop(queue)
        if not queue:
            del self._queues[site]
        self._size -= 1
        return entry

    def head(self, site: str) -> FrontierEntry[T] | None:
        queue = self._queues.get(site)
        return queue[0] if queue else None

    def count(self, site: str) -> int:
        return len(self._queues.get(site, ()))

    def __len__(self) -> int:
        return self._size

    def drain(self) -> Iterator[FrontierEntry[T]]:
        queues, self._queues, self._size = self._queues, {}, 0
        for queue in queues.values():
            yield from sorted(queue)
