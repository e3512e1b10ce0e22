"""Scrapy mode against the hostile web: every case of ``docs/hostile-web.md``, with the real ``scrapy crawl enrich``.

The hostile servers run in threads of the test process (one per loopback address, each a distinct domain) and
record every request they see (host, path, start, end, status), so pacing and backoff are asserted by server-side
timestamps, not by total run time. Scrapy runs in subprocesses; the cases are batched into four crawls:

* the mixed run: every content, redirect, size, broken-connection, rate-limit and input case across three hosts,
  robots.txt on (with a short ``max_crawl_delay_s`` so the run stays short);
* the circuit run: ``/status/503`` until the circuit of 127.0.0.3 opens, robots.txt off;
* the address run: ``allow_private_addresses: false``;
* the robots run: a site whose robots.txt answers 503.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from aiohttp import web
from hostile_server import make_app

from crawler.localsite import ServerThread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from jsonschema import Draft202012Validator

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CRAWL_TIMEOUT_S = 90
"""No crawl here may take longer (each URL is bounded by (R+1) x T plus backoff; the slowest case is ~8 s)."""

CAP = 100_000
"""``fetch.max_response_bytes`` of the runs."""

RETRIES = 2
TIMEOUT_S = 2.0
MAX_REDIRECTS = 3
CRAWL_DELAY_S = 0.25
"""``politeness.max_crawl_delay_s`` of the mixed run: the hostile robots.txt asks for 1 s, capped to this."""

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
ROBOTS_503_HOST = "127.0.0.4"


@dataclass
class Seen:
    host: str
    path_qs: str
    start: float
    end: float = 0.0
    status: int | None = None
    aborted: bool = False


@dataclass
class Journal:
    """Requests the servers saw, appended from the server threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: list[Seen] = field(default_factory=list)

    def add(self, seen: Seen) -> None:
        with self.lock:
            self.entries.append(seen)

    def for_host(self, host: str) -> list[Seen]:
        with self.lock:
            return sorted((e for e in self.entries if e.host == host), key=lambda e: e.start)


def recording_app(journal: Journal, *, robots_status: int | None = None) -> Callable[[], web.Application]:
    """The hostile app, recording each request; ``robots_status`` makes ``/robots.txt`` answer that status."""

    def build() -> web.Application:
        app: web.Application = make_app()

        @web.middleware
        async def record(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            seen = Seen(host=request.host.rsplit(":", 1)[0], path_qs=request.path_qs, start=time.monotonic())
            journal.add(seen)
            try:
                if robots_status is not None and request.path == "/robots.txt":
                    response: web.StreamResponse = web.Response(status=robots_status, text="down\n")
                else:
                    response = await handler(request)
            except BaseException:
                seen.aborted = True
                raise
            finally:
                seen.end = time.monotonic()
            seen.status = response.status
            return response

        app.middlewares.append(record)
        return app

    return build


@pytest.fixture(scope="module")
def journal() -> Journal:
    return Journal()


@pytest.fixture(scope="module")
def sites(journal: Journal) -> Iterator[dict[str, str]]:
    """``{host: base URL}`` for 127.0.0.1-3 (hostile app) and 127.0.0.4 (its robots.txt answers 503)."""
    with ExitStack() as stack:
        urls = {host: stack.enter_context(ServerThread(recording_app(journal), host=host)).url for host in HOSTS}
        robots_down = ServerThread(recording_app(journal, robots_status=503), host=ROBOTS_503_HOST)
        urls[ROBOTS_503_HOST] = stack.enter_context(robots_down).url
        yield urls


@dataclass
class Crawl:
    result: subprocess.CompletedProcess[str]
    lines: list[str]
    records: list[dict[str, Any]]
    stats: dict[str, Any]
    elapsed_s: float

    def one(self, url: str) -> dict[str, Any]:
        matches = [r for r in self.records if r["url"] == url]
        assert len(matches) == 1, f"{url}: {len(matches)} records"
        return matches[0]

    @property
    def log(self) -> str:
        return self.result.stdout + self.result.stderr


def run_crawl(workdir: Path, lines: list[str], config: dict[str, Any]) -> Crawl:
    """``scrapy crawl enrich`` over ``lines`` (input file lines) with a YAML config; checks the run ended well."""
    workdir.mkdir(parents=True, exist_ok=True)
    input_file, config_file = workdir / "urls.txt", workdir / "config.yml"
    output, stats_file = workdir / "out.jsonl", workdir / "stats.json"
    input_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {**config, "nlp": {"enabled": False}, "output": {"path": str(output)}}
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = [sys.executable, "-m", "scrapy", "crawl", "enrich", "-a", f"input={input_file}"]
    argv += ["-a", f"config={config_file}", "-a", f"stats_file={stats_file}"]
    started = time.monotonic()
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CRAWL_TIMEOUT_S, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-4000:]
    raw = output.read_text(encoding="utf-8")
    assert raw.endswith("\n")
    out_lines = raw.splitlines()
    records = [json.loads(line) for line in out_lines]  # valid JSONL: every line parses
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    return Crawl(result=result, lines=out_lines, records=records, stats=stats, elapsed_s=elapsed)


