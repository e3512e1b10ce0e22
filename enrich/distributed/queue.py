"""The job's work queue in Redis: input URLs delivered at least once to any number of workers, on any machines.

One Redis Stream per job holds the URLs not yet done, read by one consumer group (``workers``): a worker takes a
batch with ``XREADGROUP``; each URL it takes is *leased* to it (in the group's pending list) until its record is
committed to the sinks, and only then acknowledged and deleted (:meth:`WorkQueue.acknowledge`, one script for the
batch). So the stream holds exactly what is queued or leased, and the job is finished when it is empty.

* **Leases** are renewed by the holder every third of ``lease_timeout_s`` (``XCLAIM ... JUSTID``: the idle time
  resets, the delivery count does not grow). A worker that dies stops renewing; after ``lease_timeout_s`` any other
  worker reclaims its URLs (``XPENDING IDLE`` + ``XCLAIM``, atomically in a script).
* **Dead letters**: a URL delivered ``max_deliveries`` times whose holders all died is not tried again. It becomes an
  error record (``DeadLetterError``) and goes to the job's dead-letter list.
* **De-duplication** is by URL fingerprint (BLAKE2b, 16 bytes) in one Redis set per job, checked by the enqueue
  script: a URL enqueued twice, by one process or two, is queued once.
* **A graceful stop** (SIGTERM, Ctrl-C) puts the URLs a worker holds but never started back at the end of the
  stream at once, instead of waiting for their leases to time out.

Every call is one round trip (Lua scripts for anything of more than one command). Redis's own clock (``TIME``) is
the only one used for what is shared, so workers on machines with skewed clocks agree.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enrich.errors import DeadLetterError, InvalidURLError
from enrich.urls import InputURL

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    import redis

    from enrich.errors import EnrichError
    from enrich.stages import WorkItem

__all__ = ["Delivery", "JobKeys", "WorkQueue", "fingerprint", "text_of", "worker_name"]

logger = logging.getLogger(__name__)

GROUP = "workers"
"""The consumer group every worker of a job reads through."""

ENQUEUE_BATCH = 1_000
"""URLs per enqueue script call."""

_ENQUEUE = """
local added = 0
for i = 1, #ARGV, 6 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'u', ARGV[i+1], 'l', ARGV[i+2], 'f', ARGV[i+3], 'p', ARGV[i+4], 'e', ARGV[i+5])
    added = added + 1
  end
