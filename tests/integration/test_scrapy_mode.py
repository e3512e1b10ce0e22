"""Scrapy mode end to end: the real ``scrapy crawl enrich`` against a real local server.

Scrapy runs in a subprocess (a Twisted reactor starts only once per process); the server runs in a thread of the
test process, so the crawl really goes over loopback sockets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from twisted.internet.error import DNSLookupError
from twisted.python.failure import Failure

from crawler.demo import DEMO_ROOT, demo_pages
from crawler.localsite import ServerThread, static_app
from crawler.scrapy_mode.settings import scrapy_settings_for
from crawler.scrapy_mode.spiders.enrich import fetch_error
from enrich.config import EnrichConfig

if TYPE_CHECKING:
    from collections.abc import Iterator

    from jsonschema import Draft202012Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
CRAWL_TIMEOUT_S = 180

ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n"
BIG_BODY = b"<html><body>" + b"<p>filler text</p>" * 5_000 + b"</body></html>"  # ~90 KB


FLAKY_HITS: list[float] = []
"""When ``/flaky`` was requested (server side): 500 the first time, 200 after."""

BUSY_HITS: list[float] = []
"""When ``/busy`` was requested (server side): always 429 with ``Retry-After: 3600``."""


def error_routes() -> dict[str, Any]:
    """Routes the demo site lacks: statuses, redirects, a slow page and bodies over a small size cap."""

    async def status(request: web.Request) -> web.StreamResponse:
        return web.Response(status=int(request.path.rsplit("/", 1)[1]), text="no luck", content_type="text/html")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/lighthouse.html")

    async def redirect_loop(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/redirect-loop")

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(10)
        return web.Response(text="<p>too late</p>", content_type="text/html")

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BIG_BODY, content_type="text/html")

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(BIG_BODY), 8192):
            await response.write(BIG_BODY[start : start + 8192])
        await response.write_eof()
        return response

    async def busy(request: web.Request) -> web.StreamResponse:
        BUSY_HITS.append(time.monotonic())
        return web.Response(status=429, headers={"Retry-After": "3600"}, text="come back in an hour")

    async def flaky(request: web.Request) -> web.StreamResponse:
        FLAKY_HITS.append(time.monotonic())
        if len(FLAKY_HITS) == 1:
            return web.Response(status=500, text="oops", content_type="text/html")
        return web.Response(text="<title>Back</title><p>Back in service now.</p>", content_type="text/html")

    return {
        "/flaky": flaky,
        "/busy": busy,
        "/status/404": status,
        "/status/410": status,
        "/status/500": status,
        "/redirect": redirect,
        "/redirect-loop": redirect_loop,
        "/slow": slow,
        "/big": big,
        "/big-chunked": big_chunked,
    }


def make_app() -> web.Application:
    """The demo site (HTML files, a PDF, a PNG), a robots.txt, and :func:`error_routes` in front of it."""
    app = static_app(DEMO_ROOT, {**demo_pages(), "/robots.txt": (ROBOTS_TXT, "text/plain")})
    routes = error_routes()

    @web.middleware
    async def special(request: web.Request, handler: Any) -> web.StreamResponse:
        route = routes.get(request.path)
        response: web.StreamResponse = await (route(request) if route is not None else handler(request))
        return response

    app.middlewares.append(special)
    return app


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """This module's server (named like the conftest's scenario server, which this module does not use)."""
    with ServerThread(make_app) as server:
        yield server.url


@pytest.fixture(scope="module")
def refused_url() -> Iterator[str]:
    """A port bound but never listening: connections are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/page.html"


@dataclass
class Crawl:
    result: subprocess.CompletedProcess[str]
    records: list[dict[str, Any]]
    stats: dict[str, Any] | None

    def by_url(self, url: str) -> dict[str, Any]:
        matches = [r for r in self.records if r["url"] == url]
        assert len(matches) == 1, f"{url}: {len(matches)} records"
        return matches[0]