def fetch_config(**politeness: Any) -> dict[str, Any]:
    return {
        "fetch": {
            "timeout_s": TIMEOUT_S,
            "retries": RETRIES,
            "max_redirects": MAX_REDIRECTS,
            "max_response_bytes": CAP,
            "backoff_base_s": 0.1,
        },
        "politeness": {"max_crawl_delay_s": CRAWL_DELAY_S, "circuit_failures": 100, **politeness},
    }


# --- the mixed run ----------------------------------------------------------------------------------------------


def mixed_cases(sites: dict[str, str]) -> dict[str, str]:
    """``{case name: URL}``, spread over three hosts."""
    a, b, c = (sites[h] for h in HOSTS)
    port_a = a.rsplit(":", 1)[1]
    return {
        "normal": f"{a}/",
        "page": f"{b}/page/7",
        "robots_disallow": f"{a}/private/x",
        "redirect_loop": f"{a}/redirect/loop",
        "redirect_self": f"{b}/redirect/self",
        "chain_ok": f"{a}/redirect/chain/{MAX_REDIRECTS}",
        "chain_long": f"{b}/redirect/chain/{MAX_REDIRECTS + 2}",
        "open_redirect": f"{a}/redirect/to?url={b}/page/9",
        "ftp": f"{a}/redirect/ftp",
        "file": f"{b}/redirect/file",
        "javascript": f"{a}/redirect/javascript",
        "data": f"{b}/redirect/data",
        "big": f"{b}/big?bytes={CAP * 3}",
        "big_chunked": f"{a}/big-chunked?bytes={CAP * 3}",
        "gzip_bomb": f"{b}/gzip-bomb",
        "pdf_as_html": f"{a}/lie/pdf-as-html",
        "html_as_png": f"{b}/lie/html-as-png",
        "latin1_as_utf8": f"{a}/charset/latin1-as-utf8",
        "utf8_as_latin1": f"{b}/charset/utf8-as-latin1",
        "binary_as_html": f"{a}/binary-as-html",
        "empty": f"{b}/empty",
        "truncated": f"{a}/truncated",
        "reset": f"{b}/reset",
        "trickle": f"{a}/trickle",
        "hang": f"{b}/hang",
        "status_404": f"{a}/status/404",
        "status_500": f"{b}/status/500",
        "credentials": f"http://user:s3cret@127.0.0.1:{port_a}/any/path",
        "whoami_credentials": f"http://user:s3cret@127.0.0.1:{port_a}/whoami",
        "localhost": f"http://localhost:{port_a}/page/3",
        "rate_ok_1": f"{c}/rate-limited?n=1&key=one",
        "rate_ok_2": f"{c}/rate-limited?n=2&key=two",
        "rate_fail": f"{c}/rate-limited?n=5&key=five",
    }


