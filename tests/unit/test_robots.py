"""robots.txt policy: parsing, status handling, caching, one fetch per site, crawl delay. Fake fetcher and clock."""

from __future__ import annotations

import asyncio

import pytest

from enrich.config import FetchConfig, PolitenessConfig
from enrich.errors import FetchError
from enrich.policy.robots import (
    MAX_ROBOTS_BYTES,
    RobotsDisallowedError,
    RobotsPolicy,
    robots_url,
    site_of,
    user_agent_token,
)

ROBOTS = """User-agent: *
Disallow: /private/
Crawl-delay: 2

User-agent: webenrich
Disallow: /no-enrich/
Crawl-delay: 3

User-agent: otherbot
Disallow: /

Sitemap: http://a.test/sitemap.xml
"""

UA = "webenrich/0.1 (+https://github.com/webenrich/webenrich)"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeFetcher:
    """Answers from a table ``robots URL -> (status, text) | exception``; counts calls; can be held open."""

    def __init__(self, answers: dict[str, tuple[int, str] | BaseException]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, url: str) -> tuple[int, str]:
        self.calls.append(url)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.get(url, (404, ""))
        if isinstance(answer, BaseException):
            raise answer
        return answer


def make(fetcher: FakeFetcher, clock: FakeClock | None = None, **kwargs: object) -> RobotsPolicy:
    options: dict[str, object] = {"fetch_robots": fetcher, "user_agent": UA, "clock": clock or FakeClock()}
    options.update(kwargs)
    return RobotsPolicy(**options)  # type: ignore[arg-type]


# --- helpers --------------------------------------------------------------------------------------------------


def test_site_and_robots_url() -> None:
    assert site_of("http://user:pw@A.test/x?y") == "http://a.test:80"
    assert site_of("https://a.test/") == "https://a.test:443"
    assert site_of("http://127.0.0.2:8080/p") == "http://127.0.0.2:8080"
    assert site_of("http://[::1]:81/") == "http://[::1]:81"
    assert robots_url("http://user:pw@a.test/deep/page?q=1") == "http://a.test/robots.txt"
    assert robots_url("https://a.test:8443/x") == "https://a.test:8443/robots.txt"
    with pytest.raises(ValueError, match="no scheme or host"):
        site_of("/relative/path")


@pytest.mark.parametrize(
    ("agent", "token"),
    [(UA, "webenrich"), ("webenrich/0.1 (+x) contact: me@x.test", "webenrich"), ("MyBot", "mybot"), ("", "*")],
)
def test_user_agent_token(agent: str, token: str) -> None:
    assert user_agent_token(agent) == token


def test_from_config() -> None:
    fetcher = FakeFetcher({})
    policy = RobotsPolicy.from_config(
        PolitenessConfig(respect_robots=False, max_crawl_delay_s=4),
        FetchConfig(user_agent="Crawly/2.0", contact="ops@example.test"),
        fetch_robots=fetcher,
    )
    assert (policy.enabled, policy.max_crawl_delay_s, policy.token) == (False, 4, "crawly")
    assert policy.user_agent == "Crawly/2.0 contact: ops@example.test"


# --- rules ----------------------------------------------------------------------------------------------------


async def test_parsed_rules_use_our_group() -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, ROBOTS)})
    policy = make(fetcher)
    assert await policy.allowed("http://a.test/")
    assert await policy.allowed("http://a.test/private/x")  # only the * group forbids it; ours is more specific
    assert not await policy.allowed("http://a.test/no-enrich/page")
    assert await policy.check("http://a.test/no-enrich/page?q=1") == (
        "robots.txt of http://a.test:80 disallows /no-enrich/page?q=1 for webenrich"
    )
    assert await policy.crawl_delay("http://a.test/") == 3
    assert await policy.sitemaps("http://a.test/") == ["http://a.test/sitemap.xml"]
    assert fetcher.calls == ["http://a.test/robots.txt"]  # parsed once, cached


async def test_star_group_applies_to_other_agents() -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, ROBOTS)})
    policy = make(fetcher, user_agent="SomeCrawler/1.0")
    assert not await policy.allowed("http://a.test/private/x")
    assert await policy.allowed("http://a.test/no-enrich/page")
    assert await policy.crawl_delay("http://a.test/") == 2


async def test_crawl_delay_is_capped() -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, "User-agent: *\nCrawl-delay: 3600\n")})
    policy = make(fetcher, max_crawl_delay_s=10.0)
    assert await policy.crawl_delay("http://a.test/") == 10


async def test_no_crawl_delay() -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, "User-agent: *\nDisallow:\n")})
    assert await make(fetcher).crawl_delay("http://a.test/") is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451, 302, 100])
async def test_unavailable_allows_everything(status: int) -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (status, "User-agent: *\nDisallow: /\n")})
    policy = make(fetcher)
    assert await policy.allowed("http://a.test/anything")
    assert await policy.crawl_delay("http://a.test/") is None
    assert policy.stats()["unavailable"] == 1


@pytest.mark.parametrize("answer", [(500, ""), (503, "busy"), (429, ""), ConnectionResetError("reset by peer")])
async def test_unreachable_disallows_for_a_while(answer: tuple[int, str] | BaseException) -> None:
    clock = FakeClock()
    fetcher = FakeFetcher({"http://a.test/robots.txt": answer})
    policy = make(fetcher, clock, unreachable_ttl_s=60.0)
    reason = await policy.check("http://a.test/page")
    assert reason is not None
    assert reason.startswith("robots.txt of http://a.test:80 unreachable (")
    assert reason.endswith("); the site is disallowed for 60 s")
    assert await policy.check("http://a.test/other") == reason
    assert len(fetcher.calls) == 1
    clock.now = 61
    fetcher.answers["http://a.test/robots.txt"] = (200, "")
    assert await policy.allowed("http://a.test/page")
    assert len(fetcher.calls) == 2
    assert policy.stats()["unreachable"] == 1


