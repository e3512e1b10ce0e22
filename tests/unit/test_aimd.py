"""The AIMD controller and the adaptive limiter, driven by a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from enrich.config import AIMDConfig, FetchConfig
from enrich.policy import AdaptiveLimiter, AIMDController


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock, **kwargs: object) -> AIMDController:
    options: dict[str, object] = {
        "minimum": 2,
        "maximum": 40,
        "initial": 10,
        "increase_step": 2,
        "interval_s": 5.0,
        "success_threshold": 0.9,
        "decrease_factor": 0.5,
        "window": 20,
        "min_samples": 5,
    }
    options.update(kwargs)
    return AIMDController(clock=clock, **options)  # type: ignore[arg-type]


def feed(controller: AIMDController, clock: FakeClock, *, successes: int, failures: int, step_s: float) -> None:
    for success in [True] * successes + [False] * failures:
        clock.now += step_s
        controller.record(success, 0.1)


def test_from_config_uses_fetch_bounds_and_default_initial() -> None:
    controller = AIMDController.from_config(AIMDConfig(), FetchConfig(min_concurrency=3, max_concurrency=50))
    assert (controller.minimum, controller.maximum, controller.concurrency) == (3, 50, 15)


def test_initial_is_clamped_to_bounds() -> None:
    assert make(FakeClock(), initial=100).concurrency == 40
    assert make(FakeClock(), initial=1).concurrency == 2


def test_disabled_pins_maximum() -> None:
    clock = FakeClock()
    controller = make(clock, enabled=False)
    feed(controller, clock, successes=0, failures=50, step_s=1.0)
    assert controller.concurrency == 40


def test_no_decision_before_interval() -> None:
    clock = FakeClock()
    controller = make(clock)
    feed(controller, clock, successes=20, failures=0, step_s=0.1)  # 2 s in total, interval is 5 s
    assert controller.concurrency == 10


def test_no_decision_without_enough_samples() -> None:
    clock = FakeClock()
    controller = make(clock)
    clock.now = 100.0
    feed(controller, clock, successes=4, failures=0, step_s=0.0)
    assert controller.concurrency == 10
    controller.record(True, 0.1)
    assert controller.concurrency == 12


def test_additive_increase_up_to_maximum() -> None:
    clock = FakeClock()
    controller = make(clock)
    for _ in range(20):
        feed(controller, clock, successes=5, failures=0, step_s=1.0)
    assert controller.concurrency == 40
    assert controller.increases == 15  # 10 -> 40 by steps of 2


def test_burst_of_failures_lowers_then_recovery_raises() -> None:
    clock = FakeClock()
    controller = make(clock)
    feed(controller, clock, successes=5, failures=0, step_s=1.0)
    assert controller.concurrency == 12
    # a burst of failures: halve, but only once per interval and on fresh evidence
    feed(controller, clock, successes=0, failures=5, step_s=1.0)
    assert controller.concurrency == 6
    assert controller.success_rate == 1.0  # window cleared after the decrease
    feed(controller, clock, successes=0, failures=5, step_s=1.0)
    assert controller.concurrency == 3
    feed(controller, clock, successes=0, failures=5, step_s=1.0)
    assert controller.concurrency == 2  # never under the minimum
    lowest = controller.concurrency
    # the server recovers: additive increase again
    for _ in range(4):
        feed(controller, clock, successes=5, failures=0, step_s=1.0)
    assert controller.concurrency == lowest + 4 * 2
    assert controller.decreases == 3
    assert [value for _, value in controller.history] == [10, 12, 6, 3, 2, 4, 6, 8, 10]


def test_old_failures_do_not_cause_a_second_decrease() -> None:
    clock = FakeClock()
    controller = make(clock, min_samples=1)
    feed(controller, clock, successes=0, failures=5, step_s=1.0)
    assert controller.concurrency == 5
    # now only successes: the earlier failures were cleared, so the next decision increases
    feed(controller, clock, successes=5, failures=0, step_s=1.0)
    assert controller.concurrency == 7


def test_success_rate_threshold_is_inclusive() -> None:
    clock = FakeClock()
    controller = make(clock, window=10, min_samples=10)
    feed(controller, clock, successes=9, failures=1, step_s=1.0)  # exactly 90%
    assert controller.concurrency == 12


def test_average_duration_and_listener() -> None:
    clock = FakeClock()
    controller = make(clock)
    seen: list[int] = []
    controller.add_listener(seen.append)
    clock.now = 10.0
    for duration in (0.1, 0.2, 0.3, 0.4, 0.5):
        controller.record(True, duration)
    assert controller.avg_duration_s == pytest.approx(0.3)
    assert seen == [12]
    assert controller.snapshot()["avg_attempt_ms"] == 300.0


@pytest.mark.parametrize(
    "kwargs",
    [{"minimum": 0}, {"minimum": 5, "maximum": 4}, {"decrease_factor": 1.0}, {"window": 0}],
)
def test_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        make(FakeClock(), **kwargs)


async def test_limiter_follows_a_changing_limit() -> None:
    limit = 2
    limiter = AdaptiveLimiter(limit=lambda: limit)
    inside = 0
    peak_by_phase: list[int] = []
    release = asyncio.Event()

    async def task() -> None:
        nonlocal inside
        async with limiter:
            inside += 1
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(task()) for _ in range(6)]
    await asyncio.sleep(0)
    peak_by_phase.append(inside)
    limit = 5
    limiter.notify()  # a raise lets waiters in at once
    await asyncio.sleep(0)
    peak_by_phase.append(inside)
    release.set()
    await asyncio.gather(*tasks)
    assert peak_by_phase == [2, 5]
    assert limiter.peak == 5
    assert limiter.in_flight == 0


async def test_limiter_lowered_limit_admits_nobody_until_under_it() -> None:
    limit = 3
    limiter = AdaptiveLimiter(limit=lambda: limit)
    for _ in range(3):
        await limiter.acquire()
    limit = 1
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()
    limiter.release()
    await asyncio.sleep(0)
    assert not waiter.done()  # 1 inside, limit 1
    limiter.release()
    await asyncio.wait_for(waiter, 1)
    assert limiter.in_flight == 1
    limiter.release()


async def test_limiter_cancelled_waiter_gives_no_slot_away() -> None:
    limiter = AdaptiveLimiter(limit=lambda: 1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release()
    assert limiter.in_flight == 0
    with pytest.raises(RuntimeError, match="released more times"):
        limiter.release()


async def test_controller_increase_wakes_limiter_waiters() -> None:
    clock = FakeClock()
    controller = AIMDController(minimum=1, maximum=4, initial=1, interval_s=1.0, min_samples=1, clock=clock)
    limiter = AdaptiveLimiter(limit=lambda: controller.concurrency)
    controller.add_listener(limiter.notify)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.now = 2.0
    controller.record(True, 0.1)  # 1 -> 3: the listener lets the waiter in without any release
    await asyncio.wait_for(waiter, 1)
    assert (controller.concurrency, limiter.in_flight) == (3, 2)


async def test_limiter_release_racing_a_cancelled_waiter() -> None:
    limiter = AdaptiveLimiter(limit=lambda: 1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    limiter.release()  # runs before the waiter sees its cancellation: its future is already cancelled
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire(), 1)
    assert limiter.in_flight == 1


def test_with_require_saturation_an_unused_limit_does_not_grow() -> None:
    clock = FakeClock()
    controller = make(clock, require_saturation=True)
    for _ in range(6):
        feed(controller, clock, successes=5, failures=0, step_s=1.0)
    assert controller.concurrency == 10  # healthy, but nothing ever waited for a slot
    controller.mark_saturated()
    feed(controller, clock, successes=5, failures=0, step_s=1.0)
    assert controller.concurrency == 12
    for _ in range(3):  # saturation is evidence for one decision only
        feed(controller, clock, successes=5, failures=0, step_s=1.0)
    assert controller.concurrency == 12
    feed(controller, clock, successes=0, failures=5, step_s=1.0)
    assert controller.concurrency == 6  # a decrease needs no saturation


async def test_limiter_reports_saturation_when_a_task_must_wait() -> None:
    seen: list[int] = []
    limiter = AdaptiveLimiter(limit=lambda: 2, on_saturated=lambda: seen.append(limiter.in_flight))
    await limiter.acquire()
    await limiter.acquire()
    assert seen == []
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert seen == [2]
    limiter.release()
    await waiter
    assert limiter.in_flight == 2
