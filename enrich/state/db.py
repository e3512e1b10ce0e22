"""The crawl state's file: its schema, the lock that keeps one process per job, transactions, record packing."""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from enrich.errors import SinkError

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

__all__ = ["SCHEMA", "SCHEMA_VERSION", "iso_to_ts", "lock_job", "pack", "transaction", "unpack"]

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,              -- input order of the first reading
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,               -- pending | done | failed
    gen INTEGER NOT NULL,              -- the generation (crawl or recrawl) the state belongs to
    run INTEGER NOT NULL,              -- the process run that last read it (repeats within a run are duplicates)
    attempts INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    final_url TEXT,
    fetched_at TEXT,
    fetched_ts REAL,                   -- fetched_at as Unix time, for freshness
    etag TEXT,
    last_modified TEXT,
    body_hash BLOB,
    text_hash BLOB,
    nlp_key BLOB,                      -- key of its analysis in nlp_cache
    record BLOB                        -- the record as written (pack(): JSON, zlib-compressed when long)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nlp_cache (key BLOB PRIMARY KEY, result BLOB NOT NULL) WITHOUT ROWID;
"""

COMPRESS_LEVEL = 1
COMPRESS_FROM = 1024


def pack(data: str) -> bytes:
    """A record for the ``record`` column: zlib-compressed from :data:`COMPRESS_FROM` bytes and kept as it is
    below (on a short record, the compressor's set-up costs more than it saves)."""
    raw = data.encode("utf-8")
    return b"z" + zlib.compress(raw, COMPRESS_LEVEL) if len(raw) >= COMPRESS_FROM else b"j" + raw


def unpack(blob: bytes) -> str:
    return (zlib.decompress(blob[1:]) if blob[:1] == b"z" else blob[1:]).decode("utf-8")


def iso_to_ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def lock_job(path: Path) -> IO[str]:
    """Hold ``<path>.lock`` for the run: two processes on one job would write every record twice.

    Raises:
        SinkError: another process holds it.
    """
    lock_path = Path(f"{path}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held until close()
    except OSError as exc:
        raise SinkError(f"cannot open the crawl state's lock {lock_path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise SinkError(
            f"the job's state {path} is in use by another run (pid {holder}): wait for it to end or stop it"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
