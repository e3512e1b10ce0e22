"""Per-site politeness and congestion state: when a site may get its next request, and how many may be in flight.

The :class:`~enrich.frontier.core.Frontier` asks :class:`SitePolicy` two questions about a site, and never waits
itself: *when* may the next request start (:meth:`SitePolicy.ready_at`: ``Crawl-delay`` spacing and backoff), and
*may one more start now* (:meth:`SitePolicy.can_start`: the site's in-flight cap and circuit breaker). Engines
report each attempt's outcome (:meth:`SitePolicy.report`), which moves the state.

Signals, one site at a time (``docs/architecture.md``, "Congestion control"):

* **Congestion** (429, 503, a timeout, time to first byte rising well past the site's norm) lowers that site's cap
  multiplicatively (at most once per ``aimd.interval_s``); 429/503 also set a "not before" time: ``Retry-After``
  when given (up to ``fetch.retry_after_cap_s``), else ``backoff_base_s x 2**(n-1)`` up to ``backoff_cap_s``.
  And they set the site's **pace**: a rate limiter that let ``n`` requests through in the second before it
  refused gets at most ``n`` requests a second from then on, so the requests waiting behind the backoff do not all
  go at once and meet the limit again (5 % under it; 10 % slower again at each refusal met while keeping to it, at
  most twice as slow as the first estimate, since refusals that come whatever the pace are load shedding, which
  the backoff answers). After 30 s without a refusal, each good answer makes the pace
  1 % faster, probing back up.
* **Success** (any other answer, a 404 included) raises the cap additively, ``increase_step`` per cap's worth of
  successes (a congestion window, as in TCP), up to ``politeness.per_domain_concurrency``.
* **Dead links** (a refused connection, a DNS failure, a TLS error, one page's 500) say nothing about load: they do
  not touch the cap. Consecutive failures (transport errors, timeouts, 5xx) open the site's **circuit**:
  ``politeness.circuit_failures`` in a row refuse the site for ``circuit_cooldown_s``; then one trial request
  goes through and its outcome closes or reopens the circuit.

A site whose robots.txt is not known yet gets one request in flight (the one that fetches robots.txt), so a
``Crawl-delay`` is known before a second request can start.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from enrich.policy.retry import parse_retry_after

if TYPE_CHECKING:
    from collections.abc import Callable

    from enrich.config import EnrichConfig

__all__ = ["BACKOFF_STATUSES", "CircuitState", "Outcome", "SitePolicy", "SiteState", "domain_of", "outcome_of"]

logger = logging.getLogger(__name__)

BACKOFF_STATUSES = frozenset({429, 503})
"""Answers that ask the client to slow down: the site backs off (``Retry-After`` or exponential) and its cap drops."""

LATENCY_FACTOR = 4.0
"""Time to first byte above this many times the site's usual (its smoothed minimum) reads as congestion..."""

LATENCY_SLACK_S = 0.5
"""...and above the usual plus this: a 5 ms site that answers in 30 ms once is not congested."""

ANSWER_HISTORY = 64
"""Recent good answers remembered per site (their times), to estimate the rate a rate limiter let through."""

PACE_MARGIN = 1.05
"""The pace is kept this much slower than the rate the limiter let through: running exactly at a limit meets it
again at the first jitter, and every refusal costs a whole backoff."""

PACE_ESCALATION = 1.1
"""A refusal while keeping to a learnt pace makes it this much slower (the margin was not enough: jitter)."""

PACE_MAX_ESCALATION = 2.0
"""At most this many times slower than an episode's first estimate."""

PACE_HOLD_S = 30.0
"""A learnt pace is kept this long after the last refusal before it is probed faster again."""

PACE_DECAY = 0.99
"""After the hold, each good answer shortens the pace by 1 %: back to full speed after a few hundred good answers."""

CRAWL_DELAY_MARGIN_S = 0.03
"""Added to a ``Crawl-delay``: it is judged at the server, where a request sent on a fresh connection arrives later
than one sent on a kept-alive connection, so two starts spaced by exactly the delay can arrive closer (24 ms
closer was measured in Scrapy mode)."""

