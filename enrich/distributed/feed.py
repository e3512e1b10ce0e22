"""A worker's input: URLs leased from the job's :class:`~enrich.distributed.queue.WorkQueue`, as an engine reads a file.

Both engines read their input as a stream of :class:`~enrich.urls.InputURL` entries; :meth:`QueueFeed.entries` is
that stream for a worker. It takes URLs in small batches only when the engine asks for more (the frontier's
look-ahead bound paces it), so the job's URLs spread over its workers instead of piling up in the first one. While
nothing is queued it polls; it ends when the job has nothing queued and no other worker holds anything (with
``wait``, never: the worker stays for new work). :meth:`QueueFeed.run` renews the worker's leases meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from enrich.distributed.gate import RedisSiteGate
from enrich.distributed.queue import WorkQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    import redis

    from enrich.config import EnrichConfig
    from enrich.stages import WorkItem
    from enrich.urls import InputURL

__all__ = ["PERMIT_MARGIN_S", "QueueFeed", "join_job"]

logger = logging.getLogger(__name__)

POLL_S = 0.5
"""Time between two looks at an empty queue."""

MAX_BATCH = 50
"""URLs taken from the queue per call at most (fewer when the worker reads ahead fewer)."""

PERMIT_MARGIN_S = 10.0
"""A site permit outlives the fetch timeout by this much before a dead worker's place is freed."""


class QueueFeed:
    """Feeds a worker from the job's queue and acknowledges what it writes.

    Args:
        queue: the job's queue, as this worker sees it.
        batch: URLs taken per call to Redis.
        wait: keep polling when the job is finished (for work enqueued later) instead of ending.
        poll_s: time between two looks at an empty queue.
    """

    def __init__(self, queue: WorkQueue, *, batch: int = 50, wait: bool = False, poll_s: float = POLL_S) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.queue = queue
        self.batch = batch
        self.wait = wait
        self.poll_s = poll_s
        self.taken = 0
        self.acknowledged = 0
        self.requeued = 0
        self._stopped = asyncio.Event()

    async def entries(self) -> AsyncIterator[InputURL]:
        """The URLs leased to this worker, as the engine asks for them (see the module docstring)."""
        while not self._stopped.is_set():
            deliveries = self.queue.take(self.batch)
            if deliveries:
                self.taken += len(deliveries)
                for delivery in deliveries:
                    yield delivery.entry
                continue
            if not self.wait and self.queue.finished_elsewhere():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.poll_s)

    async def acknowledge(self, items: Sequence[WorkItem]) -> None:
        """The sink stage's ``on_written``: these records are committed; their URLs leave the queue."""
        self.acknowledged += self.queue.acknowledge(items)

    async def renew_leases(self) -> None:
        """Renew this worker's leases every third of the lease timeout, until cancelled."""
        while True:
            self.queue.renew()
            await asyncio.sleep(self.queue.lease_timeout_s / 3)

    def stop(self) -> None:
        """Take nothing more (a graceful stop)."""
        self._stopped.set()

    def close(self) -> None:
        """The run is over: what is still held was never started; give it back to the queue at once."""
        self.requeued += self.queue.release_unstarted()

    def stats(self) -> dict[str, int]:
        """What this worker took, acknowledged, gave back, reclaimed from dead workers, dead-lettered, lost."""
        return {
            "taken": self.taken,
            "acknowledged": self.acknowledged,
            "requeued": self.requeued,
            "reclaimed": self.queue.reclaimed,
            "dead_lettered": self.queue.dead_lettered,
            "leases_lost": self.queue.lost,
        }


def join_job(
    client: redis.Redis,
    job: str,
    config: EnrichConfig,
    *,
    worker: str,
    lease_timeout_s: float,
    max_deliveries: int,
    wait: bool,
) -> tuple[QueueFeed, RedisSiteGate]:
    """A worker's input from the job's queue and its site gate: what a worker of either engine is built from."""
    queue = WorkQueue(client, job, worker=worker, lease_timeout_s=lease_timeout_s, max_deliveries=max_deliveries)
    feed = QueueFeed(queue, batch=min(MAX_BATCH, config.frontier.max_pending), wait=wait)
    gate = RedisSiteGate(client, job, worker=worker, permit_ttl_s=config.fetch.timeout_s + PERMIT_MARGIN_S)
    return feed, gate
