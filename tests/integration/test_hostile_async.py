"""Fault injection: the asyncio engine against the hostile server (``docs/hostile-web.md``), one case per test.

Every test checks the contract's rules: exactly one record per input URL, valid JSONL (every line a record that
matches the schema), bounded run time (small timeouts, ``pytest.mark.timeout``), bounded memory where it matters,
and the error type and message the contract gives. What the servers saw comes from a request log kept by a
middleware added to the hostile app, so timing facts (backoff, crawl delay) are asserted on server-side
timestamps, never on the total run time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from aiohttp import web
from hostile_server import LATIN1_TEXT, gzip_bomb, make_app

from crawler import AsyncEnrichmentProcessor
from crawler.async_engine import AiohttpFetcher
from crawler.localsite import ServerThread
from enrich.config import EnrichConfig
from enrich.errors import SinkError
from enrich.policy import AddressPolicy
from enrich.sinks import JsonlSink, MemorySink
from enrich.urls import MAX_LINE_CHARS, InputURL, read_urls

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

    from jsonschema import Draft202012Validator

    from enrich.policy.addresses import IPAddress
    from enrich.record import Record
    from enrich.stats import RunStats

pytestmark = pytest.mark.timeout(60)

R = 1
"""Retries in these tests: two attempts per URL."""

T = 0.5
"""Seconds per attempt: short, so the endless routes end quickly."""

M = 3
"""Redirects followed."""

N = 64 * 1024
"""Body size cap (the smallest a test can see cut without megabytes of traffic)."""

HOSTILE = EnrichConfig().replace(
    nlp={"enabled": False},
    fetch={
        "timeout_s": T,
        "connect_timeout_s": T,
        "retries": R,
        "backoff_base_s": 0.05,
        "backoff_cap_s": 0.1,
        "backoff_jitter": 0.0,
        "retry_after_cap_s": 2.0,
        "max_redirects": M,
        "max_response_bytes": N,
        "max_concurrency": 20,
        "user_agent": "webenrich/0.1 (+https://github.com/webenrich/webenrich)",
    },
    aimd={"interval_s": 0.2},
    # The hostile robots.txt asks for 1 s between requests: only the crawl-delay test keeps it. The circuit stays
    # closed unless a test is about it, so one failing case does not turn the next one into a refusal.
    politeness={"max_crawl_delay_s": 0, "circuit_failures": 1000, "circuit_cooldown_s": 1.0},
)


# --- servers with a request log -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    host: str
    path: str
    started: float
    ended: float
    status: int | None
    authorization: bool


class RequestLog:
    """Requests the hostile servers saw, appended from their threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: list[Hit] = []

    def add(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def hits(self, host: str | None = None, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [
                h
                for h in self._hits
                if (host is None or h.host == host) and (path is None or h.path == path or h.path.startswith(path))
            ]


def logged_app(log: RequestLog) -> web.Application:
    app = make_app()

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        status: int | None = None
        host = request.host.rsplit(":", 1)[0]
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            log.add(Hit(host, request.path_qs, started, time.monotonic(), status, "Authorization" in request.headers))

    app.middlewares.append(record)
    return app


@dataclass
class Sites:
    log: RequestLog
    urls: dict[str, str]

    def __getitem__(self, host: str) -> str:
        return self.urls[host]


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    """Hostile servers on 127.0.0.1, .2 and .3 (three domains), plus ``localhost`` naming the first."""
    log = RequestLog()
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            urls[host] = stack.enter_context(ServerThread(lambda: logged_app(log), host=host)).url
        urls["localhost"] = urls["127.0.0.1"].replace("127.0.0.1", "localhost")
        yield Sites(log=log, urls=urls)


# --- running the engine -------------------------------------------------------------------------------------------


def key() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class Run:
    records: dict[str, Record]
    stats: RunStats
    processor: AsyncEnrichmentProcessor
    lines: list[dict[str, Any]]
    order: list[str]
    """Record URLs in the order they were written."""

    def __getitem__(self, url: str) -> Record:
        return self.records[url]

    @property
    def extra(self) -> dict[str, Any]:
        return self.stats.extra


async def crawl(
    urls: Iterable[str] | Callable[[AsyncEnrichmentProcessor], AsyncIterator[InputURL]],
    tmp_path: Path,
    validator: Draft202012Validator,
    config: EnrichConfig = HOSTILE,
    *,
    expected: int | None = None,
    prepare: Callable[[AsyncEnrichmentProcessor], None] | None = None,
    **sections: dict[str, Any],
) -> Run:
    """Run the engine into a JSONL file and a memory sink; check one valid record per distinct input URL."""
    if sections:
        config = config.replace(**sections)
    out = tmp_path / f"out-{key()}.jsonl"
    memory = MemorySink()
    processor = AsyncEnrichmentProcessor.from_config(config, sinks=[memory, JsonlSink(path=out)], progress_interval_s=0)
    if prepare is not None:
        prepare(processor)
    if callable(urls):
        inputs: Any = urls(processor)
        wanted = expected
    else:
        given = list(urls)
        inputs = read_urls(enumerate(given, 1))
        wanted = len(dict.fromkeys(given)) if expected is None else expected
    stats = await processor.run(inputs)
    text = out.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the last line is complete"
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        validator.validate(line)
    order = [record.url for record in memory.records]
    records = {record.url: record for record in memory.records}
    assert len(records) == len(memory.records) == len(lines), "one record per URL, the same in both sinks"
    if wanted is not None:
        assert len(records) == wanted
    assert stats.processed == len(records)
    return Run(records=records, stats=stats, processor=processor, lines=lines, order=order)


def fetcher_of(processor: AsyncEnrichmentProcessor) -> AiohttpFetcher:
    fetcher = processor.fetcher
    assert isinstance(fetcher, AiohttpFetcher)
    return fetcher


def error_of(record: Record) -> tuple[str, str, str]:
    assert record.error is not None, f"{record.url} has no error"
    return record.error.type, record.error.message, record.error.stage


def assert_refused(record: Record, error_type: str, message: str | re.Pattern[str]) -> None:
    """The contract for policy refusals: never fetched, ``attempts 0``, ``status null``, stage ``fetch``."""
    kind, text, stage = error_of(record)
    assert (kind, stage, record.attempts, record.status) == (error_type, "fetch", 0, None)
    if isinstance(message, re.Pattern):
        assert message.fullmatch(text), text
    else:
        assert text == message


@pytest.fixture
def validator(record_validator: Draft202012Validator) -> Draft202012Validator:
    return record_validator


# --- normal pages, User-Agent, robots.txt -------------------------------------------------------------------------


async def test_normal_page_and_user_agent_with_contact(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    base = sites["127.0.0.2"]
    run = await crawl(
        [f"{base}/", f"{base}/page/7", f"{base}/whoami"],
        tmp_path,
        validator,
        fetch={"contact": "ops@example.org"},
    )
    home = run[f"{base}/"]
    assert home.error is None
    assert (home.status, home.content_type, home.title) == (200, "text/html", "Hostile server home")
    assert home.text is not None
    assert "ordinary page" in home.text
    assert run[f"{base}/page/7"].title == "Page 7"
    whoami = run[f"{base}/whoami"].text or ""
    assert "user-agent: webenrich/0.1 (+https://github.com/webenrich/webenrich) contact: ops@example.org" in whoami
    assert "authorization: absent" in whoami


async def test_robots_disallow_is_refused_without_fetching(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    base = sites["127.0.0.1"]
    path = f"/private/{key()}"
    run = await crawl([base + path, f"{base}/page/1"], tmp_path, validator)
    assert_refused(run[base + path], "RobotsDisallowedError", f"robots.txt of {base} disallows {path} for webenrich")
    assert run[f"{base}/page/1"].error is None
    assert sites.log.hits("127.0.0.1", path) == []
    robots = run.extra["robots"]
    assert (run.extra["respect_robots"], robots["enabled"], robots["disallowed"]) == (True, True, 1)


async def test_robots_can_be_turned_off(sites: Sites, tmp_path: Path, validator: Draft202012Validator) -> None:
    base = sites["127.0.0.2"]
    path = f"/private/{key()}"
    robots_before = len(sites.log.hits("127.0.0.2", "/robots.txt"))
    run = await crawl([base + path], tmp_path, validator, politeness={"respect_robots": False})
    record = run[base + path]
    assert record.error is None
    assert (record.status, record.title) == (200, "Any page")
    assert len(sites.log.hits("127.0.0.2", "/robots.txt")) == robots_before  # not even asked
    assert run.extra["respect_robots"] is False
    assert run.extra["robots"]["enabled"] is False
    assert run.extra["robots"]["skipped"] == 1


async def test_unreachable_robots_txt_disallows_the_site(
    unreachable_url: str, tmp_path: Path, validator: Draft202012Validator
) -> None:
    site = unreachable_url.rstrip("/")
    urls = [f"{site}/a", f"{site}/b"]
    run = await crawl(urls, tmp_path, validator)
    for url in urls:  # RFC 9309: unreachable means complete disallow (for 60 s), one robots.txt request for both
        # the record names the root cause, with robots.txt as context
        assert_refused(
            run[url],
            "FetchError",
            f"Connection refused (fetching robots.txt of {site}; the site is not fetched for 60 s)",
        )
    assert run.extra["robots"]["fetches"] == 1


async def test_crawl_delay_spaces_request_starts(sites: Sites, tmp_path: Path, validator: Draft202012Validator) -> None:
    base = sites["127.0.0.3"]
    tag = key()
    urls = [f"{base}/page/{n}?delay={tag}" for n in range(3)]
    delay = 0.4  # min(Crawl-delay 1, max_crawl_delay_s)
    await crawl(urls, tmp_path, validator, politeness={"max_crawl_delay_s": delay, "circuit_failures": 1000})
    starts = sorted(hit.started for hit in sites.log.hits("127.0.0.3") if tag in hit.path)
    assert len(starts) == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= delay - 0.02, gaps


# --- redirects ----------------------------------------------------------------------------------------------------


async def test_redirect_loops_and_chains(sites: Sites, tmp_path: Path, validator: Draft202012Validator) -> None:
    base = sites["127.0.0.2"]
    before = len(sites.log.hits("127.0.0.2", "/redirect/self"))
    urls = [f"{base}/redirect/loop", f"{base}/redirect/self", f"{base}/redirect/chain/{M}", f"{base}/redirect/chain/9"]
    run = await crawl(urls, tmp_path, validator)
    too_many = ("FetchError", f"Fetch failed after 1 attempt: Too many redirects (more than {M})", "fetch")
    for url in (f"{base}/redirect/loop", f"{base}/redirect/self", f"{base}/redirect/chain/9"):
        assert error_of(run[url]) == too_many
        assert run[url].attempts == 1
    # final, not retried: the first request and the M redirects followed, once
    assert len(sites.log.hits("127.0.0.2", "/redirect/self")) - before == M + 1
    chain = run[f"{base}/redirect/chain/{M}"]
    assert chain.error is None
    assert (chain.status, chain.title) == (200, "End of the chain")
    assert chain.final_url == f"{base}/redirect/chain/0"


@pytest.mark.parametrize(
    ("route", "location"),
    [
        ("ftp", "ftp://127.0.0.1/file.txt"),
        ("file", "file:///etc/passwd"),
        ("javascript", "javascript:alert(1)"),
        ("data", "data:text/html,<h1>hi</h1>"),
    ],
)
async def test_redirect_to_a_non_http_scheme(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator, route: str, location: str
) -> None:
    url = f"{sites['127.0.0.1']}/redirect/{route}"
    before = len(sites.log.hits("127.0.0.1", f"/redirect/{route}"))
    run = await crawl([url], tmp_path, validator)
    assert error_of(run[url]) == (
        "FetchError",
        f"Fetch failed after 1 attempt: Redirect to a non-HTTP URL: {location}",
        "fetch",
    )
    assert run[url].attempts == 1
    assert len(sites.log.hits("127.0.0.1", f"/redirect/{route}")) - before == 1  # final at once


class OnlyFirstLoopbackIsPublic(AddressPolicy):
    """Pretends 127.0.0.1 is a public address, so that an open redirect from it to 127.0.0.2 can be refused."""

    def check_addresses(self, host: str, addresses: Iterable[str | IPAddress]) -> str | None:
        given = list(addresses)
        if all(str(ip) == "127.0.0.1" for ip in given):
            self.checked += 1
            return None
        return super().check_addresses(host, given)


async def test_open_redirect_to_a_private_address_is_refused(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    tag = key()
    inner = f"{sites['127.0.0.2']}/page/{tag}"
    url = f"{sites['127.0.0.1']}/redirect/to?url={inner}"
    followed = f"{sites['127.0.0.1']}/redirect/to?url={sites['127.0.0.1']}/page/{tag}"

    def refuse_private(processor: AsyncEnrichmentProcessor) -> None:
        fetcher_of(processor).addresses = OnlyFirstLoopbackIsPublic(allow_private=False)

    run = await crawl(
        [url, followed], tmp_path, validator, prepare=refuse_private, politeness={"allow_private_addresses": False}
    )
    assert_refused(
        run[url],
        "BlockedAddressError",
        "refused to connect to 127.0.0.2: 127.0.0.2 is a loopback address "
        "(set politeness.allow_private_addresses to allow)",
    )
    assert sites.log.hits("127.0.0.2", f"/page/{tag}") == []  # no connection to the target
    ok = run[followed]
    assert ok.error is None
    assert ok.final_url == f"{sites['127.0.0.1']}/page/{tag}"  # an allowed target is followed like any redirect


async def test_private_and_loopback_addresses_are_refused(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    tag = key()
    by_ip = f"{sites['127.0.0.1']}/page/{tag}"
    by_name = f"{sites['localhost']}/page/{tag}"
    other = f"{sites['127.0.0.3']}/page/{tag}"
    run = await crawl([by_ip, by_name, other], tmp_path, validator, politeness={"allow_private_addresses": False})
    assert_refused(
        run[by_ip],
        "BlockedAddressError",
        "refused to connect to 127.0.0.1: 127.0.0.1 is a loopback address "
        "(set politeness.allow_private_addresses to allow)",
    )
    assert_refused(
        run[other],
        "BlockedAddressError",
        "refused to connect to 127.0.0.3: 127.0.0.3 is a loopback address "
        "(set politeness.allow_private_addresses to allow)",
    )
    assert_refused(
        run[by_name],
        "BlockedAddressError",
        re.compile(
            r"refused to connect to localhost: it resolves to (127\.0\.0\.1|::1), a loopback address "
            r"\(set politeness\.allow_private_addresses to allow\)"
        ),
    )
    assert [hit for hit in sites.log.hits() if tag in hit.path] == []  # no connection made, not even robots.txt
    assert run.extra["addresses"]["refused"] >= 3


# --- size ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["big", "big-chunked"])
async def test_body_over_the_cap_is_cut(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator, route: str
) -> None:
    url = f"{sites['127.0.0.2']}/{route}?bytes={N * 3}&k={key()}"
    run = await crawl([url], tmp_path, validator)
    record = run[url]
    assert record.error is None
    assert (record.status, record.size_bytes, record.attempts) == (200, N, 1)
    assert record.metadata.get("truncated") is True
    assert record.text
    assert "xxxx" in record.text


@pytest.fixture(scope="module")
def bomb_server() -> Iterator[str]:
    """The hostile server as its own process, so the memory measured is the crawler's alone."""
    script = Path(__file__).resolve().parents[1] / "hostile_server.py"
    process = subprocess.Popen(
        [sys.executable, str(script), "--host", "127.0.0.2", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), line
        base = line.split()[-1]
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def test_gzip_bomb_is_capped_after_decompression(
    bomb_server: str, tmp_path: Path, validator: Draft202012Validator
) -> None:
    cap = 10 * 1024 * 1024
    url = f"{bomb_server}/gzip-bomb"
    me = psutil.Process()
    baseline = me.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        # the server builds the 200 MiB bomb on the first request (about a second): a generous timeout
        run = await crawl([url], tmp_path, validator, fetch={"max_response_bytes": cap, "timeout_s": 20.0})
    finally:
        done.set()
        sampler.join()
    record = run[url]
    assert record.status == 200
    assert record.size_bytes is not None
    assert record.size_bytes <= cap
    assert record.metadata.get("truncated") is True
    assert error_of(record) == ("ContentError", "binary content served as text/html", "extract")
    growth_mb = (peak - baseline) / 2**20
    print(f"gzip bomb: peak RSS growth {growth_mb:.1f} MB over a {cap / 2**20:.0f} MiB cap")
    assert growth_mb < 100


# --- lies about the content ---------------------------------------------------------------------------------------


async def test_content_that_lies_about_its_type_or_charset(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    base = sites["127.0.0.3"]
    pdf, png, latin1, utf8 = (
        f"{base}/lie/pdf-as-html",
        f"{base}/lie/html-as-png",
        f"{base}/charset/latin1-as-utf8",
        f"{base}/charset/utf8-as-latin1",
    )
    run = await crawl([pdf, png, latin1, utf8], tmp_path, validator)
    for url in (pdf, png, latin1, utf8):
        assert run[url].error is None, run[url].error
    assert run[pdf].content_type == "application/pdf"
    assert "Hostile PDF" in (run[pdf].text or "")
    assert (run[png].content_type, run[png].title) == ("text/html", "HTML pretending to be PNG")
    assert "Café crème, déjà vu, naïve façade" in (run[latin1].text or "")
    assert str(run[latin1].metadata.get("encoding")).lower() in {"cp1252", "windows-1252", "latin-1", "iso-8859-1"}
    assert LATIN1_TEXT in (run[utf8].text or "")
    assert "CafÃ©" not in (run[utf8].text or "")
    assert run[utf8].metadata.get("encoding") == "utf-8"


async def test_binary_as_html_and_empty_body(sites: Sites, tmp_path: Path, validator: Draft202012Validator) -> None:
    base = sites["127.0.0.3"]
    run = await crawl([f"{base}/binary-as-html", f"{base}/empty"], tmp_path, validator)
    binary, empty = run[f"{base}/binary-as-html"], run[f"{base}/empty"]
    assert binary.status == 200
    assert error_of(binary) == ("ContentError", "binary content served as text/html", "extract")
    assert (empty.status, empty.size_bytes) == (200, 0)
    assert error_of(empty) == ("ContentError", "empty body", "extract")


# --- broken and slow connections ----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["truncated", "reset"])
async def test_connection_dropped_mid_body(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator, route: str
) -> None:
    url = f"{sites['127.0.0.1']}/{route}?k={key()}"
    run = await crawl([url], tmp_path, validator)
    record = run[url]
    assert error_of(record) == (
        "FetchError",
        f"Fetch failed after {R + 1} attempts: Connection dropped while reading the body",
        "fetch",
    )
    assert (record.status, record.attempts) == (None, R + 1)


@pytest.mark.parametrize("route", ["trickle", "hang"])
async def test_slow_servers_end_at_the_total_timeout(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator, route: str
) -> None:
    url = f"{sites['127.0.0.1']}/{route}?k={key()}"
    run = await crawl([url], tmp_path, validator)
    record = run[url]
    assert error_of(record) == (
        "FetchTimeoutError",
        f"Fetch failed after {R + 1} attempts: Timeout after {T:g}s",
        "fetch",
    )
    assert record.attempts == R + 1
    # each attempt ends at T (the total timeout, not a read timeout that every trickled byte resets)
    assert record.fetch_duration_ms is not None
    assert record.fetch_duration_ms < ((R + 1) * T + 0.1 * R + 1.0) * 1000


# --- per-domain backoff and circuit breaker -----------------------------------------------------------------------


async def test_rate_limited_domain_backs_off_while_another_goes_on(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    slow, fast = sites["127.0.0.1"], sites["127.0.0.2"]
    tag = key()
    limited = [f"{slow}/rate-limited?n={R}&key={tag}-{n}" for n in range(3)]  # K <= R: passes on the last attempt
    refused = f"{slow}/rate-limited?n={R + 5}&key={tag}-x"  # K > R: fails
    others = [f"{fast}/page/{n}?k={tag}" for n in range(12)]
    run = await crawl([*limited, refused, *others], tmp_path, validator)
    for url in limited:
        record = run[url]
        assert record.error is None
        assert (record.status, record.attempts) == (200, R + 1)
    assert error_of(run[refused]) == (
        "HTTPError",
        f"Fetch failed after {R + 1} attempts: HTTP 429 Too Many Requests",
        "fetch",
    )
    assert all(run[url].error is None for url in others)
    # the other domain is not delayed: its records are all written before the rate-limited domain's last one
    last_slow = max(run.order.index(url) for url in [*limited, refused])
    assert max(run.order.index(url) for url in others) < last_slow
    per_site = run.extra["frontier"]["per_site"]
    assert per_site["127.0.0.1"]["backoffs"] == (R * len(limited)) + (R + 1)
    assert "127.0.0.2" not in per_site  # no backoff, no cap decrease, no circuit event there
    # server side: no request to the limited domain started within Retry-After (1 s) of a 429 it sent
    hits = [hit for hit in sites.log.hits("127.0.0.1") if tag in hit.path]
    answers = [hit.ended for hit in hits if hit.status == 429]
    assert len(answers) == R * len(limited) + R + 1
    # (50 ms of slack: requests of the first wave, sent together, can reach the server just after a 429 left it)
    for hit in hits:
        assert not any(t + 0.05 < hit.started < t + 1.0 for t in answers), "a request started during a Retry-After"


async def test_circuit_opens_after_consecutive_failures(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    broken, healthy = sites["127.0.0.3"], sites["127.0.0.2"]
    tag = key()
    failing = [f"{broken}/status/503?k={tag}-{n}" for n in range(6)]
    others = [f"{healthy}/page/{n}?k={tag}" for n in range(6)]
    failures = 3
    run = await crawl(
        [*failing, *others],
        tmp_path,
        validator,
        politeness={
            "circuit_failures": failures,
            "circuit_cooldown_s": 30.0,
            "per_domain_concurrency": 1,
            "max_crawl_delay_s": 0,
        },
    )
    # exactly F attempts reached the broken domain; every URL there is a 503 record or a refusal
    assert len([hit for hit in sites.log.hits("127.0.0.3") if tag in hit.path]) == failures
    refusal = re.compile(
        rf"circuit open for 127\.0\.0\.3 after {failures} consecutive failures \(last: HTTP 503\); retry after \d+ s"
    )
    refused = [url for url in failing if run[url].attempts == 0]
    assert refused
    for url in refused:
        assert_refused(run[url], "CircuitOpenError", refusal)
    for url in set(failing) - set(refused):
        kind, message, _ = error_of(run[url])
        assert (kind, run[url].status) == ("HTTPError", 503)
        assert message.endswith("HTTP 503 Service Unavailable")
    assert all(run[url].error is None for url in others)  # the other domain is unaffected
    frontier = run.extra["frontier"]
    assert (frontier["circuit_opens"], frontier["open_circuits"]) == (1, ["127.0.0.3"])


async def test_circuit_half_opens_after_cooldown_and_closes_on_success(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    base = sites["127.0.0.3"]
    tag = key()
    cooldown = 0.5
    failing = [f"{base}/status/500?k={tag}-{n}" for n in range(2)]
    during, trial, after = (f"{base}/page/{name}?k={tag}" for name in ("during", "trial", "after"))

    async def inputs(processor: AsyncEnrichmentProcessor) -> AsyncIterator[InputURL]:
        frontier = processor.frontier
        for entry in read_urls(enumerate(failing, 1)):
            yield entry
        for _ in range(500):  # until both failures are recorded (bounded: 5 s)
            if processor.stats.processed >= len(failing):
                break
            await asyncio.sleep(0.01)
        assert frontier.circuit("127.0.0.3") == "open"
        yield InputURL(url=during, line=3, fetch_url=during)
        await asyncio.sleep(cooldown + 0.1)
        assert frontier.circuit("127.0.0.3") == "half-open"
        yield InputURL(url=trial, line=4, fetch_url=trial)
        for _ in range(500):
            if processor.stats.processed >= len(failing) + 2:
                break
            await asyncio.sleep(0.01)
        assert frontier.circuit("127.0.0.3") == "closed"
        yield InputURL(url=after, line=5, fetch_url=after)

    run = await crawl(
        inputs,
        tmp_path,
        validator,
        expected=5,
        fetch={"retries": 0},
        politeness={"circuit_failures": 2, "circuit_cooldown_s": cooldown, "max_crawl_delay_s": 0},
    )
    assert_refused(
        run[during], "CircuitOpenError", re.compile(r"circuit open for 127\.0\.0\.3 after 2 consecutive failures .*")
    )
    assert run[trial].error is None
    assert run[after].error is None
    assert run.extra["frontier"]["open_circuits"] == []


# --- credentials --------------------------------------------------------------------------------------------------


async def test_credentials_never_appear_in_records_or_logs(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret"
    base = sites["127.0.0.2"]
    with_auth = base.replace("http://", f"http://user:{secret}@")
    tag = key()
    urls = [
        f"{with_auth}/any/path?k={tag}",
        f"{with_auth}/whoami?k={tag}",
        f"{with_auth}/status/500?k={tag}",
        f"{with_auth}/truncated?k={tag}",
        f"{with_auth}/redirect/to?url=/page/{tag}",
        f"{with_auth}/redirect/file?k={tag}",
        f"http://user:{secret}@127.0.0.1:1/unreachable",
        f"ftp://user:{secret}@example.org/file",
        f"http://user:{secret}@[::1/broken",
    ]
    run = await crawl(urls, tmp_path, validator)
    page = run[f"{base}/any/path?k={tag}"]
    assert page.error is None
    assert page.final_url == f"{base}/any/path?k={tag}"
    assert "authorization: present" in (run[f"{base}/whoami?k={tag}"].text or "")
    assert [hit.authorization for hit in sites.log.hits("127.0.0.2", f"/any/path?k={tag}")] == [True]
    followed = run[f"{base}/redirect/to?url=/page/{tag}"]
    assert followed.error is None
    assert followed.final_url == f"{base}/page/{tag}"
    assert [hit.authorization for hit in sites.log.hits("127.0.0.2", f"/page/{tag}")] == [True]  # same origin
    dumped = json.dumps(run.lines)
    assert secret not in dumped
    assert "user:" not in dumped
    logged = "\n".join(
        [record.getMessage() for record in caplog.records]
        + [str(record.__dict__) for record in caplog.records]
        + [caplog.text]
    )
    assert secret not in logged


# --- input problems -----------------------------------------------------------------------------------------------


async def test_input_file_problems_give_records_or_counted_skips(
    sites: Sites, tmp_path: Path, validator: Draft202012Validator
) -> None:
    from crawler.async_engine import iter_inputs

    base = sites["127.0.0.2"]
    good = f"{base}/page/{key()}"
    source = tmp_path / "urls.txt"
    lines = [
        good,
        "",
        "   ",
        "# a comment",
        "not a url",
        "file:///etc/passwd",
        "ftp://example.org/file",
        "javascript:alert(1)",
        "http://",
        good,  # duplicate
        "not a url",  # duplicate of an invalid entry
        "http://example.org/" + "a" * 9000,  # too long for a URL
        "x" * (MAX_LINE_CHARS + 10),  # too long for a line
        "\x00\x01binary",
    ]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def from_file(processor: AsyncEnrichmentProcessor) -> AsyncIterator[InputURL]:
        async def entries() -> AsyncIterator[InputURL]:
            for entry in iter_inputs(source):
                yield entry

        return entries()

    run = await crawl(from_file, tmp_path, validator, expected=9)
    assert run[good].error is None
    invalid = [record for url, record in run.records.items() if url != good]
    assert all(record.error is not None and record.error.stage == "input" for record in invalid)
    assert {record.error.type for record in invalid if record.error} == {"InvalidURLError"}
    assert run.extra["duplicates_skipped"] == 2
    messages = {record.error.message for record in invalid if record.error}
    assert "unsupported scheme 'file' (supported: http, https)" in messages
    assert any(message.startswith("line 13 is longer than") for message in messages)


# --- sinks --------------------------------------------------------------------------------------------------------


async def test_sink_that_cannot_open_stops_the_run(sites: Sites, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.mkdir()  # the output file was replaced by a directory
    processor = AsyncEnrichmentProcessor.from_config(HOSTILE, sinks=[JsonlSink(path=target)], progress_interval_s=0)
    with pytest.raises(SinkError, match=r"cannot open output file .*out\.jsonl"):
        await processor.run(read_urls([(1, f"{sites['127.0.0.2']}/page/1")]))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_sink_that_fails_mid_run_stops_the_run(sites: Sites) -> None:
    config = HOSTILE.replace(output={"batch_size": 1})
    processor = AsyncEnrichmentProcessor.from_config(config, sinks=[JsonlSink(path="/dev/full")], progress_interval_s=0)
    urls = [f"{sites['127.0.0.2']}/page/{n}?k={key()}" for n in range(200)]
    with pytest.raises(SinkError, match="cannot write to /dev/full: No space left on device"):
        await processor.run(read_urls(enumerate(urls, 1)))
    assert processor.stats.processed < len(urls)  # stopped, not run to the end while dropping records


# --- everything at once -------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_all_cases_in_one_run(sites: Sites, tmp_path: Path, validator: Draft202012Validator) -> None:
    gzip_bomb()  # built before the run, so the bomb's first request does not wait for it
    tag = key()
    routes = [
        "/",
        "/page/1",
        f"/private/{tag}",
        "/redirect/loop",
        "/redirect/self",
        f"/redirect/chain/{M}",
        "/redirect/chain/9",
        "/redirect/ftp",
        "/redirect/file",
        "/redirect/javascript",
        "/redirect/data",
        f"/big?bytes={N * 3}",
        f"/big-chunked?bytes={N * 3}",
        "/gzip-bomb",
        "/lie/pdf-as-html",
        "/lie/html-as-png",
        "/charset/latin1-as-utf8",
        "/charset/utf8-as-latin1",
        "/binary-as-html",
        "/empty",
        "/truncated",
        "/reset",
        "/trickle",
        "/hang",
        f"/rate-limited?n=1&key={tag}",
        f"/rate-limited?n=9&key={tag}b",
        "/status/404",
        "/status/503",
        "/whoami",
    ]
    urls: list[str] = []
    for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        base = sites[host]
        urls += [f"{base}{route}{'&' if '?' in route else '?'}run={tag}" for route in routes]
        urls.append(base.replace("http://", "http://user:s3cret@") + f"/any/path?run={tag}")
    urls += [f"{sites['127.0.0.3']}/status/503?run={tag}&n={n}" for n in range(8)]
    urls += ["not a url", "file:///etc/passwd", "", urls[0], urls[5]]
    entries = [url for url in urls if url.strip()]
    expected = len(dict.fromkeys(entries))
    run = await crawl(
        entries,
        tmp_path,
        validator,
        expected=expected,
        politeness={"circuit_failures": 5, "circuit_cooldown_s": 30.0, "max_crawl_delay_s": 0},
    )
    assert run.extra["duplicates_skipped"] == 2
    assert "s3cret" not in json.dumps(run.lines)
    kinds = {record.error.type for record in run.records.values() if record.error is not None}
    assert {"RobotsDisallowedError", "FetchError", "FetchTimeoutError", "ContentError", "HTTPError"} <= kinds
    assert "CircuitOpenError" in kinds
    assert all(record.status in (200, None) or record.error is not None for record in run.records.values())