def run_scrapy(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CRAWL_TIMEOUT_S,
        check=False,
    )


def crawl(workdir: Path, urls: list[str], **arguments: str) -> Crawl:
    """``scrapy crawl enrich`` over ``urls`` with short timeouts and few retries unless told otherwise."""
    workdir.mkdir(parents=True, exist_ok=True)
    input_file = workdir / "urls.txt"
    input_file.write_text("\n".join(urls) + "\n", encoding="utf-8")
    output, stats_file = workdir / "out.jsonl", workdir / "stats.json"
    options = {"nlp": "off", "retries": "1", "timeout": "3", "stats_file": str(stats_file), **arguments}
    argv = ["crawl", "enrich", "-a", f"input={input_file}", "-a", f"output={output}"]
    for name, value in options.items():
        argv += ["-a", f"{name}={value}"]
    result = run_scrapy(*argv)
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    stats = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.exists() else None
    return Crawl(result=result, records=records, stats=stats)


def demo_input(site: str, refused_url: str) -> list[str]:
    html = [f"{site}/{p.name}" for p in sorted(DEMO_ROOT.glob("*.html"))]
    return [
        *html,
        f"{site}/lighthouse.html",  # a repeated line: skipped, as in the async engine
        f"{site}/survey-report.pdf",
        f"{site}/harbour-map.png",
        f"{site}/status/404",
        f"{site}/status/410",
        f"{site}/status/500",
        f"{site}/redirect",
        f"{site}/redirect-loop",
        f"{site}/private/secret.html",
        refused_url,
        "ftp://example.com/file.txt",
        "not a url",
    ]


@pytest.fixture(scope="module")
def demo_crawl(tmp_path_factory: pytest.TempPathFactory, site: str, refused_url: str) -> Crawl:
    return crawl(tmp_path_factory.mktemp("demo"), demo_input(site, refused_url), max_redirects="3")


# --- the command line -----------------------------------------------------------------------------------------------


def test_scrapy_list_prints_the_project_spiders() -> None:
    result = run_scrapy("list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["discover", "enrich"]


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("concurrency=-1", "-a concurrency=-1: Input should be greater than or equal to 1"),
        ("concurrency=many", "invalid spider argument concurrency='many': must be a whole number"),
        ("nlp=maybe", "must be on or off"),
        ("retries=99", "-a retries=99: Input should be less than or equal to 20"),
        ("input_format=xml", "input_format must be one of auto, text, csv, jsonl"),
        ("concurency=5", "unknown spider argument(s): concurency"),
    ],
)
def test_bad_argument_stops_before_crawling(tmp_path: Path, argument: str, expected: str) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_scrapy("crawl", "enrich", "-a", f"input={urls}", "-a", f"output={out}", "-a", argument)
    assert result.returncode != 0
    assert "scrapy crawl enrich: " in result.stderr
    assert expected in result.stderr
    assert "Spider opened" not in result.stderr
    assert not out.exists()


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    result = run_scrapy("crawl", "enrich", "-a", f"input={tmp_path / 'nope.txt'}")
    assert result.returncode != 0
    assert "does not exist" in result.stderr


# --- one crawl of the demo site and its error routes ----------------------------------------------------------------


@pytest.mark.slow
def test_every_input_url_ends_as_exactly_one_record(demo_crawl: Crawl, site: str, refused_url: str) -> None:
    expected = Counter(set(demo_input(site, refused_url)))
    assert Counter(r["url"] for r in demo_crawl.records) == expected
    assert demo_crawl.stats is not None
    assert demo_crawl.stats["duplicates_skipped"] == 1
    assert {r["engine"] for r in demo_crawl.records} == {"scrapy"}


@pytest.mark.slow
def test_records_validate_against_the_schema(demo_crawl: Crawl, record_validator: Draft202012Validator) -> None:
    for record in demo_crawl.records:
        record_validator.validate(record)