end
redis.call('HINCRBY', KEYS[3], 'enqueued', added)
redis.call('HINCRBY', KEYS[3], 'duplicates', #ARGV / 6 - added)
return added
"""

_RECLAIM = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4])
local out = {}
for _, p in ipairs(pending) do
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], p[1])
  if #claimed > 0 and claimed[1] then
    table.insert(out, {claimed[1][1], claimed[1][2], p[4], p[2]})
  end
end
return out
"""

_RENEW = """
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], ARGV[2], t[1])
return lost
"""

_ACK = """
local counts = {d = 0, f = 0, x = 0}
for i = 3, #ARGV, 3 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    counts[ARGV[i + 1]] = counts[ARGV[i + 1]] + 1
    if ARGV[i + 1] == 'x' then redis.call('RPUSH', KEYS[3], ARGV[i + 2]) end
  end
end
redis.call('HINCRBY', KEYS[2], 'done', counts.d)
redis.call('HINCRBY', KEYS[2], 'failed', counts.f)
redis.call('HINCRBY', KEYS[2], 'dead_lettered', counts.x)
local total = counts.d + counts.f + counts.x
local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[4], ARGV[2], total)
redis.call('HSET', KEYS[5], ARGV[2], t[1] .. '.' .. string.format('%06d', t[2]))
return total
"""

_REQUEUE = """
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    if #entry == 1 then
      redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
      n = n + 1
    end
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
return n
"""


def fingerprint(url: str) -> bytes:
    """The de-duplication key of a URL: 16 bytes of BLAKE2b (a collision needs about 2^64 URLs)."""
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def worker_name() -> str:
    """A worker's default consumer name: host and process id, unique among the job's live workers."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class JobKeys:
    """The Redis keys of one job. All share the hash tag ``{job}``, so a Redis Cluster keeps a job on one node."""

    job: str

    def key(self, name: str) -> str:
        return f"webenrich:{{{self.job}}}:{name}"

    @property
    def stream(self) -> str:
        return self.key("queue")

    @property
    def seen(self) -> str:
        return self.key("seen")

    @property
    def stats(self) -> str:
        return self.key("stats")

    @property
    def dead(self) -> str:
        return self.key("dead")

    @property
    def worker_records(self) -> str:
        return self.key("worker-records")

    @property
    def worker_started(self) -> str:
        return self.key("worker-started")

    @property
    def worker_last(self) -> str:
        return self.key("worker-last")

    @property
    def worker_seen(self) -> str:
        return self.key("worker-seen")

    def site(self, site: str) -> str:
        return self.key(f"site:{site}")

    def site_leases(self, site: str) -> str:
        return self.key(f"site-leases:{site}")


@dataclass(slots=True)
class Delivery:
    """A URL leased to this worker: its stream entry id and the input entry rebuilt from it."""

    id: str
    entry: InputURL
    dead: bool = False
    """Delivered ``max_deliveries`` times to workers that died: it becomes an error record, not a fetch."""


def text_of(value: Any) -> str:
    """A Redis reply value as text (bytes decoded as UTF-8; undecodable bytes kept as surrogates)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _entry(fields: dict[str, str], *, error: EnrichError | None = None) -> InputURL:
    url = fields.get("u", "")
    message = fields.get("e") or ""
    if error is None and message:
        error = InvalidURLError(message, url=url)
    return InputURL(
        url=url,
        line=int(fields.get("l") or 0),
        fetch_url=(fields.get("f") or None) if error is None else None,
        priority=int(fields.get("p") or 0),
        error=error,
    )


class WorkQueue:
    """One job's queue, seen by one worker (or by the ``enqueue`` and ``status`` commands).

    Args:
        client: a ``redis.Redis`` client (``decode_responses`` off: URLs are bytes-safe).
        job: the job's name; its keys are :class:`JobKeys`.
        worker: this worker's consumer name (:func:`worker_name` by default).
        lease_timeout_s: a lease not renewed for this long is reclaimed by another worker. Renewal is automatic
            while the worker lives, so it bounds how long a dead worker's URLs wait, not how long a fetch may take.
        max_deliveries: deliveries to workers that died after which a URL is dead-lettered.
    """

    def __init__(
        self,
        client: redis.Redis,
        job: str,
        *,
        worker: str | None = None,
        lease_timeout_s: float = 300.0,
        max_deliveries: int = 3,
    ) -> None:
        if lease_timeout_s <= 0:
            raise ValueError("lease_timeout_s must be positive")
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.client = client
        self.keys = JobKeys(job)
        self.worker = worker or worker_name()
        self.lease_timeout_s = lease_timeout_s
        self.max_deliveries = max_deliveries
        self.held: dict[str, Delivery] = {}
        """URL → its delivery, for every URL leased to this worker and not yet acknowledged."""
        self.reclaimed = 0
        self.dead_lettered = 0
        self.lost = 0
        self._next_reclaim = 0.0
        self._next_renew = 0.0
        self._enqueue = client.register_script(_ENQUEUE)
        self._reclaim = client.register_script(_RECLAIM)
        self._renew = client.register_script(_RENEW)
        self._ack = client.register_script(_ACK)
        self._requeue = client.register_script(_REQUEUE)
        self._group_ready = False

    def ensure_group(self) -> None:
        """Create the stream and its consumer group if they do not exist yet."""
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except Exception as exc:  # redis.ResponseError; the group exists already
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # --- enqueue ---------------------------------------------------------------------------------------------

    def enqueue(self, entries: Iterable[InputURL], *, batch: int = ENQUEUE_BATCH) -> tuple[int, int]:
        """Queue every entry whose URL the job has not seen (an invalid one too: it becomes its error record).
        Streamed, ``batch`` URLs per script call. Returns (queued, duplicates skipped)."""
        self.ensure_group()
        added = total = 0
        for chunk in _chunks(entries, batch):
            args: list[Any] = []
            for entry in chunk:
                error = "" if entry.error is None else str(entry.error) or type(entry.error).__name__
                args += [fingerprint(entry.url), entry.url, entry.line, entry.fetch_url or "", entry.priority, error]
            added += int(self._enqueue(keys=[self.keys.seen, self.keys.stream, self.keys.stats], args=args))
            total += len(chunk)
        return added, total - added

    # --- taking work -----------------------------------------------------------------------------------------

    def register(self) -> None:
        """Note this worker's start (for its throughput in ``status``)."""
        self.ensure_group()
        now = self._server_time()
        self.client.hset(self.keys.worker_started, self.worker, f"{now:.6f}")
        self.client.hset(self.keys.worker_seen, self.worker, str(int(now)))

    def take(self, count: int) -> list[Delivery]:
        """Lease up to ``count`` URLs: first any whose holder died (at most every quarter lease timeout), then new
        ones. A URL whose holders died ``max_deliveries`` times comes back flagged :attr:`Delivery.dead`."""
        self.ensure_group()
        out: list[Delivery] = []
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.lease_timeout_s / 4
            out += self._take_reclaimed(count)
        if len(out) < count:
            reply: Any = self.client.xreadgroup(GROUP, self.worker, {self.keys.stream: ">"}, count=count - len(out))
            for _stream, messages in reply or ():
                for msg_id, fields in messages:
                    out.append(self._hold(text_of(msg_id), _decode(fields)))
        return out

    def _take_reclaimed(self, count: int) -> list[Delivery]:
        timeout_ms = int(self.lease_timeout_s * 1000)
        reply = self._reclaim(keys=[self.keys.stream], args=[GROUP, self.worker, timeout_ms, count])
        out = []
        for msg_id, flat, deliveries, holder in reply or ():
            fields = _decode(dict(zip(flat[::2], flat[1::2], strict=True)))
            self.reclaimed += 1
            dead = int(deliveries) >= self.max_deliveries
            logger.warning(
                "reclaimed %s from worker %s (lease expired; delivered %d times)%s",
                fields.get("u"),
                text_of(holder),
                int(deliveries),
                ": dead-lettered" if dead else "",
                extra={"url": fields.get("u")},
            )
            error: EnrichError | None = None
            if dead:
                self.dead_lettered += 1
                error = DeadLetterError(
                    f"dead-lettered: {int(deliveries)} workers died or stopped answering while they held this URL "
                    f"(max_deliveries {self.max_deliveries}); it is not fetched again",
                    url=fields.get("u", ""),
                )
            out.append(self._hold(text_of(msg_id), fields, error=error))
        return out

    def _hold(self, msg_id: str, fields: dict[str, str], *, error: EnrichError | None = None) -> Delivery:
        delivery = Delivery(msg_id, _entry(fields, error=error), dead=error is not None)
        self.held[delivery.entry.url] = delivery  # one id per URL: the enqueue script de-duplicates
        return delivery

    def renew_due(self) -> bool:
        return time.monotonic() >= self._next_renew

    def renew(self) -> None:
        """Reset the lease of every URL this worker holds (and note that it is alive); a URL another worker
        reclaimed meanwhile (this one was too slow to renew) is dropped from what it holds."""
        self._next_renew = time.monotonic() + self.lease_timeout_s / 3
        ids = {d.id: url for url, d in self.held.items()}
        for chunk in _chunks(list(ids), 1_000):
            lost = self._renew(keys=[self.keys.stream, self.keys.worker_seen], args=[GROUP, self.worker, *chunk])
            for msg_id in lost or ():
                url = ids.get(text_of(msg_id))
                if url is not None:
                    self.lost += 1
                    logger.warning("lease of %s lost to another worker (not renewed in time)", url)
        if not ids:
            self.client.hset(self.keys.worker_seen, self.worker, str(int(self._server_time())))

    def acknowledge(self, items: Sequence[WorkItem]) -> int:
        """The records of ``items`` are committed to the sinks: acknowledge and delete their URLs (one script call),
        counting each as done, failed (an error record) or dead-lettered. Returns how many were acknowledged."""
        args: list[Any] = [GROUP, self.worker]
        for item in items:
            delivery = self.held.pop(item.record.url, None)
            if delivery is None:
                continue
            kind = "x" if delivery.dead else ("f" if item.record.error is not None else "d")
            args += [delivery.id, kind, item.record.url]
        if len(args) == 2:
            return 0
        keys = [self.keys.stream, self.keys.stats, self.keys.dead, self.keys.worker_records, self.keys.worker_last]
        return int(self._ack(keys=keys, args=args))

    def release_unstarted(self) -> int:
        """Put every URL still held back at the end of the queue for other workers (a graceful stop: these were
        never started). Returns how many."""
        ids = [d.id for d in self.held.values()]
        self.held.clear()
        n = 0
        for chunk in _chunks(ids, 1_000):
            n += int(self._requeue(keys=[self.keys.stream], args=[GROUP, self.worker, *chunk]))
        if n:
            logger.info("%d URLs not started put back in the queue for other workers", n)
        return n

    # --- the job's state -------------------------------------------------------------------------------------

    def remaining(self) -> int:
        """URLs queued or leased (to any worker): the stream's length (acknowledged URLs are deleted)."""
        length: Any = self.client.xlen(self.keys.stream)
        return int(length)

    def finished_elsewhere(self) -> bool:
        """Whether nothing is queued and no other worker holds anything: what is left, if anything, is ours."""
        return self.remaining() <= len(self.held)

    def _server_time(self) -> float:
        reply: Any = self.client.time()
        seconds, micros = reply
        return float(seconds) + float(micros) / 1e6


def _decode(fields: dict[Any, Any]) -> dict[str, str]:
    return {text_of(k): text_of(v) for k, v in fields.items()}


def _chunks(values: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(values)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