HUGE_URL = "http://127.0.0.1/" + "a" * 9000
"""Over ``MAX_URL_LENGTH``: an ``InvalidURLError`` record, no request."""

BAD_LINES = ["not a url", "ftp://127.0.0.1/file.txt", "http://", HUGE_URL]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, sites: dict[str, str]) -> Crawl:
    cases = mixed_cases(sites)
    lines = [*cases.values(), cases["normal"], *BAD_LINES]  # one repeated line: skipped
    return run_crawl(tmp_path_factory.mktemp("mixed"), lines, fetch_config())


def record_of(crawl: Crawl, sites: dict[str, str], case: str) -> dict[str, Any]:
    url = mixed_cases(sites)[case]
    return crawl.one(url.replace("user:s3cret@", ""))


def test_one_record_per_input_line(mixed: Crawl, sites: dict[str, str], record_validator: Draft202012Validator) -> None:
    cases = mixed_cases(sites)
    expected = Counter(u.replace("user:s3cret@", "") for u in cases.values())
    valid = Counter(r["url"] for r in mixed.records if r["error"] is None or r["error"]["stage"] != "input")
    assert valid == expected  # the repeated line is skipped, as in the async engine
    assert len(mixed.records) == len(cases) + len(BAD_LINES)
    assert mixed.stats["duplicates_skipped"] == 1
    for record in mixed.records:
        record_validator.validate(record)
        assert record["engine"] == "scrapy"


def test_bounded_run_time(mixed: Crawl) -> None:
    # the slowest URLs (trickle, hang) take (R+1) x T; pacing and start-up add a few seconds
    assert mixed.elapsed_s < (RETRIES + 1) * TIMEOUT_S + 40


def test_invalid_lines_get_input_errors(mixed: Crawl) -> None:
    errors = [r for r in mixed.records if r["error"] is not None and r["error"]["stage"] == "input"]
    assert len(errors) == len(BAD_LINES)
    assert {e["error"]["type"] for e in errors} == {"InvalidURLError"}
    assert all(e["attempts"] == 0 for e in errors)
    messages = {e["error"]["message"] for e in errors}
    assert "URL longer than 8192 characters" in messages


def test_normal_pages_and_duplicates(mixed: Crawl, sites: dict[str, str]) -> None:
    normal = [r for r in mixed.records if r["url"] == mixed_cases(sites)["normal"]]
    assert len(normal) == 1  # its repeated line was skipped
    for case in ("normal", "page", "localhost"):
        record = record_of(mixed, sites, case) if case != "normal" else normal[0]
        assert record["error"] is None, record["error"]
        assert record["status"] == 200
        assert record["content_type"] == "text/html"
        assert record["title"]
        assert record["text"]


def test_robots_disallow(mixed: Crawl, sites: dict[str, str]) -> None:
    record = record_of(mixed, sites, "robots_disallow")
    assert record["error"] == {
        "type": "RobotsDisallowedError",
        "message": f"robots.txt of {sites['127.0.0.1']} disallows /private/x for webenrich",
        "stage": "fetch",
    }
    assert (record["attempts"], record["status"]) == (0, None)


def test_robots_on_in_stats(mixed: Crawl) -> None:
    robots = mixed.stats["policies"]["robots"]
    assert robots["enabled"] is True
    assert robots["disallowed"] >= 1


def test_crawl_delay_spaces_request_starts(mixed: Crawl, journal: Journal) -> None:
    for host in HOSTS:
        starts = [e.start for e in journal.for_host(host) if e.path_qs != "/robots.txt"]
        assert len(starts) > 3
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert min(gaps) >= CRAWL_DELAY_S - 0.05, (host, min(gaps))


@pytest.mark.parametrize("case", ["redirect_loop", "redirect_self", "chain_long"])
def test_redirect_loops_and_long_chains(mixed: Crawl, sites: dict[str, str], case: str) -> None:
    record = record_of(mixed, sites, case)
    assert record["error"] == {
        "type": "FetchError",
        "message": f"Fetch failed after 1 attempt: Too many redirects (more than {MAX_REDIRECTS})",
        "stage": "fetch",
    }
    assert record["attempts"] == 1


