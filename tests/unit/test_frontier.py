"""The frontier's ordering, bounds and per-site decisions, on an injected clock (no sockets, no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from enrich.config import EnrichConfig
from enrich.frontier import Frontier, Outcome, SiteGate, SitePolicy, SpillStore, outcome_of
from enrich.frontier.sites import CRAWL_DELAY_MARGIN_S


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frontier(clock: Clock, gate: SiteGate | None = None, **policy: object) -> Frontier[str]:
    options: dict[str, object] = {"per_site": 2, "robots_first": False, "clock": clock, "wall_clock": lambda: 0.0}
    options.update(policy)
    return Frontier(policy=SitePolicy(**options), max_pending=1000, gate=gate)  # type: ignore[arg-type]


def take_all(f: Frontier[str]) -> list[str]:
    out = []
    while (lease := f.poll()) is not None:
        out.append(lease.payload)
    return out


async def test_a_delayed_site_does_not_hold_up_the_others() -> None:
    clock = Clock()
    f = frontier(clock)
    for n in range(3):
        await f.put(f"http://slow.test/{n}", f"slow{n}")
    for n in range(3):
        await f.put(f"http://fast.test/{n}", f"fast{n}")
    f.set_rules("http://slow.test/", 2.0)
    first = take_all(f)
    # one slow request (the Crawl-delay spaces the next), two fast ones (their cap), nothing sleeps
    assert first == ["slow0", "fast0", "fast1"]
    assert f.wait_s() == pytest.approx(2.0 + CRAWL_DELAY_MARGIN_S)
    clock.now += 2.0 + CRAWL_DELAY_MARGIN_S
    assert take_all(f) == ["slow1"]


async def test_priority_orders_within_and_across_sites() -> None:
    clock = Clock()
    f = frontier(clock, per_site=10)
    await f.put("http://a.test/low", "a-low", priority=0)
    await f.put("http://b.test/high", "b-high", priority=5)
    await f.put("http://a.test/high", "a-high", priority=9)
    await f.put("http://b.test/low", "b-low", priority=0)
    assert take_all(f) == ["a-high", "b-high", "a-low", "b-low"]


async def test_cap_is_freed_by_release_and_a_retry_waits_without_a_slot() -> None:
    clock = Clock()
    f = frontier(clock, per_site=1)
    await f.put("http://a.test/1", "one")
    await f.put("http://a.test/2", "two")
    lease = f.poll()
    assert lease is not None
    assert f.poll() is None
    f.release(lease, Outcome.SERVER_ERROR, status=500)
    f.push("http://a.test/1", "one-again", not_before=clock.now + 5)
    assert take_all(f) == ["two"]  # the retry waits for its time, the site's other URL goes on
    assert f.pending == 1
    clock.now += 5
    f.release(lease)  # releasing twice is harmless
    assert f.in_flight == 1


async def test_unknown_robots_allows_one_request_until_the_rules_are_known() -> None:
    clock = Clock()
    f = frontier(clock, robots_first=True, per_site=4)
    for n in range(3):
        await f.put(f"http://a.test/{n}", str(n))
    assert take_all(f) == ["0"]
    f.set_rules("http://a.test/", 1.0)  # the first request goes out now; the next waits a full delay
    assert f.poll() is None
    clock.now += 1.0 + CRAWL_DELAY_MARGIN_S
    assert take_all(f) == ["1"]


def test_dead_links_do_not_lower_a_sites_cap_but_congestion_does() -> None:
    clock = Clock()
    policy = SitePolicy(per_site=8, circuit_failures=1000, clock=clock, robots_first=False)
    state = policy.new_state("a.test")
    for outcome in (Outcome.UNREACHABLE, Outcome.SERVER_ERROR, outcome_of(404)):
        policy.report(state, outcome)
    assert policy.cap(state) == 8
    policy.report(state, outcome_of(503), status=503)
    assert policy.cap(state) == 4
    policy.report(state, outcome_of(None, timed_out=True))  # within the decrease interval: the same burst
    assert policy.cap(state) == 4
    clock.now += 1.0
    policy.report(state, outcome_of(None, timed_out=True))
    assert policy.cap(state) == 2
    for _ in range(60):  # additive: about one more per cap's worth of good answers
        policy.report(state, Outcome.SUCCESS)
    assert policy.cap(state) == 8


def test_rising_latency_is_a_congestion_signal() -> None:
    clock = Clock()
    policy = SitePolicy(per_site=8, clock=clock, robots_first=False)
    state = policy.new_state("a.test")
    for _ in range(5):
        policy.report(state, Outcome.SUCCESS, ttfb_s=0.05)
    assert policy.cap(state) == 8
    policy.report(state, Outcome.SUCCESS, ttfb_s=0.9)
    assert policy.cap(state) == 4


def test_backoff_honours_retry_after_and_does_not_escalate_within_one_backoff() -> None:
    clock = Clock()
    policy = SitePolicy(per_site=4, clock=clock, wall_clock=lambda: 0.0, robots_first=False, backoff_base_s=1.0)
    state = policy.new_state("a.test")
    policy.report(state, outcome_of(429), status=429, retry_after="3")
    assert policy.ready_at(state) == clock.now + 3
    policy.report(state, outcome_of(503), status=503)  # answered during the backoff: not the next level
    assert state.backoff_streak == 1
    assert state.failures == 1  # a 503 counts for the circuit, a 429 does not


async def test_circuit_refuses_then_lets_one_trial_through() -> None:
    clock = Clock()
    f = frontier(clock, per_site=4, circuit_failures=2, circuit_cooldown_s=10.0)
    for n in range(5):
        await f.put(f"http://a.test/{n}", str(n))
    leases = [f.poll(), f.poll()]
    for lease in leases:
        assert lease is not None
        f.release(lease, Outcome.UNREACHABLE, reason="Connection refused")
    refused = f.poll()
    assert refused is not None
    assert refused.refusal is not None
    assert "after 2 consecutive failures (last: Connection refused)" in refused.refusal
    assert f.circuit("a.test") == "open"
    clock.now += 10
    assert f.circuit("a.test") == "half-open"
    trial = f.poll()
    assert trial is not None
    assert trial.refusal is None
    assert f.poll() is None  # one trial at a time
    f.release(trial, Outcome.SUCCESS)
    assert f.circuit("a.test") == "closed"
    assert len(take_all(f)) == 1


async def test_the_reader_looks_further_ahead_only_while_every_site_at_hand_waits() -> None:
    clock = Clock()
    f = Frontier[str](policy=SitePolicy(per_site=1, robots_first=False, clock=clock), max_pending=100, min_pending=2)
    await f.put("http://slow.test/1", "s1")
    await f.put("http://slow.test/2", "s2")
    f.set_rules("http://slow.test/", 5.0)
    assert not f.wants_input()  # min_pending reached, and a request may start now
    lease = f.poll()
    assert lease is not None
    assert f.wants_input()  # slow.test waits 5 s for its next turn: read on to find other sites
    await f.put("http://fast.test/1", "f1")
    assert not f.wants_input()  # fast.test may start now: no need to read further
    assert f.poll() is not None
    assert f.wants_input()
    f.close_input()
    assert f.wants_input()  # nobody waits for input that will not come


async def test_put_waits_while_the_look_ahead_bound_is_full() -> None:
    clock = Clock()
    f = Frontier[str](policy=SitePolicy(per_site=1, robots_first=False, clock=clock), max_pending=2)
    await f.put("http://a.test/1", "1")
    await f.put("http://a.test/2", "2")
    third = asyncio.ensure_future(f.put("http://b.test/3", "3"))
    await asyncio.sleep(0)
    assert not third.done()
    assert f.poll() is not None  # one leaves the queue: room for the third
    await asyncio.wait_for(third, 1)
    assert f.pending == 2


async def test_next_returns_none_once_the_input_is_over_and_everything_released() -> None:
    f: Frontier[str] = Frontier.from_config(EnrichConfig().replace(politeness={"respect_robots": False}))
    await f.put("http://a.test/1", "1")
    f.close_input()
    lease = await asyncio.wait_for(f.next(), 1)
    assert lease is not None
    waiter = asyncio.ensure_future(f.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    f.release(lease, Outcome.SUCCESS)
    assert await asyncio.wait_for(waiter, 1) is None


async def test_drain_returns_everything_queued() -> None:
    clock = Clock()
    f = frontier(clock)
    await f.put("http://a.test/1", "1")
    f.push("http://b.test/2", "2", not_before=clock.now + 60)
    assert sorted(f.drain()) == ["1", "2"]
    assert f.pending == 0


def test_a_rate_limiter_sets_the_sites_pace_to_what_it_let_through() -> None:
    clock = Clock()
    policy = SitePolicy(per_site=8, clock=clock, wall_clock=lambda: 0.0, robots_first=False)
    state = policy.new_state("a.test")
    for _ in range(4):  # four answers within the last second, then the limiter says no
        clock.now += 0.25
        policy.report(state, Outcome.SUCCESS)
    policy.report(state, outcome_of(429), status=429, retry_after="1")
    assert state.pace == pytest.approx(0.25 * 1.05)  # 4 let through in the 1 s before: a bit under 4 a second
    policy.report(state, outcome_of(429), status=429, retry_after="1")  # answered during the backoff: no new pace
    assert state.pace == pytest.approx(0.2625)
    policy.start(state, clock.now + 1)
    assert policy.ready_at(state) == pytest.approx(clock.now + 1.2625)
    for _ in range(10):
        policy.report(state, Outcome.SUCCESS)
    assert state.pace == pytest.approx(0.2625)  # held a while...
    clock.now += 31
    for _ in range(10):
        policy.report(state, Outcome.SUCCESS)
    assert state.pace < 0.2625  # ...then probed back up


def test_a_lone_429_right_after_a_backoff_does_not_slow_the_site() -> None:
    clock = Clock()
    policy = SitePolicy(per_site=8, clock=clock, wall_clock=lambda: 0.0, robots_first=False)
    state = policy.new_state("a.test")
    policy.report(state, outcome_of(429), status=429, retry_after="2")
    clock.now += 2.1  # the backoff is over; a burst of good answers, then one more 429
    for _ in range(5):
        policy.report(state, Outcome.SUCCESS)
    assert state.pace == 0.0  # the first 429 came with nothing let through: no rate to keep to
    policy.report(state, outcome_of(429), status=429, retry_after="2")
    assert state.pace == 0.0


def test_no_pacing_without_adaptive_congestion_control() -> None:
    clock = Clock()
    policy = SitePolicy(per_site=8, adaptive=False, clock=clock, wall_clock=lambda: 0.0, robots_first=False)
    state = policy.new_state("a.test")
    policy.report(state, outcome_of(429), status=429, retry_after="1")
    assert state.pace == 0.0
    assert policy.cap(state) == 8


def test_refusals_that_come_whatever_the_pace_slow_a_site_only_so_far() -> None:
    clock = Clock()
    policy = SitePolicy(per_site=8, clock=clock, wall_clock=lambda: 0.0, robots_first=False)
    state = policy.new_state("a.test")
    for _ in range(30):  # a server that refuses one request in twenty, whatever the rate
        for _ in range(20):
            clock.now += 0.05
            policy.report(state, Outcome.SUCCESS)
        policy.report(state, outcome_of(429), status=429, retry_after="1")
        clock.now += 1.0
    first = 1.05 / 20
    assert state.pace == pytest.approx(2 * first)


class TextCodec:
    def encode(self, payload: str, /) -> bytes:
        return payload.encode()

    def decode(self, data: bytes, /) -> str:
        return data.decode()


async def test_a_long_run_of_one_slow_sites_urls_is_spilled_and_comes_back_in_order() -> None:
    clock = Clock()
    f = Frontier[str](
        policy=SitePolicy(per_site=1, robots_first=False, clock=clock),
        max_pending=6,
        min_pending=2,
        spill=SpillStore(TextCodec()),
        max_site_pending=4,
        max_probe=100,
    )
    try:
        f.set_rules("http://slow.test/", 1.0)
        first = f.poll()
        assert first is None
        for n in range(20):
            await asyncio.wait_for(f.put(f"http://slow.test/{n}", f"s{n}"), 1)
            if n == 0:
                lease = f.poll()  # the slow site's first request goes; the next waits a second
                assert lease is not None
                f.release(lease, Outcome.SUCCESS)
        assert f.storage.count("slow.test") == 4  # its share in memory, the rest on disk
        assert f.spill is not None
        assert f.spill.count("slow.test") == 15
        assert f.wants_input()  # every site at hand waits: read on
        await asyncio.wait_for(f.put("http://fast.test/1", "f1"), 1)
        assert not f.wants_input()
        assert take_all(f) == ["f1"]  # found and fetched while the slow site waits
        taken = []
        while len(taken) < 19:
            clock.now += 1.1
            lease = f.poll()
            assert lease is not None
            taken.append(lease.payload)
            f.release(lease, Outcome.SUCCESS)
        assert taken == [f"s{n}" for n in range(1, 20)]
        assert f.pending == 0
        assert f.stats()["spilled"] == 15
    finally:
        f.close()


async def test_the_search_for_other_sites_gives_up_after_max_probe_entries_of_known_ones() -> None:
    clock = Clock()
    f = Frontier[str](
        policy=SitePolicy(per_site=1, robots_first=False, clock=clock),
        max_pending=4,
        min_pending=1,
        spill=SpillStore(TextCodec()),
        max_site_pending=2,
        max_probe=5,
    )
    try:
        await f.put("http://one.test/0", "0")
        assert f.poll() is not None  # the only site is at its cap: nothing may start
        read = 0
        while f.wants_input() and read < 50:
            read += 1
            await asyncio.wait_for(f.put(f"http://one.test/{read}", str(read)), 1)
        assert read == 1 + 5  # one to keep min_pending queued, then five in a row of the same site: give up
        f.add("http://two.test/0", "x")  # a new site (e.g. read while memory had room) starts a new search
        f.poll()
        assert f.wants_input()
    finally:
        f.close()


class SteppingClock:
    """Reads ``first`` once when armed, then ``later`` forever: a poll's own reading is older than the clock's by
    the time it reschedules. Gives up after ``limit`` readings (a loop that never ends would otherwise hang)."""

    def __init__(self, now: float, limit: int = 10_000) -> None:
        self.now, self.first, self.calls, self.limit = now, None, 0, limit

    def __call__(self) -> float:
        self.calls += 1
        if self.calls > self.limit:
            raise RuntimeError("the clock was read without end: a poll loops")
        if self.first is not None:
            value, self.first = self.first, None
            return value
        return self.now


def test_a_site_not_ready_by_the_polls_own_time_is_not_polled_again_in_a_loop() -> None:
    clock = SteppingClock(11.0)
    f = frontier(clock)  # type: ignore[arg-type]
    f.add("http://a.test/1", "a1")  # ready now (11.0): in the ready heap
    f.site("http://a.test/").next_start = 10.5  # a Crawl-delay turn, reserved without a reschedule
    clock.first = 10.0  # the poll decides by 10.0; everything after it reads 11.0
    assert f.poll() is None  # once livelocked here: not ready at 10.0, rescheduled as ready at 11.0, popped again
    lease = f.poll()
    assert lease is not None
    assert lease.payload == "a1"


class ScriptedGate:
    """A gate whose answers the test sets per site (the real one, in Redis, is tested in test_distributed.py)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[str | None, float, str | None]] = {}
        self.asked: list[tuple[str, int, float]] = []
        self.stamped: list[tuple[str, float]] = []
        self.released: list[tuple[str, str, float, float, str]] = []

    def acquire(self, site: str, *, cap: int, spacing_s: float) -> tuple[str | None, float, str | None]:
        self.asked.append((site, cap, spacing_s))
        return self.answers.get(site, (f"permit-{len(self.asked)}", 0.0, None))

    def stamp(self, site: str, token: str, *, spacing_s: float) -> None:
        self.stamped.append((site, spacing_s))

    def release(self, site: str, token: str, *, rest_s: float, open_s: float = 0.0, reason: str = "") -> None:
        self.released.append((site, token, rest_s, open_s, reason))


