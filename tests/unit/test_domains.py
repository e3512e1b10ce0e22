"""Per-domain policy: concurrency cap, backoff on 429/503, circuit breaker, bounded state. Fake clock, no sockets."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import pytest

from enrich.config import FetchConfig, PolitenessConfig
from enrich.errors import FetchError
from enrich.policy.domains import CircuitOpenError, DomainPolicy, domain_of

WALL = 1_800_000_000.0


class FakeClock:
    """A monotonic clock that only moves when told to, and a sleep that moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL + self.now - 1000.0

    async def sleep(self, seconds: float) -> None:
        """Wake at ``now + seconds``; concurrent sleepers move the clock to the latest wake time, not the sum."""
        self.slept.append(round(seconds, 6))
        wake = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, wake)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kwargs: object) -> DomainPolicy:
    options: dict[str, object] = {
        "concurrency": 2,
        "circuit_failures": 3,
        "circuit_cooldown_s": 30.0,
        "retry_after_cap_s": 60.0,
        "backoff_base_s": 1.0,
        "backoff_cap_s": 8.0,
        "clock": clock,
        "wall_clock": clock.wall,
        "sleep": clock.sleep,
    }
    options.update(kwargs)
    return DomainPolicy(**options)  # type: ignore[arg-type]


# --- keys -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://Example.COM:8080/path?q=1", "example.com"),
        ("https://user:secret@example.com./", "example.com"),
        ("http://[::1]:8000/", "::1"),
        ("127.0.0.2", "127.0.0.2"),
        ("example.com:443", "example.com"),
        ("[2001:db8::1]:80", "2001:db8::1"),
        ("http://127.0.0.3:9/x", "127.0.0.3"),
    ],
)
def test_domain_of(given: str, expected: str) -> None:
    assert domain_of(given) == expected


def test_from_config(clock: FakeClock) -> None:
    politeness = PolitenessConfig(per_domain_concurrency=3, circuit_failures=4, circuit_cooldown_s=12)
    fetch = FetchConfig(retry_after_cap_s=7, backoff_base_s=0.5, backoff_cap_s=4)
    policy = DomainPolicy.from_config(politeness, fetch, clock=clock, sleep=clock.sleep)
    assert (policy.concurrency, policy.circuit_failures, policy.circuit_cooldown_s) == (3, 4, 12)
    assert (policy.retry_after_cap_s, policy.backoff_base_s, policy.backoff_cap_s) == (7, 0.5, 4)


