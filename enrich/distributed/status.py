"""What a distributed job is doing: queued, leased, done, failed and dead-lettered URLs, and each worker's pace.

Read from the job's keys in a handful of calls (no scan of the queue), so ``status`` can be run as often as wanted
against a running job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from enrich.distributed.queue import GROUP, JobKeys, text_of

if TYPE_CHECKING:
    import redis

__all__ = ["JobStatus", "WorkerStatus", "job_status"]

ALIVE_S = 120
"""A worker that renewed its leases less than this long ago is shown as alive."""


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker: records acknowledged, URLs it holds now, when it started and last wrote or renewed."""

    name: str
    records: int
    leased: int
    started: float | None
    last_write: float | None
    last_seen: float | None

    def rate(self) -> float | None:
        """Records per second from its start to its last write."""
        if self.started is None or self.last_write is None or self.last_write <= self.started:
            return None
        return self.records / (self.last_write - self.started)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's figures at one moment (Redis's clock: ``now``)."""

    job: str
    now: float
    queued: int
    leased: int
    enqueued: int
    duplicates: int
    done: int
    failed: int
    dead_lettered: int
    workers: list[WorkerStatus] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.queued == 0 and self.leased == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "queued": self.queued,
            "leased": self.leased,
            "enqueued": self.enqueued,
            "duplicates_skipped": self.duplicates,
            "done": self.done,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "finished": self.finished,
            "workers": [
                {
                    "name": w.name,
                    "records": w.records,
                    "leased": w.leased,
                    "records_per_s": round(rate, 2) if (rate := w.rate()) is not None else None,
                    "alive": w.last_seen is not None and self.now - w.last_seen < ALIVE_S,
                }
                for w in self.workers
            ],
        }

    def render(self) -> str:
        """A few lines for people."""
        lines = [
            f"job {self.job}: {'finished' if self.finished else 'running'}",
            f"  queued {self.queued}, leased {self.leased}, done {self.done}, failed {self.failed}, "
            f"dead-lettered {self.dead_lettered} (enqueued {self.enqueued}, duplicates skipped {self.duplicates})",
        ]
        if self.workers:
            lines.append(f"  {'worker':<32} {'records':>8} {'leased':>7} {'rec/s':>7}  state")
        for w in self.workers:
            rate = w.rate()
            alive = w.last_seen is not None and self.now - w.last_seen < ALIVE_S
            lines.append(
                f"  {w.name:<32} {w.records:>8} {w.leased:>7} {'-' if rate is None else f'{rate:.1f}':>7}  "
                f"{'alive' if alive else 'gone'}"
            )
        return "\n".join(lines)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(text_of(value))
    except ValueError:
        return None


def _names(mapping: dict[Any, Any]) -> dict[str, Any]:
    return {text_of(k): v for k, v in mapping.items()}


def job_status(client: redis.Redis, job: str) -> JobStatus:
    """The figures of ``job`` now."""
    keys = JobKeys(job)
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.exists(keys.stream)
    pipe.xlen(keys.stream)
    pipe.hgetall(keys.stats)
    pipe.hgetall(keys.worker_records)
    pipe.hgetall(keys.worker_started)
    pipe.hgetall(keys.worker_last)
    pipe.hgetall(keys.worker_seen)
    (seconds, micros), exists, length, stats, records, started, last, seen = pipe.execute()
    leased_by: dict[str, int] = {}
    leased = 0
    if exists:
        try:
            summary: Any = client.xpending(keys.stream, GROUP)
        except Exception as exc:  # redis.ResponseError: a stream without the group (never read)
            if "NOGROUP" not in str(exc):
                raise
        else:
            leased = int(summary.get("pending") or 0)
            for consumer in summary.get("consumers") or ():
                name = consumer["name"]
                leased_by[text_of(name)] = int(consumer["pending"])
    stats, records, started, last, seen = (_names(m) for m in (stats, records, started, last, seen))
    names = sorted(set(records) | set(started) | set(leased_by))
    workers = [
        WorkerStatus(
            name=name,
            records=int(_num(records.get(name)) or 0),
            leased=leased_by.get(name, 0),
            started=_num(started.get(name)),
            last_write=_num(last.get(name)),
            last_seen=_num(seen.get(name)),
        )
        for name in names
    ]
    return JobStatus(
        job=job,
        now=float(seconds) + float(micros) / 1e6,
        queued=int(length) - leased,
        leased=leased,
        enqueued=int(_num(stats.get("enqueued")) or 0),
        duplicates=int(_num(stats.get("duplicates")) or 0),
        done=int(_num(stats.get("done")) or 0),
        failed=int(_num(stats.get("failed")) or 0),
        dead_lettered=int(_num(stats.get("dead_lettered")) or 0),
        workers=workers,
    )