@pytest.mark.slow
def test_html_pages_have_title_and_text(demo_crawl: Crawl, site: str) -> None:
    pages = {f"{site}/{path.name}" for path in DEMO_ROOT.glob("*.html")}
    for record in (r for r in demo_crawl.records if r["url"] in pages):
        assert record["error"] is None, record["error"]
        assert record["status"] == 200
        assert record["content_type"] == "text/html"
        assert record["title"]
        assert record["word_count"] > 20
        assert record["attempts"] == 1
        assert record["fetch_duration_ms"] is not None
        assert record["entities"] == []  # nlp=off


@pytest.mark.slow
def test_pdf_and_image(demo_crawl: Crawl, site: str) -> None:
    pdf = demo_crawl.by_url(f"{site}/survey-report.pdf")
    assert pdf["error"] is None
    assert pdf["page_count"] == 1
    assert "lighthouse" in pdf["text"]
    image = demo_crawl.by_url(f"{site}/harbour-map.png")
    assert image["error"] is None
    assert image["content_type"] == "image/png"
    assert (image["metadata"]["width"], image["metadata"]["height"]) == (64, 48)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "status", "message", "attempts"),
    [
        ("/status/404", 404, "HTTP 404 Not Found", 1),
        ("/status/410", 410, "HTTP 410 Gone", 1),
        ("/status/500", 500, "Fetch failed after 2 attempts: HTTP 500 Internal Server Error", 2),
    ],
)
def test_http_errors(demo_crawl: Crawl, site: str, path: str, status: int, message: str, attempts: int) -> None:
    record = demo_crawl.by_url(site + path)
    assert record["error"] == {"type": "HTTPError", "message": message, "stage": "fetch"}
    assert record["status"] == status
    assert record["attempts"] == attempts
    assert record["text"] is None


@pytest.mark.slow
def test_redirect_keeps_the_input_url(demo_crawl: Crawl, site: str) -> None:
    record = demo_crawl.by_url(f"{site}/redirect")
    assert record["error"] is None
    assert record["final_url"] == f"{site}/lighthouse.html"
    assert record["title"] == "The Lighthouse of Harbour Town"


@pytest.mark.slow
def test_redirect_loop(demo_crawl: Crawl, site: str) -> None:
    error = demo_crawl.by_url(f"{site}/redirect-loop")["error"]
    assert error == {
        "type": "FetchError",
        "message": "Fetch failed after 1 attempt: Too many redirects (more than 3)",
        "stage": "fetch",
    }


@pytest.mark.slow
def test_robots_txt_block_gives_one_error_record(demo_crawl: Crawl, site: str) -> None:
    record = demo_crawl.by_url(f"{site}/private/secret.html")
    assert record["error"] == {
        "type": "RobotsDisallowedError",
        "message": f"robots.txt of {site} disallows /private/secret.html for webenrich",
        "stage": "fetch",
    }
    assert record["attempts"] == 0


@pytest.mark.slow
def test_refused_connection(demo_crawl: Crawl, refused_url: str) -> None:
    # robots.txt on: an unreachable robots.txt disallows the site for a while (RFC 9309, docs/hostile-web.md);
    # the record names the root cause (the host refuses connections), with robots.txt as context
    record = demo_crawl.by_url(refused_url)
    site = refused_url.rsplit("/", 1)[0]
    assert record["error"] == {
        "type": "FetchError",
        "message": f"Connection refused (fetching robots.txt of {site}; the site is not fetched for 60 s)",
        "stage": "fetch",
    }
    assert record["attempts"] == 0
    assert record["status"] is None


@pytest.mark.slow
def test_refused_connection_without_robots(tmp_path: Path, refused_url: str) -> None:
    record = crawl(tmp_path, [refused_url], robots="off").by_url(refused_url)
    assert record["error"] == {
        "type": "FetchError",
        "message": "Fetch failed after 2 attempts: Connection refused",
        "stage": "fetch",
    }
    assert record["attempts"] == 2
    assert record["status"] is None