async def test_a_gate_refusal_makes_the_site_wait_and_others_go_on() -> None:
    clock = Clock()
    gate = ScriptedGate()
    f = frontier(clock, gate)
    for n in range(2):
        await f.put(f"http://shared.test/{n}", f"shared{n}")
        await f.put(f"http://mine.test/{n}", f"mine{n}")
    f.set_rules("http://shared.test/", 1.0)
    gate.answers["shared.test"] = (None, 0.5, None)  # another worker's turn on it for 0.5 s
    assert take_all(f) == ["mine0", "mine1"]
    assert f.wait_s() == pytest.approx(0.5)
    assert ("shared.test", 2, 1.0 + CRAWL_DELAY_MARGIN_S) in gate.asked  # the cap and spacing this worker knows
    clock.now += 0.5
    del gate.answers["shared.test"]
    (lease,) = list(iter(f.poll, None))
    assert lease.payload == "shared0"
    assert lease.permit is not None
    f.starting(lease)
    assert gate.stamped == [("shared.test", 1.0 + CRAWL_DELAY_MARGIN_S)]
    f.release(lease, Outcome.SUCCESS)
    site, token, rest, open_s, _ = gate.released[-1]
    assert (site, token, open_s) == ("shared.test", lease.permit, 0.0)
    assert rest == pytest.approx(1.0 + CRAWL_DELAY_MARGIN_S)  # its Crawl-delay, counted from its start


async def test_a_circuit_opened_by_another_worker_refuses_without_fetching() -> None:
    clock = Clock()
    gate = ScriptedGate()
    f = frontier(clock, gate)
    await f.put("http://down.test/a", "a")
    gate.answers["down.test"] = (None, 20.0, "circuit open for down.test (shared)")
    lease = f.poll()
    assert lease is not None
    assert lease.refusal == "circuit open for down.test (shared)"
    assert lease.released  # nothing held: the engine writes the refusal as the URL's record
    assert f.in_flight == 0


async def test_a_circuit_that_opens_here_is_opened_for_every_worker() -> None:
    clock = Clock()
    gate = ScriptedGate()
    f = frontier(clock, gate, per_site=1, circuit_failures=2, circuit_cooldown_s=30)
    for n in range(3):
        await f.put(f"http://down.test/{n}", str(n))
    for _ in range(2):
        lease = f.poll()
        assert lease is not None
        f.release(lease, outcome_of(None), reason="Connection refused")
    _, _, _, open_s, reason = gate.released[-1]
    assert open_s == pytest.approx(30.0)
    assert reason.startswith("circuit open for down.test after 2 consecutive failures")