def test_redirects_followed(mixed: Crawl, sites: dict[str, str]) -> None:
    chain = record_of(mixed, sites, "chain_ok")
    assert chain["error"] is None
    assert chain["final_url"].endswith("/redirect/chain/0")
    opened = record_of(mixed, sites, "open_redirect")
    assert opened["error"] is None
    assert opened["final_url"] == f"{sites['127.0.0.2']}/page/9"


@pytest.mark.parametrize(
    ("case", "location"),
    [
        ("ftp", "ftp://127.0.0.1/file.txt"),
        ("file", "file:///etc/passwd"),
        ("javascript", "javascript:alert(1)"),
        ("data", "data:text/html,<h1>hi</h1>"),
    ],
)
def test_redirect_to_non_http(mixed: Crawl, sites: dict[str, str], case: str, location: str) -> None:
    record = record_of(mixed, sites, case)
    assert record["error"] == {
        "type": "FetchError",
        "message": f"Fetch failed after 1 attempt: Redirect to a non-HTTP URL: {location}",
        "stage": "fetch",
    }
    assert record["attempts"] == 1


@pytest.mark.parametrize("case", ["big", "big_chunked"])
def test_body_over_the_cap_is_cut_and_kept(mixed: Crawl, sites: dict[str, str], case: str) -> None:
    record = record_of(mixed, sites, case)
    assert record["error"] is None, record["error"]
    assert record["status"] == 200
    assert record["size_bytes"] == CAP
    assert record["metadata"]["truncated"] is True
    assert "xxxx" in record["text"]


def test_gzip_bomb(mixed: Crawl, sites: dict[str, str]) -> None:
    record = record_of(mixed, sites, "gzip_bomb")
    assert record["status"] == 200
    assert record["size_bytes"] <= CAP
    assert record["metadata"]["truncated"] is True
    assert record["error"] == {
        "type": "ContentError",
        "message": "binary content served as text/html",
        "stage": "extract",
    }


def test_lying_content_types_and_charsets(mixed: Crawl, sites: dict[str, str]) -> None:
    pdf = record_of(mixed, sites, "pdf_as_html")
    assert (pdf["error"], pdf["content_type"]) == (None, "application/pdf")
    assert "Hostile PDF" in pdf["text"]
    html = record_of(mixed, sites, "html_as_png")
    assert (html["error"], html["content_type"]) == (None, "text/html")
    assert html["title"] == "HTML pretending to be PNG"
    latin1 = record_of(mixed, sites, "latin1_as_utf8")
    assert "Café crème, déjà vu, naïve façade" in latin1["text"]
    assert latin1["metadata"]["encoding"] in {"cp1252", "latin-1", "iso-8859-1", "windows-1252"}
    utf8 = record_of(mixed, sites, "utf8_as_latin1")
    assert "Café crème" in utf8["text"]
    assert "CafÃ©" not in utf8["text"]
    assert utf8["metadata"]["encoding"] == "utf-8"


def test_binary_and_empty(mixed: Crawl, sites: dict[str, str]) -> None:
    binary = record_of(mixed, sites, "binary_as_html")
    assert binary["status"] == 200
    assert binary["error"] == {
        "type": "ContentError",
        "message": "binary content served as text/html",
        "stage": "extract",
    }
    empty = record_of(mixed, sites, "empty")
    assert (empty["status"], empty["size_bytes"]) == (200, 0)
    assert empty["error"] == {"type": "ContentError", "message": "empty body", "stage": "extract"}


@pytest.mark.parametrize("case", ["truncated", "reset"])
def test_broken_connections(mixed: Crawl, sites: dict[str, str], case: str) -> None:
    record = record_of(mixed, sites, case)
    assert record["error"] == {
        "type": "FetchError",
        "message": f"Fetch failed after {RETRIES + 1} attempts: Connection dropped while reading the body",
        "stage": "fetch",
    }
    assert record["attempts"] == RETRIES + 1