RATE_WINDOW_S = 1.0
"""The rate a limiter let through is counted over this long before its refusal: rate limits are per second more
often than not, and a longer window would mix in time when we sent little."""

MIN_RATE_WINDOW_S = 0.25
"""A shorter window (right after a backoff) holds too few answers to estimate a rate from."""

MIN_PACE_S = 0.001
"""A pace shorter than this is dropped (no pacing)."""

CircuitState = Literal["closed", "open", "half-open"]


class Outcome(Enum):
    """What one attempt says about its site's health."""

    SUCCESS = "success"
    """An answer that is not a sign of overload (2xx-4xx except 429; a 404 is a success for the site)."""
    CONGESTION = "congestion"
    """429, 503 or a timeout: the site asks us (or shows it needs us) to slow down."""
    SERVER_ERROR = "server_error"
    """Another 5xx: one page is broken; counts for the circuit breaker only."""
    UNREACHABLE = "unreachable"
    """No answer: refused, reset, DNS or TLS failure; counts for the circuit breaker only."""


def outcome_of(status: int | None, *, timed_out: bool = False) -> Outcome:
    """Classify an attempt: ``status`` of its answer, or ``None`` with ``timed_out`` telling a timeout apart."""
    if status is None:
        return Outcome.CONGESTION if timed_out else Outcome.UNREACHABLE
    if status in BACKOFF_STATUSES:
        return Outcome.CONGESTION
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.SUCCESS


def domain_of(url_or_host: str) -> str:
    """The key a site's state is kept under: its host, lower-cased, without port, credentials or final dot.

    A bare host (``example.com``, ``127.0.0.2``) is accepted too. Subdomains are separate sites: simple, and right
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
class SiteState:
    """One site's politeness and congestion state (a few hundred bytes; idle ones are dropped)."""

    key: str
    cwnd: float
    """Congestion window: requests the site may have in flight (the cap is its floor, at least 1)."""
    in_flight: int = 0
    known: bool = False
    """Whether the site's robots.txt (and so its Crawl-delay) is known; until then one request at a time."""
    crawl_delay: float | None = None
    """The robots.txt ``Crawl-delay`` as last set."""
    min_interval: float = 0.0
    """Seconds between two request starts: the ``Crawl-delay`` and a margin."""
    pace: float = 0.0
    """Seconds between two request starts learnt from a rate limiter (429/503); the larger of the two applies."""
    paced_at: float = -math.inf
    """When the pace was last set by a refusal."""
    pace_base: float = 0.0
    """The first pace of the current episode of refusals."""
    answered: deque[float] = field(default_factory=lambda: deque(maxlen=ANSWER_HISTORY))
    """Times of recent good answers."""
    next_start: float = 0.0
    """Earliest start of the next request under ``min_interval``."""
    last_start: float = -math.inf
    not_before: float = 0.0
    """Backoff: no request starts before this time."""
    backoff_streak: int = 0
    last_decrease: float = -math.inf
    lowest_cwnd: float = math.inf
    ttfb_floor: float | None = None
    """Smoothed minimum time to first byte: the site's usual, against which rising latency is judged."""
    failures: int = 0
    """Consecutive failures, for the circuit breaker."""
    circuit: CircuitState = "closed"
    opened_at: float = 0.0
    trial: bool = False
    """A half-open trial request is in flight."""
    last_failure: str = ""
    started: int = 0
    backoffs: int = 0
    decreases: int = 0
    opens: int = 0
    peak_in_flight: int = 0


