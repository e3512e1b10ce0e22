"""The crawl state of a job: one SQLite file (WAL) that says, for every URL, whether its record is written.

It is what makes a run resumable and a rerun incremental:

* **Resume.** A URL is ``done`` (or ``failed``: its record carries an error) only once its record is in every sink:
  :meth:`CrawlState.commit` runs after the sinks have written a batch, and stores, in the same transaction, how far
  the JSONL output is valid (its byte offset). A process killed at any moment leaves at most a tail of lines past
  that offset, which the next run cuts off and redoes; so every input URL ends as exactly one record.
* **Recrawl.** Each row keeps what a revisit needs: the response's validators (ETag, Last-Modified), a hash of the
  body and of the extracted text, the NLP cache key, and the record itself (compressed). A recrawl is a new
  *generation*: every URL done in an older one is due again, with a conditional request.
* **The NLP cache** (``nlp_cache`` table) keeps analyses by a hash of text, model and settings, for every run.

Input is not copied here first: the input file is the queue. A URL read is inserted as ``pending`` (batched with the
next commit), so a rerun knows what it had read; the rerun reads the input again and skips what is done.

One transaction per batch of records, on the event loop (see :meth:`CrawlState.commit` for why not a thread); the
disk waits are elsewhere: the JSONL fsync before it and the WAL checkpoints (every 5,000 records, on a connection
of their own) run in worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from enrich.errors import SinkError
from enrich.record import Record, dumps_record
from enrich.state.db import SCHEMA, SCHEMA_VERSION, iso_to_ts, lock_job, pack, transaction, unpack

if TYPE_CHECKING:
    from collections.abc import Sequence

    from enrich.stages import WorkItem

__all__ = ["Admission", "CrawlState", "StoredRow", "body_hash"]

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY = 5_000
"""Records committed between two checkpoints of the write-ahead log."""

MAX_SEEN = 1_000_000
"""URLs of a first crawl told new without a database lookup (8-byte digests, about 70 MB); past this, looked up."""
"""zlib level of stored records and analyses: level 1 is ~4x on records at a few hundred MB/s; higher levels
gain little on JSON and cost CPU on the crawl's critical path."""


class Admission(Enum):
    """What to do with an input URL, given the crawl state."""

    NEW = "new"
    """Never seen: fetch it."""
    RESUMED = "resumed"
    """Read by an earlier process of this generation, never finished: fetch it."""
    REVISIT = "revisit"
    """Done in an earlier generation: fetch it again, conditionally."""
    FRESH = "fresh"
    """Done in an earlier generation less than ``max_age`` ago: write its stored record, no fetch."""
    DONE = "done"
    """Its record is already in this generation's output: skip it."""
    DUPLICATE = "duplicate"
    """Read before in this process run: skip it."""

    @property
    def fetch(self) -> bool:
        return self in (Admission.NEW, Admission.RESUMED, Admission.REVISIT)


@dataclass(slots=True, frozen=True)
class StoredRow:
    """What a revisit needs from a URL's last fetch (the record itself is read only when it is reused)."""

    etag: str | None
    last_modified: str | None
    final_url: str | None
    body_hash: bytes | None
    fetched_ts: float | None

    def conditional_headers(self) -> dict[str, str]:
        """``If-None-Match`` / ``If-Modified-Since`` for a conditional request (RFC 9110 section 13.1)."""
        headers: dict[str, str] = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


def body_hash(body: bytes) -> bytes:
    """The hash a revisit compares bodies by (16 bytes of BLAKE2b)."""
    return hashlib.blake2b(body, digest_size=16).digest()


_UPSERT_DONE = """
INSERT INTO urls (url, seq, priority, state, gen, run, attempts, status, final_url, fetched_at, fetched_ts, etag,
                  last_modified, body_hash, text_hash, nlp_key, record)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (url) DO UPDATE SET state = excluded.state, gen = excluded.gen, run = excluded.run,
    attempts = excluded.attempts, status = excluded.status, final_url = excluded.final_url,
    fetched_at = excluded.fetched_at, fetched_ts = excluded.fetched_ts, etag = excluded.etag,
    last_modified = excluded.last_modified, body_hash = COALESCE(excluded.body_hash, body_hash),
    text_hash = excluded.text_hash, nlp_key = excluded.nlp_key, record = excluded.record
"""
"""A written record's row, inserted or updated in one write."""


