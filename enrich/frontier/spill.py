"""Where the frontier puts the input it read ahead but cannot keep in memory: a temporary SQLite file per run.

A grouped input (stage 2 writes one) can hold a million URLs of one slow site before the first URL of the next. The
frontier reads ahead while every site at hand waits, so it meets that site's URLs long before it finds others; past
``frontier.max_site_pending`` queued in memory for one site, the rest of that site's URLs are written here instead
(a hundred bytes or so each) and read back, oldest first, as the site's queue drains. Memory stays bounded by the
in-memory caps, and the other sites are found and fetched meanwhile.

SQLite, not a plain file: URLs come back per site, in order, and the file is deleted with the run. The calls are
synchronous and small (one indexed insert or one batch select of a few hundred rows, on a temporary file with
``synchronous=OFF``): microseconds, on the event loop like the rest of the frontier's bookkeeping.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from enrich.frontier.storage import FrontierEntry

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["SpillCodec", "SpillStore"]

T = TypeVar("T")


class SpillCodec(Protocol[T]):
    """How an engine's payload becomes bytes and back (only input requests not yet started are spilled)."""

    def encode(self, payload: T, /) -> bytes: ...

    def decode(self, data: bytes, /) -> T: ...


class SpillStore(Generic[T]):
    """Per-site FIFO queues of encoded payloads in a temporary SQLite database.

    Args:
        codec: turns payloads into bytes and back.
        directory: where the temporary file goes (default: the system's temporary folder).
    """

    def __init__(self, codec: SpillCodec[T], *, directory: Path | None = None) -> None:
        self.codec = codec
        self._directory = directory
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._db: sqlite3.Connection | None = None
        self._counts: Counter[str] = Counter()
        self.total_spilled = 0
        """Entries ever written here (for the run's stats)."""

    @property
    def path(self) -> Path | None:
        """The database file, once something was spilled (most runs never spill, and make no file)."""
        return Path(self._dir.name) / "spill.sqlite" if self._dir is not None else None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._dir = tempfile.TemporaryDirectory(prefix="webenrich-spill-", dir=self._directory)
            self._db = sqlite3.connect(Path(self._dir.name) / "spill.sqlite")
            self._db.executescript(
                """
                PRAGMA journal_mode = OFF;
                PRAGMA synchronous = OFF;
                CREATE TABLE spill (site TEXT NOT NULL, seq INTEGER NOT NULL, priority INTEGER NOT NULL,
                                    size INTEGER NOT NULL, url TEXT NOT NULL, payload BLOB NOT NULL,
                                    PRIMARY KEY (site, seq));
                """
            )
        return self._db

    def __len__(self) -> int:
        return self._counts.total()

    def count(self, site: str) -> int:
        return self._counts[site]

    def push(self, site: str, entry: FrontierEntry[T]) -> None:
        self._connection().execute(
            "INSERT INTO spill (site, seq, priority, size, url, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (site, entry.seq, entry.priority, entry.size, entry.url, self.codec.encode(entry.payload)),
        )
        self._counts[site] += 1
        self.total_spilled += 1

    def pop(self, site: str, limit: int) -> list[FrontierEntry[T]]:
        """Up to ``limit`` of the site's oldest entries, removed."""
        if not self._counts[site]:
            return []
        db = self._connection()
        rows = db.execute(
            "SELECT seq, priority, size, url, payload FROM spill WHERE site = ? ORDER BY seq LIMIT ?", (site, limit)
        ).fetchall()
        if rows:
            db.execute("DELETE FROM spill WHERE site = ? AND seq <= ?", (site, rows[-1][0]))
        self._counts[site] -= len(rows)
        if self._counts[site] <= 0:
            del self._counts[site]
        return [
            FrontierEntry(url=url, payload=self.codec.decode(blob), priority=priority, seq=seq, size=size)
            for seq, priority, size, url, blob in rows
        ]

    def drain(self) -> Iterator[T]:
        """Remove and yield every payload (a run that stops)."""
        for site in list(self._counts):
            while batch := self.pop(site, 1000):
                for entry in batch:
                    yield entry.payload

    def close(self) -> None:
        """Close and delete the file, if one was made."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self._counts.clear()
