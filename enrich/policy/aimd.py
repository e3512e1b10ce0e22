"""Adaptive concurrency: an AIMD controller that decides, and an asyncio limiter that enforces the decision.

The controller is pure logic over an injected clock: engines report each attempt's outcome with
:meth:`AIMDController.record` and read :attr:`AIMDController.concurrency`. The Scrapy engine maps the figure
onto its own slots; the asyncio engine gates requests with :class:`AdaptiveLimiter`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from enrich.config import AIMDConfig, FetchConfig

__all__ = ["AIMDController", "AdaptiveLimiter"]

INITIAL_FACTOR = 5
"""Without ``aimd.initial``, start at ``min_concurrency`` x this: high enough not to crawl, low enough to be safe."""

MIN_SAMPLES = 10
"""Outcomes needed since the last decision before the next one (or the whole window, when it is smaller).

Ten is enough to tell a 95% success rate from a burst of failures, and few enough to react within one interval
at a handful of requests per second."""


class AIMDController:
    """Additive increase, multiplicative decrease of the number of requests in flight.

    Every ``interval_s`` (at most), if enough outcomes arrived since the last decision, the success rate over the
    last ``window`` outcomes is compared with ``success_threshold``: at or above it the concurrency grows by
    ``increase_step``, below it the concurrency is multiplied by ``decrease_factor``. After a decrease the window is
    cleared, so the next decision rests on outcomes observed at the new, lower concurrency instead of punishing the
    same old failures twice.

    Args:
        minimum: lower bound, never gone under.
        maximum: upper bound, never exceeded.
        initial: starting value (clamped to the bounds); ``None`` means ``minimum`` x :data:`INITIAL_FACTOR`.
        increase_step: added on a healthy interval.
        interval_s: shortest time between two decisions.
        success_threshold: success rate needed to increase.
        decrease_factor: multiplier applied on an unhealthy interval.
        window: number of recent outcomes the success rate is computed over.
        enabled: ``False`` pins the concurrency at ``maximum``; outcomes are still counted.
        min_samples: outcomes needed since the last decision; ``None`` means ``min(window, MIN_SAMPLES)``.
        require_saturation: increase only after an interval in which the limit was reached
            (:meth:`mark_saturated`); otherwise a limit nobody uses (one host held by its per-domain cap, a slow
            input) would climb to the maximum and then let a sudden burst through at once.
        clock: monotonic time in seconds.
    """

    def __init__(
        self,
        *,
        minimum: int,
        maximum: int,
        initial: int | None = None,
        increase_step: int = 2,
        interval_s: float = 5.0,
        success_threshold: float = 0.95,
        decrease_factor: float = 0.5,
        window: int = 50,
        enabled: bool = True,
        min_samples: int | None = None,
        require_saturation: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError(f"need 1 <= minimum <= maximum, got minimum={minimum}, maximum={maximum}")
        if not 0 < decrease_factor < 1:
            raise ValueError(f"decrease_factor must be between 0 and 1 (exclusive), got {decrease_factor}")
        if window < 1 or increase_step < 1 or interval_s <= 0:
            raise ValueError("window and increase_step must be at least 1 and interval_s positive")
        self.minimum = minimum
        self.maximum = maximum
        self.increase_step = increase_step
        self.interval_s = interval_s
        self.success_threshold = success_threshold
        self.decrease_factor = decrease_factor
        self.enabled = enabled
        self.min_samples = min(window, MIN_SAMPLES) if min_samples is None else max(1, min(min_samples, window))
        self._clock = clock
        start = minimum * INITIAL_FACTOR if initial is None else initial
        self._concurrency = max(minimum, min(maximum, start)) if enabled else maximum
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._durations: deque[float] = deque(maxlen=window)
        self._since_decision = 0
        self._last_decision = clock()
        self._listeners: list[Callable[[int], None]] = []
        self.total = 0
        self.successes = 0
        self.increases = 0
        self.decreases = 0
        self.require_saturation = require_saturation
        self._saturated = False
        self.history: list[tuple[float, int]] = [(0.0, self._concurrency)]
        """``(seconds since creation, concurrency)`` at creation and after every change, for plotting."""
        self._created = self._last_decision

    @classmethod
    def from_config(
        cls,
        aimd: AIMDConfig,
        fetch: FetchConfig,
        *,
        require_saturation: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> AIMDController:
        """A controller bounded by ``fetch.min_concurrency`` / ``fetch.max_concurrency``, tuned by ``aimd``."""
        return cls(
            minimum=fetch.min_concurrency,
            maximum=fetch.max_concurrency,
            initial=aimd.initial,
            increase_step=aimd.increase_step,
            interval_s=aimd.interval_s,
            success_threshold=aimd.success_threshold,
            decrease_factor=aimd.decrease_factor,
            window=aimd.window,
            enabled=aimd.enabled,
            require_saturation=require_saturation,
            clock=clock,
        )

    @property
    def concurrency(self) -> int:
        """How many requests may be in flight now."""
        return self._concurrency

    @property
    def success_rate(self) -> float:
        """Success rate over the current window (1.0 when it is empty)."""
        return sum(self._outcomes) / len(self._outcomes) if self._outcomes else 1.0

    @property
    def avg_duration_s(self) -> float:
        """Average duration of the last ``window`` attempts (not cleared by a decrease)."""
        return sum(self._durations) / len(self._durations) if self._durations else 0.0

    def add_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(new_concurrency)`` after every change."""
        self._listeners.append(listener)

    def record(self, success: bool, duration_s: float) -> None:
        """Count one attempt's outcome and, when due, decide on the concurrency.

        Args:
            success: the server answered without a sign of overload (no connection error, timeout, 5xx or 429).
            duration_s: how long the attempt took.
        """
        self.total += 1
        self.successes += success
        self._outcomes.append(success)
        self._durations.append(duration_s)
        self._since_decision += 1
        self._maybe_decide()

    def mark_saturated(self) -> None:
        """Note that the limit was reached: work was waiting for a slot (see ``require_saturation``)."""
        self._saturated = True

    def _maybe_decide(self) -> None:
        if not self.enabled or self._since_decision < self.min_samples:
            return
        now = self._clock()
        if now - self._last_decision < self.interval_s:
            return
        self._last_decision = now
        self._since_decision = 0
        saturated, self._saturated = self._saturated, False
        if self.success_rate >= self.success_threshold:
            if self.require_saturation and not saturated:
                return  # healthy, but the current limit was never used: no evidence that more would help
            new = min(self.maximum, self._concurrency + self.increase_step)
            self.increases += new > self._concurrency
        else:
            new = max(self.minimum, int(self._concurrency * self.decrease_factor))
            self.decreases += new < self._concurrency
            self._outcomes.clear()  # the next decision needs fresh evidence, gathered at the new concurrency
        self._set(new, now)

    def _set(self, value: int, now: float) -> None:
        if value == self._concurrency:
            return
        self._concurrency = value
        self.history.append((round(now - self._created, 3), value))
        for listener in self._listeners:
            listener(value)

    def snapshot(self) -> dict[str, object]:
        """The controller's state for a JSON summary."""
        return {
            "concurrency": self._concurrency,
            "min": self.minimum,
            "max": self.maximum,
            "attempts": self.total,
            "attempt_success_rate": round(self.successes / self.total, 4) if self.total else 1.0,
            "avg_attempt_ms": round(self.avg_duration_s * 1000, 1),
            "increases": self.increases,
            "decreases": self.decreases,
        }