@pytest.mark.slow
def test_invalid_urls_get_records_without_requests(demo_crawl: Crawl) -> None:
    for url in ("ftp://example.com/file.txt", "not a url"):
        record = demo_crawl.by_url(url)
        assert record["error"]["type"] == "InvalidURLError"
        assert record["error"]["stage"] == "input"
        assert record["attempts"] == 0


@pytest.mark.slow
def test_stats_file_and_summary(demo_crawl: Crawl) -> None:
    stats = demo_crawl.stats
    assert stats is not None
    assert stats["engine"] == "scrapy"
    assert stats["processed"] == len(demo_crawl.records)
    assert stats["success"] == sum(1 for r in demo_crawl.records if r["error"] is None)
    assert stats["errors_by_type"]["HTTPError"] == 3
    assert "Enrichment summary:" in demo_crawl.result.stderr


# --- runs with other settings ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_timeout_and_size_cap(tmp_path: Path, site: str) -> None:
    urls = [f"{site}/slow", f"{site}/big", f"{site}/big-chunked", f"{site}/index.html"]
    result = crawl(tmp_path, urls, timeout="1", retries="0", max_bytes="20000")
    slow = result.by_url(f"{site}/slow")["error"]
    assert slow == {
        "type": "FetchTimeoutError",
        "message": "Fetch failed after 1 attempt: Timeout after 1s",
        "stage": "fetch",
    }
    for path in ("/big", "/big-chunked"):  # cut at the cap, kept and flagged (docs/hostile-web.md)
        record = result.by_url(site + path)
        assert record["error"] is None, record["error"]
        assert record["status"] == 200
        assert record["size_bytes"] == 20000
        assert record["metadata"]["truncated"] is True
        assert "filler text" in record["text"]
    assert result.by_url(f"{site}/index.html")["error"] is None


@pytest.mark.slow
def test_robots_off_fetches_disallowed_pages(tmp_path: Path, site: str) -> None:
    result = crawl(tmp_path, [f"{site}/private/secret.html"], robots="off")
    assert result.by_url(f"{site}/private/secret.html")["error"]["message"] == "HTTP 404 Not Found"