class CrawlState:
    """The state of one job in one SQLite file. Open it with :meth:`open`; engines call :meth:`admit` per input
    URL, the sink stage calls :meth:`commit` per written batch; :meth:`close` at the end.

    Args:
        path: the database file.
        generation: the current generation (1 for the first crawl, +1 per recrawl).
        run: this process run's number (every open adds one).
        resumed: whether this run continues a generation an earlier run started.
        max_age_s: in a recrawl, URLs fetched less than this long ago are not fetched again (their record is reused).
        durable: fsync the JSONL output before each commit, so a power cut cannot lose lines the state counts as
            written (a process crash cannot either way).
        clock: Unix time, for freshness.
    """

    def __init__(
        self,
        *,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        generation: int,
        run: int,
        resumed: bool,
        output_offset: int,
        max_age_s: float | None = None,
        durable: bool = True,
        clock: Any = time.time,
        lock: IO[str] | None = None,
    ) -> None:
        self.path = path
        self._job_lock = lock
        self._writer = writer
        self._reader = reader
        self.generation = generation
        self.run = run
        self.resumed = resumed
        self.output_offset = output_offset
        """Bytes of the JSONL output that hold committed records: a rerun cuts the file back to this length."""
        self.max_age_s = max_age_s
        self.durable = durable
        self._clock = clock
        self._unflushed: dict[str, tuple[int, int]] = {}
        """URLs read in this run and not yet inserted: url -> (seq, priority). Admissions and commits both run on
        the event loop (the reactor's, in Scrapy mode), so the in-memory state needs no lock."""
        self._seq = self._max_seq()
        self._new_job = self._seq == 0
        """The job had no URL when this run began: a URL is new unless this run read it before."""
        self._seen: set[bytes] = set()
        self._revisits: dict[str, StoredRow] = {}
        """URLs being revisited (in flight), with what their last fetch left."""
        self._nlp_unsaved: dict[bytes, bytes] = {}
        self._uncheckpointed = 0
        self._checkpointer: sqlite3.Connection | None = None
        self.counts: dict[str, int] = dict.fromkeys((a.value for a in Admission), 0)
        self.counts.update(not_modified=0, unchanged=0, changed=0)
        self.closed = False

    # --- opening ---------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        restart: bool = False,
        recrawl: bool = False,
        max_age_s: float | None = None,
        durable: bool = True,
    ) -> CrawlState:
        """Open (or create) a job's state.

        Args:
            restart: discard the job's state first (a fresh crawl).
            recrawl: start a new generation if the current one is complete; an unfinished one is resumed first.

        Raises:
            SinkError: the file cannot be opened, or is not a crawl state of this version.
        """
        path = Path(path)
        lock = lock_job(path)
        if restart:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            writer.execute("PRAGMA journal_mode=WAL")
            writer.execute("PRAGMA synchronous=NORMAL")  # WAL: a process crash loses nothing committed
            writer.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run off the event loop (checkpoint())
            writer.executescript(SCHEMA)
            meta = dict(writer.execute("SELECT key, value FROM meta").fetchall())
            version = int(meta.get("schema", SCHEMA_VERSION))
            if version != SCHEMA_VERSION:
                raise SinkError(
                    f"crawl state {path} has schema version {version}, this version reads {SCHEMA_VERSION}: "
                    "run with --restart to start the job over"
                )
            generation = int(meta.get("generation", 0))
            complete = meta.get("complete", "1") == "1"
            offset = int(meta.get("output_offset", 0))
            if generation == 0 or (recrawl and complete):
                generation += 1  # a new crawl, or a recrawl: its output starts empty
                offset, resumed = 0, False
            else:
                resumed = True  # an unfinished generation continues; a finished one run again gets new URLs only
            run = int(meta.get("runs", 0)) + 1
            values = {
                "schema": SCHEMA_VERSION,
                "generation": generation,
                "complete": 0,
                "runs": run,
                "output_offset": offset,
            }
            with transaction(writer):
                writer.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in values.items()]
                )
            reader = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error as exc:
            lock.close()
            raise SinkError(f"cannot open the crawl state {path}: {exc}") from exc
        except OSError as exc:
            lock.close()
            raise SinkError(f"cannot open the crawl state {path}: {exc.strerror or exc}") from exc
        except BaseException:
            lock.close()
            raise
        return cls(
            path=path,
            writer=writer,
            reader=reader,
            generation=generation,
            run=run,
            resumed=resumed,
            output_offset=offset,
            max_age_s=max_age_s,
            durable=durable,
            lock=lock,
        )

    def _max_seq(self) -> int:
        row = self._reader.execute("SELECT MAX(seq) FROM urls").fetchone()
        return int(row[0] or 0)

    def tally(self) -> dict[str, int]:
        """URLs per state in the current generation, and those of older generations (due for a recrawl)."""
        rows = self._reader.execute(
            "SELECT CASE WHEN gen = ? THEN state ELSE 'earlier' END, COUNT(*) FROM urls GROUP BY 1", (self.generation,)
        ).fetchall()
        out = {"pending": 0, "done": 0, "failed": 0, "earlier": 0}
        out.update({str(state): int(n) for state, n in rows})
        return out

    # --- the input -------------------------------------------------------------------------------------------

    def admit(self, url: str, *, priority: int = 0) -> tuple[Admission, StoredRow | None]:
        """Decide what to do with one input URL, and note it as read. Fast (one indexed lookup, no write): runs on
        the event loop for every input line. For a revisit, the stored row says how to make it conditional."""
        kind, stored = self._decide(url)
        self.counts[kind.value] += 1
        if kind in (Admission.NEW, Admission.RESUMED, Admission.REVISIT, Admission.FRESH):
            if url not in self._unflushed:
                self._seq += 1
                self._unflushed[url] = (self._seq, priority)
            if kind is Admission.REVISIT and stored is not None:
                self._revisits[url] = stored
        return kind, stored

    def _decide(self, url: str) -> tuple[Admission, StoredRow | None]:
        if url in self._unflushed:
            return Admission.DUPLICATE, None
        if self._new_job:  # a first crawl: only a URL seen before in this run can be in the database
            digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            if digest not in self._seen:
                self._seen.add(digest)
                self._new_job = len(self._seen) < MAX_SEEN
                return Admission.NEW, None
        row = self._reader.execute(
            "SELECT state, gen, run, etag, last_modified, final_url, body_hash, fetched_ts FROM urls WHERE url = ?",
            (url,),
        ).fetchone()
        if row is None:
            return Admission.NEW, None
        state, gen, run, etag, last_modified, final_url, digest, fetched_ts = row
        if run == self.run:
            return Admission.DUPLICATE, None
        if gen == self.generation:
            return (Admission.DONE, None) if state in ("done", "failed") else (Admission.RESUMED, None)
        stored = StoredRow(etag, last_modified, final_url, digest, fetched_ts)
        if (
            self.max_age_s is not None
            and fetched_ts is not None
            and state == "done"
            and self._clock() - fetched_ts < self.max_age_s
        ):
            return Admission.FRESH, stored
        return Admission.REVISIT, stored

    def _insert_pending(self, batch: dict[str, tuple[int, int]]) -> None:
        self._writer.executemany(
            "INSERT INTO urls (url, seq, priority, state, gen, run) VALUES (?, ?, ?, 'pending', ?, ?) "
            "ON CONFLICT (url) DO UPDATE SET state = CASE WHEN gen = excluded.gen THEN state ELSE 'pending' END, "
            "gen = excluded.gen, run = excluded.run",
            [(url, seq, priority, self.generation, self.run) for url, (seq, priority) in batch.items()],
        )

    # --- revisits --------------------------------------------------------------------------------------------

    def revisit_of(self, url: str) -> StoredRow | None:
        """The stored row of ``url`` if it is being revisited in this run."""
        return self._revisits.get(url)

    def stored_record(self, url: str) -> Record | None:
        """The record ``url`` had when it was last written (for a 304, an unchanged body, a fresh URL).

        On the event loop, like the admissions: one indexed read and a decompression, tens of microseconds; a
        thread per record would wait on the interpreter lock far longer (see :meth:`commit`).
        """
        row = self._reader.execute("SELECT record FROM urls WHERE url = ?", (url,)).fetchone()
        if row is None or row[0] is None:
            return None
        return Record.from_dict(json.loads(unpack(row[0])))

    # --- the NLP cache ---------------------------------------------------------------------------------------

    def load_analysis(self, key: bytes) -> bytes | None:
        """A stored NLP result (compressed JSON) by its cache key."""
        if key in self._nlp_unsaved:
            return self._nlp_unsaved[key]
        row = self._reader.execute("SELECT result FROM nlp_cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def save_analysis(self, key: bytes, blob: bytes) -> None:
        """Keep an NLP result; it is written with the next commit."""
        self._nlp_unsaved[key] = blob

    # --- committing ------------------------------------------------------------------------------------------

    def sync_output(self, fd: int) -> None:
        """fsync the JSONL output before its length is committed (with ``durable``), so a power cut cannot lose
        lines the state counts as written. Blocking on the disk: call it from a worker thread.

        Raises:
            SinkError: the file cannot be synced.
        """
        if not self.durable:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            raise SinkError(f"cannot sync the output to disk: {exc.strerror or exc}") from exc

    def checkpoint_due(self) -> bool:
        """Whether the write-ahead log should be folded into the database (:meth:`checkpoint`) now."""
        return self._uncheckpointed >= CHECKPOINT_EVERY

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database, on a connection of its own (the one step that syncs to
        disk: call it from a worker thread; commits go on meanwhile)."""
        self._uncheckpointed = 0
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, check_same_thread=False)
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            logger.warning("checkpoint of the crawl state %s failed (retried later): %s", self.path, exc)

    def commit(self, items: Sequence[WorkItem], *, output_offset: int | None) -> None:
        """Mark the URLs of a batch every sink has written as done (or failed), with what a recrawl needs, and
        the JSONL output's valid length, in one transaction.

        Runs on the event loop, on purpose: a thread would hand the interpreter lock back and forth with the busy
        loop for every row (each wait up to the switch interval, 5 ms), and a batch of 100 took a second that way.
        Here it costs its CPU (about 40 us a record) and no disk wait: the log is synced by :meth:`checkpoint`.

        Raises:
            SinkError: the database cannot be written (the batch's records are written but not marked: a rerun
                redoes them, after cutting the output back to the last committed offset).
        """
        pending, self._unflushed = self._unflushed, {}
        read = dict(pending)  # put back if the transaction fails
        analyses, self._nlp_unsaved = self._nlp_unsaved, {}
        rows, reused = [], []
        now = self._clock()
        for item in items:
            record = item.record
            line = pack(item.line if item.line is not None else dumps_record(record))
            state = "failed" if record.error is not None else "done"
            fetched_ts = iso_to_ts(record.fetched_at) or now
            if item.reused:  # a stored record again: what a revisit compares against stays as it was
                facts = (state, self.generation, record.attempts, record.fetched_at, fetched_ts, line)
                reused.append((*facts, item.etag, item.last_modified, record.url))
                continue
            seq, priority = pending.pop(record.url, (0, 0))  # one row write, not a pending one and then this
            text = record.text.encode("utf-8", "replace") if record.text else None
            text_hash = hashlib.blake2b(text, digest_size=16).digest() if text else None
            row = (record.url, seq, priority, state, self.generation, self.run, record.attempts, record.status)
            fetch = (record.final_url, record.fetched_at, fetched_ts, item.etag, item.last_modified, item.body_hash)
            rows.append((*row, *fetch, text_hash, item.nlp_key, line))
        try:
            with transaction(self._writer):
                self._insert_pending(pending)
                self._writer.executemany(_UPSERT_DONE, rows)
                self._writer.executemany(
                    "UPDATE urls SET state = ?, gen = ?, attempts = ?, fetched_at = ?, fetched_ts = ?, record = ?, "
                    "etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified) WHERE url = ?",
                    reused,
                )
                if analyses:
                    self._writer.executemany("INSERT OR IGNORE INTO nlp_cache VALUES (?, ?)", analyses.items())
                if output_offset is not None:
                    self._writer.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('output_offset', ?)", (str(output_offset),)
                    )
        except sqlite3.Error as exc:
            self._unflushed = {**read, **self._unflushed}
            self._nlp_unsaved = {**analyses, **self._nlp_unsaved}
            raise SinkError(f"cannot write the crawl state {self.path}: {exc}") from exc
        if output_offset is not None:
            self.output_offset = output_offset
        for item in items:
            self._revisits.pop(item.record.url, None)
        self._uncheckpointed += len(items)

    def close(self, *, complete: bool) -> None:
        """Write what is left and close; ``complete`` marks the generation finished (a recrawl may start anew)."""
        if self.closed:
            return
        self.closed = True
        try:
            with transaction(self._writer):
                pending, self._unflushed = self._unflushed, {}
                self._insert_pending(pending)
                if self._nlp_unsaved:
                    self._writer.executemany("INSERT OR IGNORE INTO nlp_cache VALUES (?, ?)", self._nlp_unsaved.items())
                self._writer.execute("INSERT OR REPLACE INTO meta VALUES ('complete', ?)", ("1" if complete else "0",))
        except sqlite3.Error as exc:
            logger.error("could not save the crawl state %s: %s", self.path, exc)
        finally:
            self._reader.close()
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._writer.close()  # the last connection: SQLite folds the log into the database
            if self._job_lock is not None:
                self._job_lock.close()  # releases the lock
