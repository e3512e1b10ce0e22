"""Many workers, one crawl: the job's queue and per-site politeness in Redis, records upserted into PostgreSQL.

:class:`WorkQueue` (``queue.py``) delivers each input URL at least once and reclaims a dead worker's URLs;
:class:`QueueFeed` (``feed.py``) is a worker's input stream over it; :class:`RedisSiteGate` (``gate.py``) makes the
frontiers of all workers together as polite to each site as one; ``status.py`` reports on a job.
``docs/distributed.md`` says how to run it and what each guarantee rests on.
"""

from __future__ import annotations

from enrich.distributed.feed import QueueFeed, join_job
from enrich.distributed.gate import RedisSiteGate
from enrich.distributed.queue import Delivery, JobKeys, WorkQueue, fingerprint, worker_name
from enrich.distributed.status import JobStatus, job_status

__all__ = [
    "Delivery",
    "JobKeys",
    "JobStatus",
    "QueueFeed",
    "RedisSiteGate",
    "WorkQueue",
    "fingerprint",
    "job_status",
    "join_job",
    "worker_name",
]