@pytest.mark.slow
def test_csv_input_with_config_file(tmp_path: Path, site: str) -> None:
    config = tmp_path / "enrich.yml"
    config.write_text("fetch:\n  timeout_s: 4\n  retries: 0\nnlp:\n  enabled: false\n", encoding="utf-8")
    csv = tmp_path / "pages.csv"
    csv.write_text(f"name,link\nindex,{site}/index.html\nmarket,{site}/market.html\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_scrapy(
        "crawl", "enrich", "-a", f"input={csv}", "-a", "input_column=link", "-a", f"config={config}",
        "-a", f"output={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["url"] for r in records) == [f"{site}/index.html", f"{site}/market.html"]
    assert all(r["title"] for r in records)


@pytest.mark.slow
def test_nlp_on_adds_entities_keywords_and_summary(tmp_path: Path, site: str) -> None:
    urls = [f"{site}/{p.name}" for p in sorted(DEMO_ROOT.glob("*.html"))] + [f"{site}/status/404"]
    result = crawl(tmp_path, urls, nlp="on")
    assert "NLP stage ready" in result.result.stderr
    for record in result.records:
        if record["error"] is not None:
            assert record["error"]["type"] == "HTTPError"
            continue
        assert record["entities"], record["url"]
        assert record["keywords"]
        assert record["summary"]
        assert record["language"] == "en"


# --- translation, without a crawl -----------------------------------------------------------------------------------


def test_dns_failure_wording() -> None:
    failure = Failure(DNSLookupError("no such host"))  # type: ignore[no-untyped-call]  # Twisted leaves it untyped
    error = fetch_error(failure, url="http://nowhere.invalid/x", attempts=3, config=EnrichConfig())
    assert str(error) == "Fetch failed after 3 attempts: DNS lookup failed for nowhere.invalid"
    assert error.attempts == 3


def test_settings_mapping() -> None:
    config = EnrichConfig().replace(
        fetch={"max_concurrency": 40, "per_host_limit": 0, "timeout_s": 7, "retries": 4, "max_redirects": 3},
        politeness={"respect_robots": False},
    )
    settings = scrapy_settings_for(config)
    assert settings["CONCURRENT_REQUESTS"] == 40
    # the smaller of the per-domain cap and the per-host limit (none here)
    assert settings["CONCURRENT_REQUESTS_PER_DOMAIN"] == config.politeness.per_domain_concurrency
    assert settings["DOWNLOAD_TIMEOUT"] == 7
    assert settings["RETRY_TIMES"] == 4
    assert settings["REDIRECT_MAX_TIMES"] == 3
    assert settings["ROBOTSTXT_OBEY"] is False
    assert settings["DOWNLOAD_MAXSIZE"] == 0  # the cap is SizeCapMiddleware's, which keeps the cut body
    assert settings["USER_AGENT"] == config.fetch.full_user_agent
    # congestion control is the frontier's, per site: nothing maps onto AutoThrottle any more
    assert not any(name.startswith("AUTOTHROTTLE_") for name in settings)


def test_frontier_scheduler_is_the_scheduler() -> None:
    from crawler.scrapy_mode import settings as scrapy_mode_settings
    from crawler.scrapy_mode.scheduler import FrontierScheduler

    assert scrapy_mode_settings.SCHEDULER is FrontierScheduler
    assert not hasattr(scrapy_mode_settings, "SCHEDULER_PRIORITY_QUEUE")
    assert scrapy_mode_settings.AUTOTHROTTLE_ENABLED is False


@pytest.mark.slow
def test_retry_after_beyond_the_cap_is_not_retried(tmp_path: Path, site: str) -> None:
    # Retry-After: 3600 > fetch.retry_after_cap_s: retrying at the cap would be early, so the URL is given up at
    # once, and its record says why (as the async engine words it); the site backs off for the cap only
    BUSY_HITS.clear()
    config = tmp_path / "enrich.yml"
    config.write_text("fetch:\n  retries: 2\n  retry_after_cap_s: 2\nnlp:\n  enabled: false\n")
    result = crawl(tmp_path, [f"{site}/busy", f"{site}/index.html"], config=str(config), retries="2")
    record = result.by_url(f"{site}/busy")
    assert record["error"] == {
        "type": "HTTPError",
        "message": "HTTP 429 Too Many Requests; not retried: the server asked to retry after 3600 s, longer than "
        "fetch.retry_after_cap_s (2 s)",
        "stage": "fetch",
    }
    assert (record["status"], record["attempts"]) == (429, 1)
    assert len(BUSY_HITS) == 1
    assert result.by_url(f"{site}/index.html")["error"] is None


def test_retry_waits_for_backoff_and_retry_after(tmp_path: Path, site: str) -> None:
    # Scrapy retries at once by itself; BackoffRetryMiddleware gives the retry the async engine's delay, which it
    # waits queued in the frontier: exponential backoff from backoff_base_s (a 500 sets no site backoff).
    FLAKY_HITS.clear()
    config = tmp_path / "enrich.yml"
    config.write_text("fetch:\n  retries: 2\n  backoff_base_s: 0.8\n  backoff_jitter: 0\nnlp:\n  enabled: false\n")
    result = crawl(tmp_path, [f"{site}/flaky"], config=str(config), retries="2")
    record = result.by_url(f"{site}/flaky")
    assert (record["error"], record["status"], record["attempts"], record["title"]) == (None, 200, 2, "Back")
    assert len(FLAKY_HITS) == 2
    assert FLAKY_HITS[1] - FLAKY_HITS[0] >= 0.75  # the first backoff step, measured where the requests arrive


def test_frontier_scheduler_orders_by_priority_and_holds_retries() -> None:
    from types import SimpleNamespace

    from scrapy import Request

    from crawler.scrapy_mode.scheduler import CIRCUIT_META, LEASE_META, RETRY_AT_META, FrontierScheduler
    from enrich.frontier import Frontier, Outcome, SitePolicy

    frontier: Frontier[Request] = Frontier(policy=SitePolicy(per_site=1, robots_first=False))
    scheduler = FrontierScheduler(SimpleNamespace(stats=None), frontier)  # type: ignore[arg-type]
    for n, priority in enumerate((0, 5, 1)):
        assert scheduler.enqueue_request(Request(f"http://a.test/{n}", priority=priority, dont_filter=True))
    assert (len(scheduler), scheduler.has_pending_requests()) == (3, True)
    first = scheduler.next_request()
    assert first is not None
    assert first.url == "http://a.test/1"  # the highest priority first
    assert scheduler.next_request() is None  # the site's cap (1) is taken: nothing else of it may start
    lease = first.meta.pop(LEASE_META)
    frontier.release(lease, Outcome.SUCCESS, status=200)
    assert [r.url for r in (scheduler.next_request(),) if r is not None] == ["http://a.test/2"]
    # a retry carries its not-before time: it waits in the frontier, holding nothing
    retry = Request("http://b.test/x", dont_filter=True, meta={"retry_times": 1, RETRY_AT_META: frontier.clock() + 60})
    scheduler.enqueue_request(retry)
    assert scheduler.next_request() is None
    assert frontier.wait_s() is not None
    # an open circuit: the request comes out flagged with the refusal, holding no slot
    state = frontier.site("c.test")
    state.circuit, state.opened_at, state.failures = "open", frontier.clock(), 5
    scheduler.enqueue_request(Request("http://c.test/y", dont_filter=True))
    refused = scheduler.next_request()
    assert refused is not None
    assert refused.meta[CIRCUIT_META].startswith("circuit open for c.test after 5 consecutive failures")
    assert LEASE_META not in refused.meta
    scheduler.close("finished")  # drains: the waiting retry is interrupted, the capped input request not started
    assert (scheduler.not_started, scheduler.interrupted, len(scheduler)) == (1, 1, 0)


def test_last_outcome_record_of_a_queued_retry_or_hop() -> None:
    """What a started URL that is not fetched again writes (stopped run, open circuit): its last answer or failure,
    worded as the async engine words it."""
    from scrapy import Request

    from crawler.scrapy_mode.middlewares import (
        INPUT_URL_META,
        LAST_REASON_META,
        LAST_STATUS_META,
        last_outcome_record,
    )

    url = "http://a.test/x"
    answered = Request(url, meta={INPUT_URL_META: url, "retry_times": 2, LAST_STATUS_META: 503})
    record = last_outcome_record(answered, engine="scrapy").record
    assert (record.status, record.attempts) == (503, 2)
    assert record.error is not None
    assert (record.error.type, record.error.message) == (
        "HTTPError",
        "Fetch failed after 2 attempts: HTTP 503 Service Unavailable",
    )
    failed = Request(url, meta={INPUT_URL_META: url, "retry_times": 1, LAST_REASON_META: "Connection refused"})
    record = last_outcome_record(failed, engine="scrapy").record
    assert record.error is not None
    assert (record.error.type, record.error.message) == (
        "FetchError",
        "Fetch failed after 1 attempt: Connection refused",
    )
    hop = Request("http://b.test/y", meta={INPUT_URL_META: url, "redirect_times": 1})
    record = last_outcome_record(hop, engine="scrapy").record
    assert record.url == url
    assert record.error is not None
    assert record.error.message == "Run stopped before following the redirect to http://b.test/y"  # as the async engine