class SitePolicy:
    """Decides, per site, when the next request may start and how many may be in flight; learns from outcomes.

    Args:
        per_site: the most requests in flight on one site (``politeness.per_domain_concurrency``).
        initial: the cap a new site starts with (default ``per_site``).
        adaptive: ``False`` pins every cap at ``per_site`` (outcomes still drive backoff and the circuit).
        increase_step: cap added per cap's worth of successes.
        decrease_factor: cap multiplier on a congestion signal.
        decrease_interval_s: shortest time between two decreases of one site's cap (one burst of 429s is one
            signal, not twenty).
        circuit_failures: consecutive failures that open a site's circuit.
        circuit_cooldown_s: how long an open circuit refuses before one trial request.
        retry_after_cap_s: largest ``Retry-After`` honoured as a backoff.
        backoff_base_s: first backoff without ``Retry-After``; doubles on each backoff in a row.
        backoff_cap_s: largest backoff without ``Retry-After``.
        robots_first: a new site gets one request in flight until :meth:`set_rules` says its robots.txt is known.
        clock: monotonic seconds.
        wall_clock: Unix seconds, for ``Retry-After`` HTTP dates.
    """

    def __init__(
        self,
        *,
        per_site: int = 8,
        initial: int | None = None,
        adaptive: bool = True,
        increase_step: int = 1,
        decrease_factor: float = 0.5,
        decrease_interval_s: float = 1.0,
        circuit_failures: int = 5,
        circuit_cooldown_s: float = 30.0,
        retry_after_cap_s: float = 60.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        robots_first: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if per_site < 1 or circuit_failures < 1:
            raise ValueError(f"per_site and circuit_failures must be at least 1, got {per_site}, {circuit_failures}")
        if not 0 < decrease_factor < 1:
            raise ValueError(f"decrease_factor must be between 0 and 1 (exclusive), got {decrease_factor}")
        self.per_site = per_site
        self.initial = max(1, min(per_site, initial or per_site))
        self.adaptive = adaptive
        self.increase_step = increase_step
        self.decrease_factor = decrease_factor
        self.decrease_interval_s = decrease_interval_s
        self.circuit_failures = circuit_failures
        self.circuit_cooldown_s = circuit_cooldown_s
        self.retry_after_cap_s = retry_after_cap_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.robots_first = robots_first
        self.clock = clock
        self._wall_clock = wall_clock

    @classmethod
    def from_config(
        cls,
        config: EnrichConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> SitePolicy:
        """The policy of a run: ``politeness`` caps and circuit, ``aimd`` congestion control, ``fetch`` backoff."""
        per_site = config.politeness.per_domain_concurrency
        if config.fetch.per_host_limit:
            per_site = min(per_site, config.fetch.per_host_limit)
        return cls(
            per_site=per_site,
            initial=config.aimd.initial,
            adaptive=config.aimd.enabled,
            increase_step=config.aimd.increase_step,
            decrease_factor=config.aimd.decrease_factor,
            decrease_interval_s=config.aimd.interval_s,
            circuit_failures=config.politeness.circuit_failures,
            circuit_cooldown_s=config.politeness.circuit_cooldown_s,
            retry_after_cap_s=config.fetch.retry_after_cap_s,
            backoff_base_s=config.fetch.backoff_base_s,
            backoff_cap_s=config.fetch.backoff_cap_s,
            robots_first=config.politeness.respect_robots,
            clock=clock,
            wall_clock=wall_clock,
        )

    def new_state(self, key: str) -> SiteState:
        return SiteState(key=key, cwnd=float(self.initial), known=not self.robots_first)

    # --- questions -------------------------------------------------------------------------------------------

    def cap(self, state: SiteState) -> int:
        """Requests the site may have in flight now."""
        if state.circuit != "closed" or not state.known:
            return 1
        if not self.adaptive:
            return self.per_site
        return max(1, min(self.per_site, int(state.cwnd)))

    def ready_at(self, state: SiteState) -> float:
        """Earliest clock time the next request may start (Crawl-delay spacing, backoff)."""
        return max(state.not_before, state.next_start)

    def refusal(self, state: SiteState, now: float) -> str | None:
        """Why the site's requests are refused without fetching (an open circuit), or ``None``."""
        if state.circuit != "open":
            return None
        remaining = state.opened_at + self.circuit_cooldown_s - now
        if remaining <= 0:
            return None
        last = f" (last: {state.last_failure})" if state.last_failure else ""
        return (
            f"circuit open for {state.key} after {state.failures} consecutive failures{last}; "
            f"retry after {math.ceil(remaining)} s"
        )

    def circuit_state(self, state: SiteState, now: float) -> CircuitState:
        """``closed``, ``open``, or ``half-open`` (open with its cooldown over, or its trial in flight)."""
        if state.circuit == "open" and now - state.opened_at >= self.circuit_cooldown_s:
            return "half-open"
        return state.circuit

    def can_start(self, state: SiteState, now: float) -> bool:
        """Whether one more request may start on the site now (cap, half-open trial, time)."""
        if state.circuit != "closed" and state.trial:
            return False
        return state.in_flight < self.cap(state) and self.ready_at(state) <= now

    # --- changes ---------------------------------------------------------------------------------------------

    def start(self, state: SiteState, now: float) -> None:
        """A request starts: count it, reserve the next Crawl-delay turn, claim the half-open trial."""
        state.in_flight += 1
        state.started += 1
        state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        state.last_start = max(now, state.next_start)
        state.next_start = state.last_start + max(state.min_interval, state.pace)
        if state.circuit == "open":  # cooldown over (refusal() said so): this request is the trial
            state.circuit = "half-open"
            state.trial = True
            logger.info("circuit half-open for %s: letting one trial request through", state.key)

    def finish(self, state: SiteState) -> None:
        """A request's attempt is over (whatever its outcome): free its place."""
        state.in_flight = max(0, state.in_flight - 1)

    def set_rules(self, state: SiteState, crawl_delay: float | None, now: float) -> None:
        """The site's robots.txt is known: space starts by ``crawl_delay`` from now on.

        The first time, the request that fetched robots.txt goes out now, so the next one waits a full delay.
        """
        state.crawl_delay = crawl_delay
        delay = max(0.0, crawl_delay or 0.0)
        if delay:
            delay += CRAWL_DELAY_MARGIN_S
        if not state.known:
            state.known = True
            state.next_start = max(state.next_start, now + delay)
        elif delay > state.min_interval:
            state.next_start = max(state.next_start, state.last_start + delay)
        state.min_interval = delay

    def report(
        self,
        state: SiteState,
        outcome: Outcome,
        *,
        ttfb_s: float | None = None,
        retry_after: str | None = None,
        status: int | None = None,
        reason: str = "",
    ) -> None:
        """Learn from one attempt's outcome (see the module docstring for what each outcome does).

        Args:
            state: the site's state.
            outcome: from :func:`outcome_of`.
            ttfb_s: time to the answer's headers, for the latency signal.
            retry_after: the answer's ``Retry-After`` header.
            status: the answer's status (a 429/503 sets the backoff).
            reason: what the failure was, quoted when the circuit opens.
        """
        now = self.clock()
        congested = outcome is Outcome.CONGESTION
        if ttfb_s is not None and outcome is Outcome.SUCCESS:
            floor = state.ttfb_floor
            if floor is not None and ttfb_s > floor * LATENCY_FACTOR and ttfb_s > floor + LATENCY_SLACK_S:
                congested = True
            # a minimum that drifts up slowly, so one fast answer long ago does not make every later one "slow"
            state.ttfb_floor = ttfb_s if floor is None else min(ttfb_s, floor + 0.05 * (ttfb_s - floor))
        if congested:
            self._decrease(state, now)
        elif outcome is Outcome.SUCCESS:
            state.answered.append(now)
            if state.cwnd < self.per_site:
                state.cwnd = min(float(self.per_site), state.cwnd + self.increase_step / max(1.0, state.cwnd))
            if state.pace and now - state.paced_at > PACE_HOLD_S:
                state.pace = state.pace * PACE_DECAY if state.pace * PACE_DECAY >= MIN_PACE_S else 0.0
        if status in BACKOFF_STATUSES:
            if self.adaptive:
                self._slow_pace(state, now)
            self._backoff(state, now, retry_after)
        else:
            state.backoff_streak = 0
        if outcome is Outcome.SUCCESS or (outcome is Outcome.CONGESTION and status == 429):
            self._success(state)
        else:
            self._failure(state, now, reason or outcome.value)

    def _decrease(self, state: SiteState, now: float) -> None:
        if not self.adaptive or now - state.last_decrease < self.decrease_interval_s:
            return
        state.last_decrease = now
        new = max(1.0, math.floor(state.cwnd * self.decrease_factor))
        if new < state.cwnd:
            state.decreases += 1
            logger.info("congestion on %s: in-flight cap %d -> %d", state.key, int(state.cwnd), int(new))
        state.cwnd = new
        state.lowest_cwnd = min(state.lowest_cwnd, new)

    def _slow_pace(self, state: SiteState, now: float) -> None:
        """Pace the site at the rate its limiter let through in the second before it refused.

        The second is cut at the end of the previous backoff (time spent waiting is no sign of the limit), and a
        window shorter than :data:`MIN_RATE_WINDOW_S` says nothing: a lone 429 after a burst does not slow a site.
        """
        start = max(now - RATE_WINDOW_S, state.not_before)
        if now - start < MIN_RATE_WINDOW_S:
            return
        admitted = sum(1 for t in state.answered if t >= start)
        if not admitted:  # it let nothing through: no rate to keep to, the backoff alone answers that
            return
        pace = PACE_MARGIN * (now - start) / admitted
        if not state.pace:
            state.pace_base = pace  # a new episode: its first estimate bounds how slow it may get
        elif now - state.paced_at <= PACE_HOLD_S:
            pace = max(pace, state.pace * PACE_ESCALATION)  # refused while keeping to a learnt pace: too fast still
        # Refusals that come whatever the pace (a server shedding load at random) would otherwise slow the site
        # without end; a rate limiter is met within a few steps.
        pace = min(self.backoff_cap_s, pace, PACE_MAX_ESCALATION * state.pace_base)
        state.paced_at = now
        if pace > state.pace:
            state.pace = pace
            state.next_start = max(state.next_start, state.last_start + pace)
            logger.info("rate limited by %s: at most one request every %.3f s", state.key, pace)

    def _backoff(self, state: SiteState, now: float, retry_after: str | None) -> None:
        if state.not_before <= now:
            # answers to requests sent before the current backoff began are the same signal, not an escalation
            state.backoff_streak += 1
        state.backoffs += 1
        honoured = parse_retry_after(retry_after, now=self._wall_clock())
        if honoured is not None:
            delay = min(honoured, self.retry_after_cap_s)
        else:
            delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(0, state.backoff_streak - 1))
        state.not_before = max(state.not_before, now + delay)
        logger.info("backing off %s for %.1f s", state.key, delay)

    def _success(self, state: SiteState) -> None:
        state.failures = 0
        if state.circuit != "closed":
            state.circuit = "closed"
            state.trial = False
            logger.info("circuit closed for %s: trial request succeeded", state.key)

    def _failure(self, state: SiteState, now: float, reason: str) -> None:
        state.failures += 1
        state.last_failure = reason
        if state.circuit == "half-open" or (state.circuit == "closed" and state.failures >= self.circuit_failures):
            state.circuit = "open"
            state.opened_at = now
            state.trial = False
            state.opens += 1
            logger.warning(
                "circuit open for %s after %d consecutive failures (last: %s); retry after %.0f s",
                state.key,
                state.failures,
                reason,
                self.circuit_cooldown_s,
            )

    def idle(self, state: SiteState, now: float) -> bool:
        """Whether dropping the state loses nothing that matters (nothing in flight, no backoff or delay pending,
        circuit closed, robots.txt rules re-learnt cheaply from the robots cache)."""
        return (
            state.in_flight == 0
            and state.circuit == "closed"
            and state.not_before <= now
            and state.next_start <= now
            and state.cwnd >= self.per_site
        )