@pytest.mark.parametrize("case", ["trickle", "hang"])
def test_slow_servers_time_out(mixed: Crawl, sites: dict[str, str], journal: Journal, case: str) -> None:
    record = record_of(mixed, sites, case)
    assert record["error"] == {
        "type": "FetchTimeoutError",
        "message": f"Fetch failed after {RETRIES + 1} attempts: Timeout after {TIMEOUT_S:g}s",
        "stage": "fetch",
    }
    path = "/" + case
    served = [e for e in journal.entries if e.path_qs == path]
    assert len(served) == RETRIES + 1
    for attempt in served:  # each attempt ends at T: the total timeout, not a read timeout each byte resets
        assert attempt.end - attempt.start < TIMEOUT_S + 1.5


def test_http_statuses(mixed: Crawl, sites: dict[str, str]) -> None:
    missing = record_of(mixed, sites, "status_404")
    assert missing["error"] == {"type": "HTTPError", "message": "HTTP 404 Not Found", "stage": "fetch"}
    assert (missing["status"], missing["attempts"]) == (404, 1)
    broken = record_of(mixed, sites, "status_500")
    assert broken["error"] == {
        "type": "HTTPError",
        "message": f"Fetch failed after {RETRIES + 1} attempts: HTTP 500 Internal Server Error",
        "stage": "fetch",
    }


def test_rate_limited(mixed: Crawl, sites: dict[str, str], journal: Journal) -> None:
    for case, k in (("rate_ok_1", 1), ("rate_ok_2", 2)):
        record = record_of(mixed, sites, case)
        assert record["error"] is None, record["error"]
        assert (record["status"], record["attempts"]) == (200, k + 1)
    failed = record_of(mixed, sites, "rate_fail")
    assert failed["error"] == {
        "type": "HTTPError",
        "message": f"Fetch failed after {RETRIES + 1} attempts: HTTP 429 Too Many Requests",
        "stage": "fetch",
    }
    seen = journal.for_host("127.0.0.3")
    limited = [e for e in seen if e.status == 429]
    assert len(limited) == 1 + 2 + (RETRIES + 1)
    # every backoff of the run is 127.0.0.3's (the only site that answered 429), one per 429
    assert mixed.stats["policies"]["frontier"]["backoffs"] == len(limited)
    for key in ("one", "two", "five"):  # Retry-After: 1 -> the next attempt waits a second
        attempts = [e for e in seen if e.path_qs.endswith(f"key={key}")]
        assert len(attempts) >= 2
        for answer, after in itertools.pairwise(attempts):
            assert after.start - answer.end >= 0.95, (answer, after)
    # a request that left the gate before the client read the 429 may start within that second; later ones may not
    for answer in limited:
        too_soon = [e for e in seen if answer.end + 0.1 < e.start < answer.end + 0.9]
        assert len(too_soon) <= 1, (answer, too_soon)
    assert mixed.stats["policies"]["frontier"]["open_circuits"] == []


def test_credentials_never_shown(mixed: Crawl, sites: dict[str, str]) -> None:
    page = record_of(mixed, sites, "credentials")
    assert page["error"] is None
    assert "s3cret" not in json.dumps(page)
    assert page["final_url"] == page["url"]
    whoami = record_of(mixed, sites, "whoami_credentials")
    assert "authorization: present" in whoami["text"]  # the request had Basic auth
    assert "s3cret" not in "\n".join(mixed.lines)
    assert "s3cret" not in mixed.log


# --- the circuit run --------------------------------------------------------------------------------------------

FAILURES = 3


@pytest.fixture(scope="module")
def circuit(tmp_path_factory: pytest.TempPathFactory, sites: dict[str, str]) -> Crawl:
    c = sites["127.0.0.3"]
    lines = [f"{c}/status/503?n={n}" for n in range(6)] + [f"{sites['127.0.0.2']}/page/1"]
    lines.append(f"{sites['127.0.0.1']}/private/x")
    config = fetch_config(circuit_failures=FAILURES, per_domain_concurrency=1, respect_robots=False)
    config["fetch"]["retries"] = 0
    return run_crawl(tmp_path_factory.mktemp("circuit"), lines, config)