async def test_unreachable_reason_names_status_or_error() -> None:
    fetcher = FakeFetcher(
        {"http://a.test/robots.txt": (503, ""), "http://b.test/robots.txt": TimeoutError()},
    )
    policy = make(fetcher)
    assert "(HTTP 503)" in (await policy.check("http://a.test/") or "")
    assert "(TimeoutError)" in (await policy.check("http://b.test/") or "")


async def test_parsed_rules_expire_after_ttl() -> None:
    clock = FakeClock()
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, ROBOTS)})
    policy = make(fetcher, clock, ttl_s=100.0)
    await policy.allowed("http://a.test/")
    clock.now = 99
    await policy.allowed("http://a.test/")
    clock.now = 101
    await policy.allowed("http://a.test/")
    assert len(fetcher.calls) == 2


async def test_cache_is_per_scheme_host_and_port() -> None:
    fetcher = FakeFetcher(
        {
            "http://a.test/robots.txt": (200, "User-agent: *\nDisallow: /x\n"),
            "http://a.test:8080/robots.txt": (200, "User-agent: *\nDisallow: /y\n"),
        }
    )
    policy = make(fetcher)
    assert not await policy.allowed("http://a.test/x")
    assert await policy.allowed("http://a.test:8080/x")
    assert not await policy.allowed("http://a.test:8080/y")
    assert await policy.allowed("https://a.test/x")  # https has its own robots.txt (404 here)
    assert await policy.allowed("http://A.TEST:80/y")
    assert len(fetcher.calls) == 3


async def test_cache_is_bounded() -> None:
    fetcher = FakeFetcher({})
    policy = make(fetcher, max_sites=3)
    for n in range(10):
        await policy.allowed(f"http://s{n}.test/")
    assert policy.stats()["cached_sites"] == 3
    await policy.allowed("http://s9.test/")
    await policy.allowed("http://s0.test/")
    assert len(fetcher.calls) == 11


async def test_one_fetch_in_flight_per_site() -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, ROBOTS)})
    fetcher.gate = asyncio.Event()
    policy = make(fetcher)
    tasks = [asyncio.create_task(policy.allowed(f"http://a.test/no-enrich/{n}")) for n in range(20)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert fetcher.calls == ["http://a.test/robots.txt"]
    fetcher.gate.set()
    assert await asyncio.gather(*tasks) == [False] * 20
    assert fetcher.calls == ["http://a.test/robots.txt"]


async def test_cancelled_caller_does_not_cancel_the_shared_fetch() -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, ROBOTS)})
    fetcher.gate = asyncio.Event()
    policy = make(fetcher)
    first = asyncio.create_task(policy.allowed("http://a.test/no-enrich/1"))
    second = asyncio.create_task(policy.allowed("http://a.test/no-enrich/2"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    fetcher.gate.set()
    assert await second is False
    assert first.cancelled()
    assert len(fetcher.calls) == 1


async def test_close_cancels_fetches_in_flight() -> None:
    fetcher = FakeFetcher({})
    fetcher.gate = asyncio.Event()
    policy = make(fetcher)
    waiter = asyncio.create_task(policy.allowed("http://a.test/"))
    await asyncio.sleep(0)
    await policy.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_robots_txt_itself_and_huge_files() -> None:
    huge = "User-agent: *\nDisallow: /a\n" + "# padding\n" * (MAX_ROBOTS_BYTES // 10) + "Disallow: /b\n"
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, huge)})
    policy = make(fetcher)
    assert await policy.allowed("http://a.test/robots.txt")
    assert not await policy.allowed("http://a.test/a")
    assert await policy.allowed("http://a.test/b")  # past the parse limit


async def test_disabled_allows_everything_without_fetching() -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, "User-agent: *\nDisallow: /\nCrawl-delay: 5\n")})
    policy = make(fetcher, enabled=False)
    assert await policy.allowed("http://a.test/x")
    assert await policy.check("http://a.test/y") is None
    assert await policy.crawl_delay("http://a.test/") is None
    assert await policy.sitemaps("http://a.test/") == []
    assert (await policy.rules_for("http://a.test/")).kind == "disabled"
    assert fetcher.calls == []
    stats = policy.stats()
    assert stats["enabled"] is False
    assert stats["skipped"] == 2
    assert stats["fetches"] == 0


async def test_stats_counts() -> None:
    fetcher = FakeFetcher({"http://a.test/robots.txt": (200, ROBOTS)})
    policy = make(fetcher)
    await policy.allowed("http://a.test/")
    await policy.allowed("http://a.test/no-enrich/")
    stats = policy.stats()
    assert stats["enabled"] is True
    assert (stats["fetches"], stats["parsed"], stats["allowed"], stats["disallowed"]) == (1, 1, 1, 1)
    assert stats["cache_hits"] == 1


def test_robots_disallowed_error() -> None:
    exc = RobotsDisallowedError("robots.txt of http://a.test:80 disallows /x for webenrich", url="http://a.test/x")
    assert isinstance(exc, FetchError)
    assert (exc.url, exc.attempts) == ("http://a.test/x", 0)