@pytest.mark.parametrize("bad", [{"concurrency": 0}, {"circuit_failures": 0}, {"circuit_cooldown_s": -1}])
def test_rejects_bad_arguments(clock: FakeClock, bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        make(clock, **bad)


# --- concurrency ----------------------------------------------------------------------------------------------


async def test_slot_caps_concurrency_per_domain_not_across(clock: FakeClock) -> None:
    policy = make(clock, concurrency=2)
    peaks: dict[str, int] = {"a.test": 0, "b.test": 0}
    inside: dict[str, int] = {"a.test": 0, "b.test": 0}
    release = asyncio.Event()

    async def work(domain: str) -> None:
        async with policy.slot(domain):
            inside[domain] += 1
            peaks[domain] = max(peaks[domain], inside[domain])
            await release.wait()
            inside[domain] -= 1

    tasks = [asyncio.create_task(work(d)) for d in ["a.test"] * 5 + ["b.test"] * 5]
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside == {"a.test": 2, "b.test": 2}  # b is not held back by a's full slots
    assert policy.in_flight("a.test") == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peaks == {"a.test": 2, "b.test": 2}
    assert policy.peak_in_flight == 2
    assert policy.in_flight("a.test") == 0


async def test_slot_released_on_error(clock: FakeClock) -> None:
    policy = make(clock, concurrency=1)
    with pytest.raises(RuntimeError):
        async with policy.slot("a.test"):
            raise RuntimeError("boom")
    async with asyncio.timeout(1):
        async with policy.slot("a.test"):
            assert policy.in_flight("a.test") == 1


# --- backoff --------------------------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_delays_only_that_domain(clock: FakeClock) -> None:
    policy = make(clock)
    policy.on_response("a.test", 429, "5")
    assert policy.delay_for("a.test") == 5
    assert policy.delay_for("b.test") == 0
    clock.now += 2
    assert policy.delay_for("a.test") == 3
    clock.now += 3
    assert policy.delay_for("a.test") == 0


def test_retry_after_http_date_and_cap(clock: FakeClock) -> None:
    policy = make(clock, retry_after_cap_s=60.0)
    policy.on_response("a.test", 503, formatdate(clock.wall() + 20, usegmt=True))
    assert policy.delay_for("a.test") == pytest.approx(20, abs=1)
    policy.on_response("b.test", 429, "3600")
    assert policy.delay_for("b.test") == 60


def test_exponential_backoff_without_header_and_reset(clock: FakeClock) -> None:
    policy = make(clock, backoff_base_s=1.0, backoff_cap_s=8.0)
    delays = []
    for _ in range(5):
        policy.on_response("a.test", 429)
        delays.append(policy.delay_for("a.test"))
        clock.now += delays[-1]
    assert delays == [1, 2, 4, 8, 8]
    policy.on_response("a.test", 200)
    policy.on_response("a.test", 429, "not a date")
    assert policy.delay_for("a.test") == 1


def test_backoff_never_shortens(clock: FakeClock) -> None:
    policy = make(clock)
    policy.on_response("a.test", 429, "10")
    policy.on_response("a.test", 429, "1")
    assert policy.delay_for("a.test") == 10


@pytest.mark.parametrize("status", [200, 301, 404, 500, 502])
def test_other_statuses_do_not_back_off(clock: FakeClock, status: int) -> None:
    policy = make(clock)
    policy.on_response("a.test", status, "30")
    assert policy.delay_for("a.test") == 0


async def test_slot_waits_for_backoff(clock: FakeClock) -> None:
    policy = make(clock)
    policy.on_response("a.test", 429, "4")
    async with policy.slot("a.test"):
        pass
    assert clock.slept == [4]
    async with policy.slot("b.test"):
        pass
    assert clock.slept == [4]


async def test_min_interval_spaces_request_starts(clock: FakeClock) -> None:
    policy = make(clock, concurrency=4)
    policy.set_min_interval("a.test", 2.0)
    starts: list[float] = []

    async def one() -> None:
        async with policy.slot("a.test"):
            starts.append(clock.now)

    await asyncio.gather(*(one() for _ in range(4)))
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert all(gap >= 2.0 - 1e-9 for gap in gaps), starts
    assert policy.delay_for("a.test") == pytest.approx(2.0)
    policy.set_min_interval("a.test", None)
    clock.now += 2
    async with policy.slot("a.test"), policy.slot("a.test"):
        pass


# --- circuit breaker ------------------------------------------------------------------------------------------


def test_circuit_opens_after_consecutive_failures(clock: FakeClock) -> None:
    policy = make(clock, circuit_failures=3)
    policy.on_failure("a.test")
    policy.on_response("a.test", 500)
    assert policy.check("a.test") is None
    policy.on_response("a.test", 200)  # a success resets the count
    for _ in range(2):
        policy.on_response("a.test", 503)
        assert policy.check("a.test") is None
    policy.on_failure("a.test")
    reason = policy.check("a.test")
    assert reason == "circuit open for a.test after 3 consecutive failures; retry after 30 s"
    assert policy.circuit_state("a.test") == "open"
    assert policy.check("b.test") is None
    clock.now += 10.5
    assert policy.check("a.test") == "circuit open for a.test after 3 consecutive failures; retry after 20 s"


async def test_slot_raises_circuit_open_error(clock: FakeClock) -> None:
    policy = make(clock, circuit_failures=1)
    policy.on_failure("a.test")
    with pytest.raises(CircuitOpenError, match=r"circuit open for a\.test") as info:
        async with policy.slot("a.test"):
            pytest.fail("must not enter")
    assert isinstance(info.value, FetchError)
    assert info.value.domain == "a.test"
    assert info.value.retry_in_s == 30
    assert info.value.attempts == 0
    assert policy.in_flight("a.test") == 0


async def test_half_open_lets_one_trial_and_success_closes(clock: FakeClock) -> None:
    policy = make(clock, circuit_failures=2, concurrency=4)
    policy.on_failure("a.test")
    policy.on_failure("a.test")
    clock.now += 30
    assert policy.circuit_state("a.test") == "half-open"
    assert policy.check("a.test") is None  # check() does not claim the trial
    async with policy.slot("a.test"):
        assert policy.check("a.test") == "circuit half-open for a.test: a trial request is in flight"
        with pytest.raises(CircuitOpenError, match="trial request is in flight"):
            async with policy.slot("a.test"):
                pass
        policy.on_response("a.test", 200)
    assert policy.circuit_state("a.test") == "closed"
    assert policy.check("a.test") is None


async def test_half_open_failure_reopens(clock: FakeClock) -> None:
    policy = make(clock, circuit_failures=2)
    policy.on_failure("a.test")
    policy.on_failure("a.test")
    clock.now += 30
    async with policy.slot("a.test"):
        policy.on_response("a.test", 502)
    assert policy.circuit_state("a.test") == "open"
    assert policy.check("a.test") == "circuit open for a.test after 3 consecutive failures; retry after 30 s"
    clock.now += 30
    async with policy.slot("a.test"):
        policy.on_response("a.test", 200)
    assert policy.circuit_state("a.test") == "closed"
    assert policy.stats()["opens"] == 2


async def test_abandoned_trial_is_freed_after_a_cooldown(clock: FakeClock) -> None:
    policy = make(clock, circuit_failures=1)
    policy.on_failure("a.test")
    clock.now += 30
    async with policy.slot("a.test"):
        pass  # the trial never reports (its task was cancelled)
    assert policy.check("a.test") is not None
    clock.now += 30
    assert policy.check("a.test") is None


async def test_429_is_not_a_circuit_failure(clock: FakeClock) -> None:
    policy = make(clock, circuit_failures=1)
    policy.on_response("a.test", 429, "0")
    assert policy.circuit_state("a.test") == "closed"


def test_stats(clock: FakeClock) -> None:
    policy = make(clock, circuit_failures=1)
    policy.on_response("a.test", 503, "1")  # a backoff and a failure that opens the circuit
    assert policy.check("a.test") is not None
    assert policy.check("a.test") is not None
    policy.on_response("b.test", 429)
    stats = policy.stats()
    assert stats["refusals"] == 2
    assert stats["opens"] == 1
    assert stats["backoffs"] == 2
    assert stats["open_circuits"] == ["a.test"]
    assert stats["per_domain"] == {
        "a.test": {"refusals": 2, "opens": 1, "backoffs": 1},
        "b.test": {"refusals": 0, "opens": 0, "backoffs": 1},
    }


# --- memory ---------------------------------------------------------------------------------------------------


async def test_idle_domains_are_dropped_busy_ones_kept(clock: FakeClock) -> None:
    policy = make(clock, max_domains=10, circuit_failures=1)
    policy.on_failure("broken.test")  # open circuit: not idle
    policy.on_response("slow.test", 429, "50")  # backing off: not idle
    async with policy.slot("busy.test"):  # in flight: not idle
        for n in range(200):
            async with policy.slot(f"d{n}.test"):
                pass
        assert policy.tracked_domains <= 20
        assert policy.in_flight("busy.test") == 1
    assert policy.check("broken.test") is not None
    assert policy.delay_for("slow.test") == 50
    assert policy.stats()["dropped_states"] == policy.dropped_states > 150