def test_circuit_opens_after_consecutive_failures(circuit: Crawl, sites: dict[str, str]) -> None:
    records = [r for r in circuit.records if "/status/503" in r["url"]]
    assert len(records) == 6
    http = [r for r in records if r["error"]["type"] == "HTTPError"]
    refused = [r for r in records if r["error"]["type"] == "CircuitOpenError"]
    assert len(http) == FAILURES
    assert all(r["error"]["message"] == "HTTP 503 Service Unavailable" for r in http)
    assert len(refused) == 6 - FAILURES
    pattern = re.compile(
        rf"circuit open for 127\.0\.0\.3 after {FAILURES} consecutive failures"
        r"(?: \(last: [^)]+\))?; retry after (\d+) s"
    )
    for record in refused:
        match = pattern.fullmatch(record["error"]["message"])
        assert match is not None, record["error"]["message"]
        assert int(match.group(1)) <= 30
        assert (record["attempts"], record["status"], record["error"]["stage"]) == (0, None, "fetch")
    assert circuit.stats["policies"]["frontier"]["open_circuits"] == ["127.0.0.3"]


def test_other_domains_unaffected_by_the_circuit(circuit: Crawl, sites: dict[str, str]) -> None:
    assert circuit.one(f"{sites['127.0.0.2']}/page/1")["error"] is None


def test_robots_off_fetches_disallowed_pages(circuit: Crawl, sites: dict[str, str]) -> None:
    record = circuit.one(f"{sites['127.0.0.1']}/private/x")
    assert record["error"] is None
    assert record["status"] == 200
    assert circuit.stats["policies"]["robots"]["enabled"] is False


# --- the address run --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory, sites: dict[str, str], journal: Journal) -> Crawl:
    port_a = sites["127.0.0.1"].rsplit(":", 1)[1]
    lines = [f"http://localhost:{port_a}/page/1?private", f"{sites['127.0.0.2']}/page/2?private"]
    before = len(journal.entries)
    crawl = run_crawl(tmp_path_factory.mktemp("private"), lines, fetch_config(allow_private_addresses=False))
    assert len(journal.entries) == before, "no connection may be made to a refused address"
    return crawl


def test_private_addresses_refused(private: Crawl, sites: dict[str, str]) -> None:
    port_a = sites["127.0.0.1"].rsplit(":", 1)[1]
    by_name = private.one(f"http://localhost:{port_a}/page/1?private")
    assert by_name["error"] == {
        "type": "BlockedAddressError",
        "message": "refused to connect to localhost: it resolves to 127.0.0.1, a loopback address "
        "(set politeness.allow_private_addresses to allow)",
        "stage": "fetch",
    }
    literal = private.one(f"{sites['127.0.0.2']}/page/2?private")
    assert literal["error"] == {
        "type": "BlockedAddressError",
        "message": "refused to connect to 127.0.0.2: 127.0.0.2 is a loopback address "
        "(set politeness.allow_private_addresses to allow)",
        "stage": "fetch",
    }
    for record in (by_name, literal):
        assert (record["attempts"], record["status"]) == (0, None)
    assert private.stats["policies"]["addresses"]["refused"] == 2


# --- the robots run ---------------------------------------------------------------------------------------------


def test_unreachable_robots_disallows_the_site(
    tmp_path_factory: pytest.TempPathFactory, sites: dict[str, str], journal: Journal
) -> None:
    base = sites[ROBOTS_503_HOST]
    urls = [f"{base}/page/{n}" for n in range(3)]
    crawl = run_crawl(tmp_path_factory.mktemp("robots"), urls, fetch_config())
    for url in urls:
        record = crawl.one(url)
        assert record["error"] == {
            "type": "RobotsDisallowedError",
            "message": f"robots.txt of {base} unreachable (HTTP 503); the site is disallowed for 60 s",
            "stage": "fetch",
        }
        assert record["attempts"] == 0
    served = [e.path_qs for e in journal.for_host(ROBOTS_503_HOST)]
    assert served == ["/robots.txt"]  # fetched once, not retried, and no page was requested


