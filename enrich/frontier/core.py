"""The frontier: the one place that decides which request is fetched next, for both engines.

Requests wait in per-site queues (:mod:`enrich.frontier.storage`). A site is *ready* when its
:class:`~enrich.frontier.sites.SitePolicy` lets one more request start now (in-flight cap, ``Crawl-delay``,
backoff, circuit); the frontier hands out the best head among ready sites (highest priority, then oldest) and
never makes anyone sleep holding a slot: a site that must wait simply is not ready, and the others go on.

How an engine drives it::

    await frontier.put(url, payload, priority=p)     # from the input; waits while the look-ahead bound is full
    frontier.close_input()                           # the input is over
    lease = await frontier.next()                    # the asyncio engine; Scrapy's scheduler calls poll()
    if lease.refusal: write an error record; frontier.release(lease)
    ... one attempt (one HTTP request, no redirects followed) ...
    frontier.release(lease, outcome, ttfb_s=..., status=..., retry_after=...)
    frontier.push(hop_url, payload)                  # a redirect hop: a new request for its target site
    frontier.push(url, payload, not_before=t)        # a retry: back in the queue, no slot held meanwhile

**Look-ahead.** :meth:`Frontier.put` lets a few entries be queued ahead (``min_pending``); beyond that it waits
while some queued request may start now, and reads on while none may (every site at hand waits for its
``Crawl-delay``, backoff or cap), up to ``max_pending`` entries (or ``max_pending_bytes``). So a healthy crawl
holds little, and a few slow or delayed sites make the reader go on to find other sites instead of starving the
rest. Retries and redirect hops (:meth:`Frontier.push`) never wait: they are bounded by the requests in flight.
Memory therefore stays flat whatever the input's length.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from enrich.frontier.sites import Outcome, SitePolicy, SiteState, domain_of
from enrich.frontier.spill import SpillStore
from enrich.frontier.storage import FrontierEntry, MemoryStorage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from enrich.config import EnrichConfig
    from enrich.frontier.spill import SpillCodec
    from enrich.frontier.storage import FrontierStorage

__all__ = ["MAX_PENDING", "MAX_PENDING_BYTES", "Frontier", "Lease", "SiteGate"]

T = TypeVar("T")

MAX_PENDING = 50_000
"""Queued requests before :meth:`Frontier.put` waits, whatever happens. A queued request of the async engine costs
about 1.6 KB (tracemalloc, 20,000 queued), so :data:`MAX_PENDING_BYTES` binds a little before this."""

MAX_SITE_PENDING = 1_000
"""Queued requests kept in memory per site when a spill store is given; the site's further input goes to disk."""

MAX_SPILLED = 10_000_000
"""Requests spilled to disk at most (about 1 GB); past this the reader waits like without a spill store."""

MAX_PROBE = 1_000_000
"""Default of ``max_probe``: a million URLs of one site in a row (about 100 MB of spill file) are searched past."""

MIN_PENDING = 1_000
"""Queued requests always read ahead: enough for every site at hand to have a few, few enough to cost nothing."""

READ_AHEAD_PER_REQUEST = 4
"""With a higher ``fetch.max_concurrency``, at least this many queued requests per request in flight."""

MAX_PENDING_BYTES = 64 * 1024 * 1024
"""Bytes of queued URLs and payloads (as estimated by the caller) before :meth:`Frontier.put` waits."""

MAX_IDLE_SITES = 10_000
"""Site states kept once their queues are empty; beyond this, idle ones are dropped (oldest first)."""

MAX_STATS_SITES = 1_000
"""Sites with their own line in :meth:`Frontier.stats`."""

ENTRY_OVERHEAD_BYTES = 400
"""What a queued entry costs beside its URL (objects, heap slot), for the bytes bound."""


class SiteGate(Protocol):
    """Per-site permits shared with other processes (:class:`enrich.distributed.RedisSiteGate`): asked before a
    request starts, so that many workers together are as polite to a site as one."""

    def acquire(self, site: str, *, cap: int, spacing_s: float) -> tuple[str | None, float, str | None]:
        """A permit token; or ``None`` and the seconds to wait before asking again; or ``None`` and a refusal
        (the site's circuit is open for the whole job: its requests are refused, not fetched)."""
        ...

    def stamp(self, site: str, token: str, *, spacing_s: float) -> None:
        """The permitted request goes on the wire now: no other starts on the site for ``spacing_s``."""
        ...

    def release(self, site: str, token: str, *, rest_s: float, open_s: float = 0.0, reason: str = "") -> None:
        """The permit's attempt is over; the site must rest ``rest_s`` (a backoff) for everyone; with ``open_s``,
        its circuit is open for everyone that long (``reason`` says why)."""
        ...


