"""Per-domain politeness and protection: a concurrency cap, backoff on 429/503, and a circuit breaker.

One :class:`DomainPolicy` serves a whole run, for either engine. It keeps a small state per domain (the host of
the URL, lower-cased; see :func:`domain_of`), created on first use and dropped again when the domain is idle and
many domains are tracked, so memory stays bounded on crawls of millions of hosts.

How an engine drives it, per attempt::

    domain = domain_of(url)
    if (reason := policy.check(domain)) is not None:      # cheap early refusal, no waiting, no state change
        write an error record: CircuitOpenError(reason)
    async with policy.slot(domain):                       # waits for a free slot, backoff and crawl delay;
        try:                                              # raises CircuitOpenError if the circuit opened meanwhile
            response = await fetch(url)
        except <transport error or timeout>:
            policy.on_failure(domain)
            raise
        policy.on_response(domain, response.status, response.headers.get("retry-after"))

Backoff: a 429 or 503 answer sets a "not before" time for that domain only: ``Retry-After`` (seconds or HTTP date)
when given, capped at ``fetch.retry_after_cap_s``; otherwise ``backoff_base_s x 2**(n-1)`` for the n-th backoff in
a row, capped at ``fetch.backoff_cap_s``. Any other answer resets the exponent.

Circuit breaker: ``politeness.circuit_failures`` consecutive failures (transport errors, timeouts, 5xx) open the
circuit; while open, the domain is refused without fetching. After ``politeness.circuit_cooldown_s`` it half-opens:
exactly one trial request is let through; its success closes the circuit, its failure opens it again for another
cooldown. A trial that never reports (its task was cancelled) frees the trial slot after one more cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from enrich.errors import CircuitOpenError
from enrich.policy.retry import parse_retry_after

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from enrich.config import FetchConfig, PolitenessConfig

__all__ = [
    "BACKOFF_STATUSES",
    "MAX_DOMAINS",
    "MAX_STATS_DOMAINS",
    "CircuitOpenError",
    "CircuitState",
    "DomainPolicy",
    "domain_of",
]

logger = logging.getLogger(__name__)

BACKOFF_STATUSES = frozenset({429, 503})
"""Answers that ask the client to slow down: the domain backs off (``Retry-After`` or exponential)."""

MAX_DOMAINS = 10_000
"""Domains whose state is kept before idle ones are dropped. A state is a few hundred bytes, so this is a few MB;
idle means nothing in flight or waiting, no backoff pending and the circuit closed, so dropping loses nothing but
a count of fewer than ``circuit_failures`` recent failures."""

MAX_STATS_DOMAINS = 1_000
"""Domains with their own line in :meth:`DomainPolicy.stats`; events on further domains count in the totals only."""

CircuitState = Literal["closed", "open", "half-open"]


def domain_of(url_or_host: str) -> str:
    """The key a URL's domain state is kept under: its host, lower-cased, without port, credentials or final dot.

    A bare host (``example.com``, ``127.0.0.2``) is accepted too. Subdomains are separate domains: simple, and right
    for the common case where each host is its own server.
    """
    text = url_or_host.strip()
    if "://" in text:
        try:
            host = urlsplit(text).hostname or ""
        except ValueError:
            host = ""
    else:
        host = text.rsplit("@", 1)[-1]
        if host.startswith("["):
            host = host[1 : host.find("]")] if "]" in host else host[1:]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
    return host.lower().rstrip(".")


@dataclass(slots=True)
class _Counts:
    refusals: int = 0
    opens: int = 0
    backoffs: int = 0


@dataclass(slots=True)
class _DomainState:
    semaphore: asyncio.Semaphore
    in_flight: int = 0
    waiting: int = 0
    not_before: float = 0.0
    """Clock time before which no request starts (backoff)."""
    backoff_streak: int = 0
    min_interval: float = 0.0
    """Seconds between two request starts (a robots.txt Crawl-delay)."""
    next_start: float = 0.0
    """Earliest start of the next request under ``min_interval``, already reserved by earlier requests."""
    failures: int = 0
    """Consecutive failures."""
    circuit: CircuitState = "closed"
    opened_at: float = 0.0
    trial_started: float | None = None


class DomainPolicy:
    """Per-domain concurrency cap, backoff and circuit breaker, shared by every request of a run.

    Args:
        concurrency: requests in flight per domain.
        circuit_failures: consecutive failures that open a domain's circuit.
        circuit_cooldown_s: how long an open circuit refuses before letting one trial through.
        retry_after_cap_s: largest ``Retry-After`` honoured.
        backoff_base_s: first backoff without ``Retry-After``; doubles on each backoff in a row.
        backoff_cap_s: largest backoff without ``Retry-After``.
        max_domains: domain states kept before idle ones are dropped.
        clock: monotonic time in seconds.
        wall_clock: Unix time, for ``Retry-After`` HTTP dates.
        sleep: how to wait (``asyncio.sleep``); tests inject one that advances a fake clock.
    """

    def __init__(
        self,
        *,
        concurrency: int = 8,
        circuit_failures: int = 5,
        circuit_cooldown_s: float = 30.0,
        retry_after_cap_s: float = 60.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        max_domains: int = MAX_DOMAINS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if circuit_failures < 1:
            raise ValueError(f"circuit_failures must be at least 1, got {circuit_failures}")
        if min(circuit_cooldown_s, retry_after_cap_s, backoff_base_s, backoff_cap_s) < 0:
            raise ValueError("cooldown, caps and backoff base must not be negative")
        if max_domains < 1:
            raise ValueError(f"max_domains must be at least 1, got {max_domains}")
        self.concurrency = concurrency
        self.circuit_failures = circuit_failures
        self.circuit_cooldown_s = circuit_cooldown_s
        self.retry_after_cap_s = retry_after_cap_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_domains = max_domains
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._states: OrderedDict[str, _DomainState] = OrderedDict()
        self._sweep_at = max_domains
        self._counts: dict[str, _Counts] = {}
        self._totals = _Counts()
        self.peak_in_flight = 0
        """Most requests in flight on any one domain at any time (for tests and the summary)."""
        self.dropped_states = 0

    @classmethod
    def from_config(
        cls,
        politeness: PolitenessConfig,
        fetch: FetchConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> DomainPolicy:
        return cls(
            concurrency=politeness.per_domain_concurrency,
            circuit_failures=politeness.circuit_failures,
            circuit_cooldown_s=politeness.circuit_cooldown_s,
            retry_after_cap_s=fetch.retry_after_cap_s,
            backoff_base_s=fetch.backoff_base_s,
            backoff_cap_s=fetch.backoff_cap_s,
            clock=clock,
            wall_clock=wall_clock,
            sleep=sleep,
        )

    # --- state -----------------------------------------------------------------------------------------------

    def _state(self, domain: str) -> _DomainState:
        state = self._states.get(domain)
        if state is None:
            if len(self._states) >= self._sweep_at:
                self._sweep()
            state = self._states[domain] = _DomainState(semaphore=asyncio.Semaphore(self.concurrency))
        else:
            self._states.move_to_end(domain)
        return state

    def _idle(self, state: _DomainState, now: float) -> bool:
        return (
            state.in_flight == 0
            and state.waiting == 0
            and state.circuit == "closed"
            and state.not_before <= now
            and state.next_start <= now
        )

    def _sweep(self) -> None:
        """Drop idle states, least recently used first, down to half of ``max_domains``."""
        now = self._clock()
        target = self.max_domains // 2
        for domain in list(self._states):
            if len(self._states) <= target:
                break
            if self._idle(self._states[domain], now):
                del self._states[domain]
                self.dropped_states += 1
        # When most domains are busy, sweeping again on the next insert would cost O(n) each time: wait until
        # the table has grown by as much again.
        self._sweep_at = max(self.max_domains, 2 * len(self._states))

    def _count(self, domain: str, kind: Literal["refusals", "opens", "backoffs"]) -> None:
        setattr(self._totals, kind, getattr(self._totals, kind) + 1)
        counts = self._counts.get(domain)
        if counts is None:
            if len(self._counts) >= MAX_STATS_DOMAINS:
                return
            counts = self._counts[domain] = _Counts()
        setattr(counts, kind, getattr(counts, kind) + 1)

    @property
    def tracked_domains(self) -> int:
        """Domains whose state is currently kept."""
        return len(self._states)

    def in_flight(self, domain: str) -> int:
        """Requests in flight on ``domain`` now."""
        state = self._states.get(domain)
        return state.in_flight if state is not None else 0

    def circuit_state(self, domain: str) -> CircuitState:
        """``closed``, ``open`` or ``half-open`` (an open circuit whose cooldown is over)."""
        state = self._states.get(domain)
        if state is None:
            return "closed"
        if state.circuit == "open" and self._clock() - state.opened_at >= self.circuit_cooldown_s:
            return "half-open"
        return state.circuit

    # --- circuit ---------------------------------------------------------------------------------------------

    def _refusal(self, domain: str, state: _DomainState, now: float) -> str | None:
        """Why a request to ``domain`` must not start now, without changing any state; ``None`` if it may."""
        if state.circuit == "closed":
            return None
        remaining = state.opened_at + self.circuit_cooldown_s - now
        if state.circuit == "open" and remaining > 0:
            return (
                f"circuit open for {domain} after {state.failures} consecutive failures; "
                f"retry after {math.ceil(remaining)} s"
            )
        if state.trial_started is not None and now - state.trial_started < self.circuit_cooldown_s:
            return f"circuit half-open for {domain}: a trial request is in flight"
        return None

    def check(self, domain: str) -> str | None:
        """A refusal reason if the circuit of ``domain`` is open (or half-open with its trial taken), else ``None``.

        Changes no state besides the refusal count: the half-open trial is claimed by :meth:`slot`, so an engine
        may call this early and still enter the slot afterwards.
        """
        state = self._states.get(domain)
        if state is None:
            return None
        reason = self._refusal(domain, state, self._clock())
        if reason is not None:
            self._count(domain, "refusals")
        return reason

    def _admit(self, domain: str, state: _DomainState, now: float) -> None:
        """Raise if refused; otherwise claim the half-open trial when the circuit is not closed."""
        reason = self._refusal(domain, state, now)
        if reason is not None:
            self._count(domain, "refusals")
            retry_in = max(0.0, state.opened_at + self.circuit_cooldown_s - now)
            raise CircuitOpenError(reason, domain=domain, retry_in_s=retry_in)
        if state.circuit != "closed":
            state.circuit = "half-open"
            state.trial_started = now
            logger.info("circuit half-open for %s: letting one trial request through", domain, extra={"domain": domain})

    def _open(self, domain: str, state: _DomainState, now: float) -> None:
        state.circuit = "open"
        state.opened_at = now
        state.trial_started = None
        self._count(domain, "opens")
        logger.warning(
            "circuit open for %s after %d consecutive failures; retry after %.0f s",
            domain,
            state.failures,
            self.circuit_cooldown_s,
            extra={"domain": domain},
        )

    def _success(self, domain: str, state: _DomainState) -> None:
        state.failures = 0
        if state.circuit != "closed":
            state.circuit = "closed"
            state.trial_started = None
            logger.info("circuit closed for %s: trial request succeeded", domain, extra={"domain": domain})

    def _failure(self, domain: str, state: _DomainState, now: float) -> None:
        state.failures += 1
        if state.circuit == "half-open" or (state.circuit == "closed" and state.failures >= self.circuit_failures):
            self._open(domain, state, now)

    # --- outcomes --------------------------------------------------------------------------------------------

    def on_response(self, domain: str, status: int, retry_after: str | None = None) -> None:
        """Report an answer from ``domain``.

        5xx counts as a failure for the circuit, anything else as a success. 429 and 503 also make the domain
        back off (see the module docstring).

        Args:
            domain: the key from :func:`domain_of`.
            status: the HTTP status.
            retry_after: the ``Retry-After`` header, if any.
        """
        state = self._state(domain)
        now = self._clock()
        if status >= 500:
            self._failure(domain, state, now)
        else:
            self._success(domain, state)
        if status in BACKOFF_STATUSES:
            self._backoff(domain, state, now, retry_after)
        else:
            state.backoff_streak = 0

    def on_failure(self, domain: str) -> None:
        """Report a transport failure (connection refused or reset, DNS failure, timeout) on ``domain``.

        Not for policy refusals, size caps or content errors: those say nothing about the host's health.
        """
        self._failure(domain, self._state(domain), self._clock())

    def _backoff(self, domain: str, state: _DomainState, now: float, retry_after: str | None) -> None:
        state.backoff_streak += 1
        honoured = parse_retry_after(retry_after, now=self._wall_clock())
        if honoured is not None:
            delay = min(honoured, self.retry_after_cap_s)
        else:
            delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (state.backoff_streak - 1))
        state.not_before = max(state.not_before, now + delay)
        self._count(domain, "backoffs")
        logger.info(
            "backing off %s for %.1f s (%s)",
            domain,
            delay,
            "Retry-After" if honoured is not None else f"backoff {state.backoff_streak} in a row",
            extra={"domain": domain},
        )

    # --- pacing ----------------------------------------------------------------------------------------------

    def set_min_interval(self, domain: str, seconds: float | None) -> None:
        """Space request starts on ``domain`` by at least ``seconds`` (a robots.txt Crawl-delay); ``None`` clears."""
        state = self._state(domain)
        state.min_interval = max(0.0, seconds or 0.0)

    def delay_for(self, domain: str) -> float:
        """Seconds to wait before the next request to ``domain`` may start (backoff and crawl delay); 0 if none."""
        state = self._states.get(domain)
        if state is None:
            return 0.0
        now = self._clock()
        return max(0.0, state.not_before - now, state.next_start - now)

    @asynccontextmanager
    async def slot(self, domain: str) -> AsyncIterator[None]:
        """Hold one of the domain's request slots for one attempt.

        Entering waits for a free slot, then for the domain's backoff and crawl delay, then claims the half-open
        trial if there is one. Leaving frees the slot. Report the attempt's outcome inside the block.

        Raises:
            CircuitOpenError: the domain's circuit is open (checked after waiting, so it is never stale).
        """
        state = self._state(domain)
        state.waiting += 1
        try:
            await state.semaphore.acquire()
        finally:
            state.waiting -= 1
        try:
            await self._wait_turn(domain, state)
            state.in_flight += 1
        except BaseException:
            state.semaphore.release()
            raise
        self.peak_in_flight = max(self.peak_in_flight, state.in_flight)
        try:
            yield
        finally:
            state.in_flight -= 1
            state.semaphore.release()

    async def _wait_turn(self, domain: str, state: _DomainState) -> None:
        reserved: float | None = None
        while True:
            now = self._clock()
            if self._refusal(domain, state, now) is not None:
                self._admit(domain, state, now)  # raises CircuitOpenError, counted
            wait = state.not_before - now
            if reserved is not None and wait > 0:
                reserved = None  # a backoff arrived after this turn was reserved: take a new turn once it is over
            if reserved is None and wait <= 0:
                # Reserve a start time under the crawl delay before sleeping, so concurrent holders space out.
                reserved = max(now, state.next_start)
                state.next_start = reserved + state.min_interval
            if reserved is not None:
                wait = max(wait, reserved - now)
            if wait <= 0:
                # No await between this final check and the claim: only one holder can take a half-open trial.
                self._admit(domain, state, now)
                return
            await self._sleep(wait)

    # --- summary ---------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        """Totals and per-domain counts of refusals, circuit opens and backoffs, for the run summary."""
        per_domain = {
            domain: {"refusals": c.refusals, "opens": c.opens, "backoffs": c.backoffs}
            for domain, c in self._counts.items()
        }
        open_now = [d for d in self._states if self.circuit_state(d) != "closed"]
        return {
            "refusals": self._totals.refusals,
            "opens": self._totals.opens,
            "backoffs": self._totals.backoffs,
            "tracked_domains": len(self._states),
            "dropped_states": self.dropped_states,
            "peak_in_flight": self.peak_in_flight,
            "open_circuits": sorted(open_now),
            "per_domain": per_domain,
        }