# --- the frontier: a site that must wait does not hold up the others -------------------------------------------


def test_grouped_input_does_not_starve_other_sites(
    tmp_path_factory: pytest.TempPathFactory, sites: dict[str, str], journal: Journal
) -> None:
    # All URLs of a paced site first (Crawl-delay 1 s), then another site's, with room for two downloads: the
    # input is read ahead into the frontier's per-site queues, so the second site's pages are fetched while the
    # first one waits out its delay, instead of after it (Scrapy's own look-ahead would hold only the first site).
    slow, other = sites["127.0.0.1"], sites["127.0.0.2"]
    slow_urls = [f"{slow}/page/{n}?grouped" for n in range(6)]
    other_urls = [f"{other}/page/{n}?grouped" for n in range(3)]
    config = fetch_config(max_crawl_delay_s=1.0)
    config["fetch"]["max_concurrency"] = 2
    crawl = run_crawl(tmp_path_factory.mktemp("grouped"), [*slow_urls, *other_urls], config)
    assert all(crawl.one(url)["error"] is None for url in [*slow_urls, *other_urls])
    slow_starts = [e.start for e in journal.for_host("127.0.0.1") if e.path_qs.endswith("?grouped")]
    other_starts = [e.start for e in journal.for_host("127.0.0.2") if e.path_qs.endswith("?grouped")]
    assert len(slow_starts) == len(slow_urls)
    assert min(b - a for a, b in itertools.pairwise(slow_starts)) >= 1.0 - 0.05  # the delay is honoured
    # the other site is done (3 pages at 1 s) while the paced site still has 2+ of its 6 to go
    assert max(other_starts) < sorted(slow_starts)[-2], (slow_starts, other_starts)


# --- a failing sink ---------------------------------------------------------------------------------------------


def _crawl_to(output: str, workdir: Path, urls: list[str]) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    input_file, config_file = workdir / "urls.txt", workdir / "config.yml"
    input_file.write_text("\n".join(urls) + "\n", encoding="utf-8")
    config = {"fetch": {"retries": 0}, "politeness": {"max_crawl_delay_s": 0.05}, "nlp": {"enabled": False}}
    config_file.write_text(yaml.safe_dump({**config, "output": {"batch_size": 2}}), encoding="utf-8")
    argv = [sys.executable, "-m", "scrapy", "crawl", "enrich", "-a", f"input={input_file}"]
    argv += ["-a", f"config={config_file}", "-a", f"output={output}"]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CRAWL_TIMEOUT_S, check=False)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device whose writes always fail)")
def test_failing_sink_stops_the_run_with_a_non_zero_exit(tmp_path: Path, sites: dict[str, str]) -> None:
    urls = [f"{sites['127.0.0.1']}/page/{n}?sink" for n in range(5)]
    result = _crawl_to("/dev/full", tmp_path, urls)
    assert result.returncode == 2, result.stderr[-3000:]
    # the run stops at the first failed batch: how many of the 5 URLs had records by then depends on timing (the
    # site's Crawl-delay spaces them), but every one of those is reported lost, none silently
    failed = re.search(
        r"scrapy crawl enrich: output failed: cannot write to /dev/full: No space left on device; "
        r"(\d) of (\d) records were not written",
        result.stderr,
    )
    assert failed is not None, result.stderr[-3000:]
    assert failed.group(1) == failed.group(2)
    assert 2 <= int(failed.group(1)) <= 5


def test_unwritable_output_path_is_a_clear_error(tmp_path: Path, sites: dict[str, str]) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    result = _crawl_to(str(blocker / "out.jsonl"), tmp_path, [f"{sites['127.0.0.1']}/page/1?sink"])
    assert result.returncode != 0
    assert f"scrapy crawl enrich: output failed: cannot open output file {blocker / 'out.jsonl'}" in result.stderr