class AdaptiveLimiter:
    """An asyncio semaphore whose size is read from ``limit`` each time, so it can change while tasks wait.

    Waiters are served first in, first out. Lowering the limit does not interrupt anyone: tasks already inside
    finish, and nobody new enters until the count falls under the new limit. Call :meth:`notify` after raising it
    (an :class:`AIMDController` listener does that) so waiters enter at once instead of at the next release.

    Args:
        limit: the current number of tasks allowed inside, e.g. ``lambda: controller.concurrency``.
        on_saturated: called whenever a task finds the limit reached, e.g. ``controller.mark_saturated``.
    """

    def __init__(self, *, limit: Callable[[], int], on_saturated: Callable[[], None] | None = None) -> None:
        self._limit = limit
        self._on_saturated = on_saturated
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight = 0
        self.peak = 0
        """The most tasks ever inside at once, for tests and benchmarks."""

    async def acquire(self) -> None:
        if not self._waiters and self.in_flight < self._limit():
            self._enter()
            return
        if self._on_saturated is not None:
            self._on_saturated()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: give it back
            elif future in self._waiters:  # notify() may already have dropped it as done
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        if self.in_flight <= 0:
            raise RuntimeError("AdaptiveLimiter released more times than acquired")
        self.in_flight -= 1
        self.notify()

    def notify(self, _limit: int | None = None) -> None:
        """Let waiters in while there is room under the current limit (usable as a controller listener)."""
        while self._waiters and self.in_flight < self._limit():
            future = self._waiters.popleft()
            if not future.done():
                self._enter()
                future.set_result(None)

    def _enter(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