@dataclass(slots=True)
class Lease(Generic[T]):
    """A request handed out by the frontier: the engine fetches it (or writes its refusal) and then releases it.

    Attributes:
        site: the site key (:func:`~enrich.frontier.sites.domain_of` of the URL).
        url: the URL of this request (a redirect hop's target, for a hop).
        payload: what the engine queued with it.
        refusal: set when the site's circuit is open: do not fetch, write this as the error (no slot is held).
        waited_s: seconds the request spent queued in the frontier.
    """

    site: str
    url: str
    payload: T
    priority: int
    refusal: str | None = None
    waited_s: float = 0.0
    released: bool = False
    permit: str | None = None
    """The :class:`SiteGate` permit this attempt holds, if the frontier has a gate."""


class Frontier(Generic[T]):
    """Per-site queues with their own next-allowed time and in-flight cap; hands out the best ready request.

    Args:
        policy: per-site decisions (caps, Crawl-delay, backoff, congestion, circuit).
        storage: where queued entries live; default :class:`MemoryStorage`.
        max_pending: queued entries before :meth:`put` waits, whatever happens.
        max_pending_bytes: queued bytes before :meth:`put` waits, whatever happens.
        min_pending: queued entries :meth:`put` always allows; beyond them it waits while some request is ready
            (:meth:`wants_input`).
        spill: where input beyond ``max_site_pending`` queued for one site goes (on disk), so that reading ahead
            past a long run of one slow site's URLs costs no memory; ``None`` keeps everything in memory (and the
            reader waits at ``max_pending``).
        max_site_pending: entries of one site kept in memory while its further input is spilled.
        max_probe: entries read ahead in a row while nothing may start, none of them of a new site, before the
            search gives up (until a new site turns up or memory has room).
        max_idle_sites: site states kept once idle.
        gate: permits shared with other workers, asked before each request starts (``None``: this process
            alone decides).
    """

    def __init__(
        self,
        *,
        policy: SitePolicy,
        storage: FrontierStorage[T] | None = None,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        min_pending: int = MIN_PENDING,
        max_idle_sites: int = MAX_IDLE_SITES,
        spill: SpillStore[T] | None = None,
        max_site_pending: int = MAX_SITE_PENDING,
        max_probe: int = MAX_PROBE,
        gate: SiteGate | None = None,
    ) -> None:
        if max_pending < 1 or max_pending_bytes < 1:
            raise ValueError("max_pending and max_pending_bytes must be at least 1")
        self.policy = policy
        self.storage: FrontierStorage[T] = storage if storage is not None else MemoryStorage()
        self.gate = gate
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.min_pending = min(min_pending, max_pending)
        self.spill = spill
        self.max_site_pending = max(2, max_site_pending)
        self.max_probe = max_probe
        """Entries read ahead in a row, while nothing could start, without finding a new site, before giving up."""
        self._probe = 0
        self._looking_ahead = False
        self.max_idle_sites = max_idle_sites
        self._clock: Callable[[], float] = policy.clock
        self._sites: dict[str, SiteState] = {}
        self._ready: list[tuple[tuple[int, int], str, int]] = []
        """Sites that may start a request now, by their head's order: ``(sort key, site, token)``."""
        self._timed: list[tuple[float, str, int]] = []
        """Sites whose next request waits for a time (Crawl-delay, backoff): ``(ready at, site, token)``."""
        self._tokens: dict[str, int] = {}
        """The current token of each site; heap entries with an older one are stale."""
        self._delayed: list[tuple[float, int, str, FrontierEntry[T]]] = []
        """Entries not to start before a time (retries): ``(not before, seq, site, entry)``."""
        self._seq = 0
        self._pending_bytes = 0
        self._in_flight = 0
        self._input_open = True
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.counts: Counter[str] = Counter()
        """``added``, ``pushed`` (retries and hops), ``started``, ``refused``, ``drained``, ``spilled``."""
        self.peak_pending = 0
        self.peak_in_memory = 0
        """The most entries queued in memory at once (spilled ones not counted)."""

    @classmethod
    def from_config(
        cls,
        config: EnrichConfig,
        *,
        storage: FrontierStorage[T] | None = None,
        spill_codec: SpillCodec[T] | None = None,
        clock: Callable[[], float] = time.monotonic,
        gate: SiteGate | None = None,
    ) -> Frontier[T]:
        """The frontier of a run; with ``spill_codec``, input read ahead past ``frontier.max_site_pending`` queued
        URLs of one site is spilled to a temporary file (:mod:`enrich.frontier.spill`)."""
        return cls(
            spill=SpillStore(spill_codec) if spill_codec is not None else None,
            max_site_pending=config.frontier.max_site_pending,
            max_probe=config.frontier.max_lookahead,
            policy=SitePolicy.from_config(config, clock=clock),
            storage=storage,
            max_pending=config.frontier.max_pending,
            max_pending_bytes=config.frontier.max_pending_mb * 1024 * 1024,
            min_pending=max(MIN_PENDING, READ_AHEAD_PER_REQUEST * config.fetch.max_concurrency),
            gate=gate,
        )

    def clock(self) -> float:
        """The frontier's clock (monotonic seconds): ``not_before`` times are on it."""
        return self._clock()

    # --- size ------------------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests queued (delayed retries and spilled input included), not in flight."""
        return len(self.storage) + len(self._delayed) + (len(self.spill) if self.spill is not None else 0)

    @property
    def in_flight(self) -> int:
        """Requests handed out and not released."""
        return self._in_flight

    @property
    def finished(self) -> bool:
        """The input is over, nothing is queued and nothing is in flight."""
        return not self._input_open and self.pending == 0 and self._in_flight == 0

    def has_room(self) -> bool:
        """Whether the look-ahead bound (``max_pending`` entries, ``max_pending_bytes``) has room for one more."""
        return len(self.storage) < self.max_pending and self._pending_bytes < self.max_pending_bytes

    def wants_input(self) -> bool:
        """Whether the input should be read further now.

        Up to ``min_pending`` queued entries, always (within the bound); beyond that only while no queued request
        may start now: every site at hand waits (``Crawl-delay``, backoff, cap), so reading further is the only
        way to find work. A healthy crawl thus holds few entries, and a stalled one reads ahead to the bound. Such a
        search gives up after ``max_probe`` entries in a row that found no new site (a one-site list would
        otherwise be read to its end into the spill file while its site is at its cap).
        """
        self._looking_ahead = False
        if not self._input_open:
            return True  # nothing more will be read: let any waiter go
        if self.has_room() and len(self.storage) < self.min_pending:
            return True
        if self._ready_now() or self._probe >= self.max_probe:
            return False
        self._looking_ahead = self.has_room() or (self.spill is not None and len(self.spill) < MAX_SPILLED)
        return self._looking_ahead

    def _ready_now(self) -> bool:
        self._promote(self._clock())
        while self._ready and self._tokens.get(self._ready[0][1]) != self._ready[0][2]:
            heapq.heappop(self._ready)  # stale
        return bool(self._ready)

    # --- adding ----------------------------------------------------------------------------------------------

    async def put(self, url: str, payload: T, *, priority: int = 0, size: int = 0) -> None:
        """Queue a request read from the input, waiting while the look-ahead bound is full."""
        await self.wait_for_room()
        self.add(url, payload, priority=priority, size=size)

    def add(self, url: str, payload: T, *, priority: int = 0, size: int = 0) -> None:
        """Queue a request read from the input without waiting: for callers that cannot await and check
        :meth:`has_room` (or :meth:`wait_for_room`) first, such as Scrapy's scheduler."""
        self._add(url, payload, priority=priority, size=size, from_input=True, not_before=0.0)

    async def wait_for_room(self) -> None:
        """Wait until the input should be read further (:meth:`wants_input`)."""
        while not self.wants_input():
            self._room.clear()
            await self._room.wait()

    def push(self, url: str, payload: T, *, priority: int = 0, size: int = 0, not_before: float = 0.0) -> None:
        """Queue a retry (``not_before``: the clock time it may start) or a redirect hop; never waits."""
        self.counts["pushed"] += 1
        self._add(url, payload, priority=priority, size=size, from_input=False, not_before=not_before)

    def _add(self, url: str, payload: T, *, priority: int, size: int, from_input: bool, not_before: float) -> None:
        self._seq += 1
        entry = FrontierEntry(
            url=url,
            payload=payload,
            priority=priority,
            seq=self._seq,
            size=size + len(url) + ENTRY_OVERHEAD_BYTES,
            from_input=from_input,
        )
        site = domain_of(url)
        if from_input:
            state = self._sites.get(site)
            known = (
                self.storage.count(site) > 0
                or (state is not None and state.in_flight > 0)
                or (self.spill is not None and self.spill.count(site) > 0)
            )
            if not known:
                self._probe = 0  # a new site: looking ahead pays, go on
            elif self._looking_ahead:
                self._probe += 1
        if from_input and self._spills(site):
            assert self.spill is not None
            self.spill.push(site, entry)
            self.counts["added"] += 1
            self.counts["spilled"] += 1
            self.peak_pending = max(self.peak_pending, self.pending)
            return
        self._pending_bytes += entry.size
        entry.queued_at = self._clock()
        if from_input:
            self.counts["added"] += 1
        if not_before > self._clock():
            heapq.heappush(self._delayed, (not_before, entry.seq, site, entry))
        else:
            self._enqueue(site, entry)
        self.peak_pending = max(self.peak_pending, self.pending)
        self.peak_in_memory = max(self.peak_in_memory, len(self.storage))
        self._changed.set()

    def _spills(self, site: str) -> bool:
        """Whether an input entry of ``site`` goes to disk: the site has its share in memory already (or earlier
        entries on disk, which must come back first), or memory is full and the site has something queued."""
        if self.spill is None:
            return False
        queued = self.storage.count(site)
        return queued >= self.max_site_pending or self.spill.count(site) > 0 or (queued > 0 and not self.has_room())

    def _refill(self, site: str) -> None:
        """Bring a site's spilled entries back, oldest first, once its queue in memory is half drained."""
        if self.spill is None or not self.spill.count(site) or self.storage.count(site) >= self.max_site_pending // 2:
            return
        now = self._clock()
        for entry in self.spill.pop(site, self.max_site_pending // 2):
            self._pending_bytes += entry.size
            entry.queued_at = now
            self.storage.push(site, entry)

    def _enqueue(self, site: str, entry: FrontierEntry[T]) -> None:
        self.storage.push(site, entry)
        self._state(site)
        self._schedule(site)

    def close_input(self) -> None:
        """No more input: :meth:`next` returns ``None`` once everything queued has been released."""
        self._input_open = False
        self._changed.set()
        self._room.set()

    # --- sites -----------------------------------------------------------------------------------------------

    def _state(self, site: str) -> SiteState:
        state = self._sites.get(site)
        if state is None:
            if len(self._sites) >= 2 * self.max_idle_sites:
                self._sweep()
            state = self._sites[site] = self.policy.new_state(site)
        return state

    def site(self, site: str) -> SiteState:
        """The state of ``site`` (created if new), for engines that report rules and for tests."""
        return self._state(domain_of(site))

    def _sweep(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sites.items() if self.storage.count(k) == 0 and self.policy.idle(s, now)]:
            if len(self._sites) <= self.max_idle_sites:
                break
            del self._sites[key]
            self._tokens.pop(key, None)

    def _schedule(self, site: str, now: float | None = None) -> None:
        """Put ``site`` in the heap its state calls for (ready now, ready at a time, or none: capped or empty).

        ``now``: the time the caller decided by (:meth:`poll` passes its own, so that a site it found not ready
        yet goes to the timed heap, never back to the ready heap it is looping over).
        """
        head = self.storage.head(site)
        if head is None:
            return
        state = self._sites[site]
        token = self._tokens.get(site, 0) + 1
        self._tokens[site] = token
        if state.in_flight >= self.policy.cap(state) or (state.circuit != "closed" and state.trial):
            return  # capped: rescheduled when one of its requests is released
        ready_at = self.policy.ready_at(state)
        now = self._clock() if now is None else now
        if ready_at > now and self.policy.refusal(state, now) is None:
            heapq.heappush(self._timed, (ready_at, site, token))
        else:
            heapq.heappush(self._ready, (head.sort_key, site, token))

    def set_rules(self, url: str, crawl_delay: float | None) -> bool:
        """The robots.txt of the site of ``url`` is known: its ``Crawl-delay`` (``None`` for none) applies.

        Returns whether that changed anything (the site was new to its rules, or its delay changed): engines call
        this before every request, and only a change may make more of the site's requests ready.
        """
        site = domain_of(url)
        state = self._state(site)
        if state.known and crawl_delay == state.crawl_delay:
            return False
        self.policy.set_rules(state, crawl_delay, self._clock())
        self._schedule(site)
        self._changed.set()
        return True

    # --- taking ----------------------------------------------------------------------------------------------

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, site, entry = heapq.heappop(self._delayed)
            self._enqueue(site, entry)
        while self._timed and self._timed[0][0] <= now:
            _, site, token = heapq.heappop(self._timed)
            if self._tokens.get(site) == token:
                self._schedule(site)

    def poll(self) -> Lease[T] | None:
        """The best request that may start now, or ``None`` (see :meth:`wait_s` for how long until one may)."""
        now = self._clock()
        self._promote(now)
        while self._ready:
            _, site, token = heapq.heappop(self._ready)
            if self._tokens.get(site) != token:
                continue
            state = self._sites[site]
            entry = self.storage.pop(site)
            if entry is None:
                continue
            self._refill(site)
            self._forget(entry)
            waited = now - entry.queued_at
            refusal = self.policy.refusal(state, now)
            if refusal is not None:
                return self._refused(site, entry, refusal, waited, now)
            if not self.policy.can_start(state, now):  # the heap entry was right when pushed; check again
                self._put_back(site, entry, now)
                continue
            permit = None
            if self.gate is not None:
                cap = self.policy.cap(state) if state.known else 0  # robots.txt not read here yet: the job's cap
                spacing = max(state.min_interval, state.pace)
                permit, wait, shared_refusal = self.gate.acquire(site, cap=cap, spacing_s=spacing)
                if shared_refusal is not None:  # another worker's circuit for this site is open: refuse too
                    return self._refused(site, entry, shared_refusal, waited, now)
                if permit is None:  # another worker's turn on this site: not ready until then, nothing held
                    self.counts["gate_waits"] += 1
                    state.not_before = max(state.not_before, now + wait)
                    self._put_back(site, entry, now)
                    continue
            self.policy.start(state, now)
            self._in_flight += 1
            self.counts["started"] += 1
            self._schedule(site, now)
            return Lease(site, entry.url, entry.payload, entry.priority, None, waited, permit=permit)
        self._room.set()  # nothing may start now: the reader may have to look further ahead
        return None

    def _refused(self, site: str, entry: FrontierEntry[T], refusal: str, waited: float, now: float) -> Lease[T]:
        """A lease that holds nothing and carries why the site's requests are refused (an open circuit)."""
        self.counts["refused"] += 1
        self._schedule(site, now)
        return Lease(site, entry.url, entry.payload, entry.priority, refusal, waited, released=True)

    def _put_back(self, site: str, entry: FrontierEntry[T], now: float) -> None:
        """Return a popped entry to its site's queue; the site is scheduled by the same clock reading (to the timed
        heap, not back into the poll's loop)."""
        self.storage.push(site, entry)
        self._pending_bytes += entry.size
        self._schedule(site, now)

    def _forget(self, entry: FrontierEntry[T]) -> None:
        self._pending_bytes -= entry.size
        if not self._room.is_set() and self.has_room():
            self._room.set()  # the waiter checks wants_input() again

    def wait_s(self) -> float | None:
        """Seconds until a queued request may become ready by time alone; ``None`` if none waits on time."""
        while self._timed and self._tokens.get(self._timed[0][1]) != self._timed[0][2]:
            heapq.heappop(self._timed)  # stale
        times = [heap[0][0] for heap in (self._timed, self._delayed) if heap]
        return max(0.0, min(times) - self._clock()) if times else None

    async def next(self) -> Lease[T] | None:
        """Wait for the best request that may start, and hand it out; ``None`` once :attr:`finished`."""
        while True:
            lease = self.poll()
            if lease is not None:
                return lease
            if self.finished:
                return None
            self._changed.clear()
            wait = self.wait_s()
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass

    # --- releasing -------------------------------------------------------------------------------------------

    def release(
        self,
        lease: Lease[T],
        outcome: Outcome | None = None,
        *,
        ttfb_s: float | None = None,
        status: int | None = None,
        retry_after: str | None = None,
        reason: str = "",
    ) -> None:
        """The attempt of ``lease`` is over: free its place and learn from its outcome (``None``: no attempt was
        made, e.g. robots.txt refused it). Releasing twice is harmless."""
        if lease.released:
            return
        lease.released = True
        self._in_flight -= 1
        state = self._state(lease.site)
        self.policy.finish(state)
        if outcome is not None:
            self.policy.report(state, outcome, ttfb_s=ttfb_s, status=status, retry_after=retry_after, reason=reason)
        elif state.circuit == "half-open" and state.trial:
            state.trial = False  # a trial that made no attempt proves nothing: let another one through
            state.circuit = "open"
            state.opened_at = self._clock() - self.policy.circuit_cooldown_s
        if self.gate is not None and lease.permit is not None:
            now = self._clock()
            refusal = self.policy.refusal(state, now)
            open_s = state.opened_at + self.policy.circuit_cooldown_s - now if refusal is not None else 0.0
            self.gate.release(lease.site, lease.permit, rest_s=self._rest_s(state), open_s=open_s, reason=refusal or "")
        self._schedule(lease.site)
        self._changed.set()

    def starting(self, lease: Lease[T]) -> None:
        """The request of ``lease`` goes on the wire now (its checks are done): with a gate, the site's spacing
        counts from now for every worker (:meth:`SiteGate.stamp`)."""
        if self.gate is None or lease.permit is None:
            return
        state = self._sites.get(lease.site)
        spacing = max(state.min_interval, state.pace) if state is not None else 0.0
        self.gate.stamp(lease.site, lease.permit, spacing_s=spacing)  # 0: the spacing another worker gave

    def _rest_s(self, state: SiteState) -> float:
        """How long this process's policy keeps the site from starting another request (a backoff, a learnt pace),
        for the other workers through the gate."""
        # the spacing counts from this worker's last start, with the Crawl-delay known now (robots.txt may have
        # arrived during the request, after the permit was given with no spacing)
        spaced = state.last_start + max(state.min_interval, state.pace)
        return max(0.0, max(self.policy.ready_at(state), spaced) - self._clock())

    # --- ending ----------------------------------------------------------------------------------------------

    def drain(self) -> Iterator[T]:
        """Remove and yield the payload of every queued request (delayed retries included), e.g. on stop."""
        delayed, self._delayed = self._delayed, []
        for entry in [*self.storage.drain(), *(item[3] for item in sorted(delayed))]:
            self.counts["drained"] += 1
            self._forget(entry)
            yield entry.payload
        if self.spill is not None:
            for payload in self.spill.drain():
                self.counts["drained"] += 1
                yield payload
        self._ready.clear()
        self._timed.clear()
        self._changed.set()

    def close(self) -> None:
        """Delete the spill file, if any (at the end of a run)."""
        if self.spill is not None:
            self.spill.close()
            self.spill = None

    def circuit(self, site: str) -> str:
        """The circuit state of ``site`` (a URL or host): ``closed``, ``open`` or ``half-open``."""
        state = self._sites.get(domain_of(site))
        return "closed" if state is None else self.policy.circuit_state(state, self._clock())

    def stats(self) -> dict[str, object]:
        """Figures for the run summary: counts, peaks, and the sites that backed off, slowed down or failed
        (``per_site``: at most :data:`MAX_STATS_SITES` of them)."""
        sites = list(self._sites.values())
        eventful = [s for s in sites if s.backoffs or s.decreases or s.opens][:MAX_STATS_SITES]
        return {
            **self.counts,
            "peak_pending": self.peak_pending,
            "peak_in_memory": self.peak_in_memory,
            "sites": len(sites),
            "peak_in_flight_per_site": max((s.peak_in_flight for s in sites), default=0),
            "backoffs": sum(s.backoffs for s in sites),
            "cap_decreases": sum(s.decreases for s in sites),
            "circuit_opens": sum(s.opens for s in sites),
            "open_circuits": sorted(s.key for s in sites if s.circuit != "closed"),
            "per_site": {
                s.key: {"backoffs": s.backoffs, "cap_decreases": s.decreases, "circuit_opens": s.opens}
                for s in eventful
            },
        }
