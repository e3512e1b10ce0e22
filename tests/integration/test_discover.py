"""Stage 1 (discovery) against a loopback site: whole sitemaps (indexes, gzip, text, feeds) and stage 3's policies."""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from crawler.discover import DiscoverConfig, Discoverer
from crawler.localsite import ServerThread
from crawler.sitemaps import parse_sitemap
from enrich.config import EnrichConfig
from enrich.urls import normalize_url

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))
import multisite_web as msw  # noqa: E402

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
PER_SITEMAP = 3_000


def urlset(base: str, prefix: str, count: int) -> bytes:
    entries = "".join(f"<url><loc>{base}/{prefix}/{n}</loc><lastmod>2024-01-15</lastmod></url>" for n in range(count))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{NS}">{entries}</urlset>'.encode()


class Site:
    """A site whose robots.txt lists a sitemap index (one plain and one gzipped sitemap of 3,000 URLs each), a
    text sitemap and an RSS feed; ``robots`` replaces its robots.txt, ``(status, body)``."""

    def __init__(self, robots: tuple[int, str] | None = None, *, flaky_sitemap: bool = False) -> None:
        self.robots = robots
        self.flaky_sitemap = flaky_sitemap
        self.hits: list[tuple[float, str]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.hits.append((time.monotonic(), request.path))
            base = f"http://{request.host}"
            path = request.path
            if path == "/robots.txt":
                if self.robots is not None:
                    return web.Response(status=self.robots[0], text=self.robots[1])
                lines = ["User-agent: *", "Disallow: /private/"]
                lines += [f"Sitemap: {base}/{name}" for name in ("sitemap_index.xml", "urls.txt", "feed.rss")]
                return web.Response(text="\n".join(lines) + "\n")
            if path == "/sitemap_index.xml":
                entries = "".join(f"<sitemap><loc>{base}/{n}</loc></sitemap>" for n in ("plain.xml", "zipped.xml.gz"))
                return web.Response(
                    text=f'<sitemapindex xmlns="{NS}">{entries}</sitemapindex>', content_type="text/xml"
                )
            if path == "/plain.xml":
                return web.Response(body=urlset(base, "plain", PER_SITEMAP), content_type="application/xml")
            if path == "/zipped.xml.gz":  # gzip as the file's own format, not as a content coding
                body = gzip.compress(urlset(base, "zipped", PER_SITEMAP))
                return web.Response(body=body, content_type="application/gzip")
            if path == "/urls.txt":
                return web.Response(text=f"{base}/text/1\n{base}/text/2\n{base}/private/secret\n")
            if path == "/feed.rss":
                items = "".join(f"<item><title>{n}</title><link>{base}/news/{n}</link></item>" for n in range(3))
                return web.Response(
                    text=f"<rss version='2.0'><channel>{items}</channel></rss>", content_type="text/xml"
                )
            if path == "/sitemap.xml" and self.flaky_sitemap:  # busy once, then there
                if sum(1 for _, p in self.hits if p == path) == 1:
                    return web.Response(status=503, headers={"Retry-After": "0"}, text="busy")
                return web.Response(body=urlset(base, "flaky", 3), content_type="application/xml")
            if path == "/bomb.xml.gz":
                return web.Response(body=gzip.compress(b" " * 50_000_000), content_type="application/gzip")
            if path.startswith("/page/"):
                n = int(path.rsplit("/", 1)[1])
                links = "".join(f'<a href="/page/{m}">p{m}</a>' for m in range(n + 1, n + 3))
                return web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")
            return web.Response(status=404, text="no")

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        return app


async def discover(seeds: list[str], enrich: EnrichConfig | None = None, **config: object) -> Discoverer:
    discoverer = Discoverer.from_config(DiscoverConfig.model_validate(config), enrich=enrich)
    await discoverer.run(seeds)
    return discoverer


async def test_whole_sitemaps_indexes_gzip_text_and_feeds() -> None:
    site = Site()
    with ServerThread(site.app) as server:
        base = server.url
        result = (await discover([f"{base}/"], max_depth=0, max_pages=100_000)).result
    urls = set(result.urls)
    for prefix in ("plain", "zipped"):  # each sitemap is ~200 KB: many network chunks, all read
        assert {f"{base}/{prefix}/{n}" for n in range(PER_SITEMAP)} <= urls, prefix
    assert {f"{base}/text/1", f"{base}/text/2", *(f"{base}/news/{n}" for n in range(3))} <= urls
    assert len(urls) == 1 + 2 * PER_SITEMAP + 2 + 3
    assert f"{base}/private/secret" not in urls
    assert result.counts["robots_disallowed"] == 1
    assert result.counts["sitemaps_read"] == 5  # the index, its two sitemaps, the text sitemap, the feed


async def test_a_robots_5xx_disallows_the_site_as_in_stage_3() -> None:
    site = Site(robots=(503, "busy"))
    with ServerThread(site.app) as server:
        result = (await discover([f"{server.url}/page/0"], max_depth=2)).result
    assert result.urls == []
    assert result.counts["robots_disallowed"] == 1
    assert [path for _, path in site.hits] == ["/robots.txt"]


async def test_crawl_delay_spaces_a_sites_requests() -> None:
    site = Site(robots=(200, "User-agent: *\nCrawl-delay: 0.2\n"))
    with ServerThread(site.app) as server:
        result = (await discover([f"{server.url}/page/0"], max_depth=2, use_sitemaps=False, concurrency=8)).result
    assert len(result.urls) == 5  # /page/0..4
    starts = [t for t, path in site.hits if path.startswith("/page/")]
    assert len(starts) == 3  # depth 0 and 1 are fetched for links; depth 2 is only listed
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.15, gaps  # 0.2 s spacing, judged at the server


async def test_failures_are_retried_as_in_stage_3() -> None:
    site = Site(robots=(200, "User-agent: *\n"), flaky_sitemap=True)
    enrich = EnrichConfig().replace(fetch={"backoff_base_s": 0.01, "backoff_cap_s": 0.05})
    with ServerThread(site.app) as server:
        result = (await discover([f"{server.url}/"], enrich=enrich, max_depth=0)).result
    assert sorted(result.urls) == sorted([f"{server.url}/", *(f"{server.url}/flaky/{n}" for n in range(3))])
    assert result.counts["retries"] == 1
    assert [path for _, path in site.hits].count("/sitemap.xml") == 2


async def test_private_addresses_are_refused_when_the_policy_says_so() -> None:
    site = Site()
    enrich = EnrichConfig().replace(politeness={"allow_private_addresses": False})
    with ServerThread(site.app) as server:
        result = (await discover([f"{server.url}/page/0"], enrich=enrich, max_depth=1)).result
    assert site.hits == []
    assert result.urls == []  # robots.txt could not be fetched: the site is disallowed


def test_a_gzip_bomb_sitemap_is_cut_at_the_cap() -> None:
    body = gzip.compress(b" " * 50_000_000)
    content = parse_sitemap(body, "http://x.test/bomb.xml.gz", max_bytes=1_000_000)
    assert content.truncated
    assert content.kind == "invalid"


# --- discovery on the frontier, over a web of several sites --------------------------------------------------------

WEB = [
    msw.SiteSpec("plain", "127.0.0.10", 30, 5, redirect_rate=0.1),
    msw.SiteSpec("slow", "127.0.0.11", 5, 5, crawl_delay_s=0.2),
    msw.SiteSpec("busy", "127.0.0.12", 12, 5, "throttled", max_rps=3, retry_after_s=1, redirect_rate=0),
    msw.SiteSpec("broken", "127.0.0.13", 8, 5, "always503"),
    msw.SiteSpec("gone", "127.0.0.14", 3, 0, "refused"),
    msw.SiteSpec("nowhere", "nowhere.invalid", 2, 0, "unresolvable"),
]


async def test_discovery_is_polite_at_the_server_across_many_sites() -> None:
    """Every seed page is fetched for its links through the frontier: the per-site cap, Crawl-delay, a 429's
    Retry-After (for the whole site, not the one request) and robots.txt on a redirect hop into another site hold,
    judged at the server; dead sites end in counted failures, and the always-503 site trips its circuit."""
    enrich = EnrichConfig().replace(
        fetch={"backoff_base_s": 0.01, "backoff_cap_s": 0.1, "retries": 2},
        politeness={"per_domain_concurrency": 2, "circuit_failures": 3},
    )
    with msw.MultiSiteWeb(WEB) as web:
        seeds = web.urls("shuffled", seed=4)
        discoverer = await discover(seeds, enrich=enrich, max_depth=1, use_sitemaps=False, concurrency=16)
        report = web.politeness_report(per_site_cap=2)
    result = discoverer.result
    assert report.breaches == []
    assert report.sites["busy"].served_429 > 0  # the throttle was met, and its Retry-After obeyed
    dead = tuple(s.host for s in WEB if s.kind in ("refused", "unresolvable"))
    listed = set(result.urls)
    assert {u for u in seeds if urlsplit(u).hostname not in dead} <= listed
    assert not any(urlsplit(u).hostname in dead for u in listed)  # their robots.txt is unreachable: disallowed
    assert result.counts["robots_disallowed"] == sum(s.pages for s in WEB if s.kind in ("refused", "unresolvable"))
    assert result.counts["http_503"] >= 1
    assert result.counts["http_404"] >= 1
    assert result.counts["refused"] >= 1  # the redirect hop into slow's /private/
    assert result.frontier["circuit_opens"] >= 1
    assert result.frontier["backoffs"] >= 1


async def test_discovery_stops_at_the_page_limit() -> None:
    site = Site(robots=(200, "User-agent: *\n"))
    with ServerThread(site.app) as server:
        result = (await discover([f"{server.url}/page/0"], max_depth=50, max_pages=20, use_sitemaps=False)).result
    assert len(result.urls) == 20
    pages = [path for _, path in site.hits if path.startswith("/page/")]
    assert len(pages) < 20  # queued pages are dropped once the list is full: nothing more to learn from them


WEB_CONFIG = """\
stages:
  discover:
    max_depth: 1
    use_sitemaps: false
    concurrency: 16
  enrichment:
    retries: 2
    backoff_base: 0.01
    backoff_cap: 0.1
    per_domain_limit: 2
    circuit_failures: 3
"""


@pytest.mark.parametrize("engine", ["--async-enrichment", "--no-async-enrichment"])
def test_both_engines_discover_the_same_urls_politely(engine: str, tmp_path: Path) -> None:
    """``--stage 1`` from the command line, in either engine, over the multi-site web: the same URLs listed and
    the same politeness at the server (the Scrapy spider runs the same plan on the same frontier)."""
    config = tmp_path / "config.yml"
    config.write_text(WEB_CONFIG, encoding="utf-8")
    with msw.MultiSiteWeb(WEB) as web:
        seeds = tmp_path / "seeds.txt"
        seeds.write_text("\n".join(web.urls("shuffled", seed=4)) + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "crawler", "--stage", "1", engine, "--seeds", str(seeds)]
        command += ["--config", str(config), "--data-dir", str(tmp_path / "d")]
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
        report = web.politeness_report(per_site_cap=2)
        expected = sorted({normalize_url(u) for u in web.urls()})
    assert done.returncode == 0, done.stderr
    assert report.breaches == []
    assert report.sites["busy"].served_429 > 0
    listed = (tmp_path / "d/stage01/discovered_urls.txt").read_text().splitlines()
    dead = ("127.0.0.14", "nowhere.invalid")
    assert sorted(u for u in listed if "/p/" in u) == [u for u in expected if urlsplit(u).hostname not in dead]
    summary = json.loads((tmp_path / "d/stage01/discover_report.json").read_text())
    assert summary["engine"] == engine.removeprefix("--").removesuffix("-enrichment").replace("no-async", "scrapy")
    assert summary["refused"] >= 1  # the redirect hop into slow's /private/
    assert summary["http_503"] >= 1
    assert summary["frontier"]["circuit_opens"] >= 1
    assert summary["interrupted"] is False
    assert "Stage 1: discover" in done.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "pass -a urls_out=FILE"),
        (["-a", "urls_out=u.txt", "-a", "max_depth=-1"], "max_depth: Input should be greater than or equal to 0"),
        (["-a", "urls_out=u.txt", "-a", "discover=missing.json"], "invalid discover settings"),
    ],
)
def test_the_scrapy_discover_spider_rejects_bad_arguments(arguments: list[str], message: str, tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    command = [sys.executable, "-m", "scrapy", "crawl", "discover", "-a", f"input={seeds}", *arguments]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert message in done.stderr
