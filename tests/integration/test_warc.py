"""WARC output end to end: the command line (``--warc DIR``) with each engine against a loopback site, the files read
back with warcio and checked with warcio's own tools; a stopped run and a full disk."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from multidict import CIMultiDict
from warcs import StoredExchange, assert_warcio_accepts, read_exchanges, with_file_size_limit

from crawler.localsite import ServerThread
from tests.checkout import checkout_env

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

CAP = 4096
"""``max_response_bytes`` of these runs: the big page is cut at it."""

ROBOTS = b"User-agent: *\nDisallow: /private/\n"
PLAIN = b"<!doctype html><html><head><title>Plain page</title></head><body><p>The harbour at dawn.</p></body></html>"
TARGET = b"<!doctype html><html><head><title>Target page</title></head><body><p>Where it led.</p></body></html>"
ZIPPED = (
    b"<!doctype html><html><head><title>Gzip page</title></head><body>"
    + b"<p>The keepers wrote logbooks for a century.</p>" * 20
    + b"</body></html>"
)
ZIPPED_WIRE = gzip.compress(ZIPPED, mtime=0)
"""The gzip page exactly as the server sends it."""
BIG = b"<!doctype html><html><head><title>Big page</title></head><body>" + b"<p>filler</p>" * 4000 + b"</body></html>"


def site_app() -> web.Application:
    async def robots(request: web.Request) -> web.StreamResponse:
        return web.Response(body=ROBOTS, content_type="text/plain")

    async def plain(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict([("X-Dup", "one"), ("X-Dup", "two")])
        return web.Response(body=PLAIN, content_type="text/html", headers=headers)

    async def zipped(request: web.Request) -> web.StreamResponse:
        return web.Response(body=ZIPPED_WIRE, content_type="text/html", headers={"Content-Encoding": "gzip"})

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/target.html")

    async def target(request: web.Request) -> web.StreamResponse:
        return web.Response(body=TARGET, content_type="text/html")

    async def missing(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BIG, content_type="text/html")

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)
        return web.Response(body=PLAIN, content_type="text/html")

    async def noise(request: web.Request) -> web.StreamResponse:
        body = random.Random(request.match_info["n"]).randbytes(16 * 1024)  # gzip cannot shrink it
        return web.Response(body=body, content_type="text/html")

    app = web.Application()
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
        "/robots.txt": robots,
        "/plain.html": plain,
        "/gzip.html": zipped,
        "/redirect": redirect,
        "/target.html": target,
        "/missing": missing,
        "/big.html": big,
        "/slow/{n}": slow,
        "/noise/{n}": noise,
    }
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with ServerThread(site_app) as server:
        yield server.url


ENGINES = [pytest.param(True, id="async"), pytest.param(False, id="scrapy")]


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "crawler", "--progress", "lines", "--no-nlp", *args]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = checkout_env()
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False)


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "warc.yml"
    config.write_text(f"stages:\n  enrichment:\n    max_response_bytes: {CAP}\n    retries: 0\n", encoding="utf-8")
    return config


def engine_flag(use_async: bool) -> str:
    return "--async-enrichment" if use_async else "--no-async-enrichment"


def by_target(exchanges: list[StoredExchange]) -> dict[str, StoredExchange]:
    counts = Counter(e.response.target for e in exchanges)
    assert all(n == 1 for n in counts.values()), counts  # one exchange per request: no retry, nothing twice
    return {e.response.target: e for e in exchanges}


@pytest.fixture(scope="module", params=ENGINES)
def crawl(request: pytest.FixtureRequest, site: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ``--warc`` run of each engine over a plain page, a gzip-encoded page, a redirect, a 404, a page past the
    size cap and a page robots.txt disallows."""
    use_async: bool = request.param
    tmp_path = tmp_path_factory.mktemp("async" if use_async else "scrapy")
    urls = [f"{site}/{path}" for path in ("plain.html", "gzip.html", "redirect", "missing", "big.html", "private/x")]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n", encoding="utf-8")
    result = run(
        cli_command(
            "--config", str(write_config(tmp_path)), "--stage", "3", engine_flag(use_async),
            "--input", "urls.txt", "--output", "out.jsonl", "--warc", "warc",
        ),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    return {
        "engine": "async" if use_async else "scrapy",
        "warc": tmp_path / "warc",
        "records": {r["url"]: r for r in records},
    }


def test_every_exchange_is_archived_once_as_a_linked_pair(crawl: dict[str, Any], site: str) -> None:
    exchanges = by_target(read_exchanges(crawl["warc"]))  # also checks warcinfo first, pairs linked, same file
    # both redirect hops, robots.txt, the 404 and the cut page are exchanges; the disallowed page made none
    assert {target: e.response.status for target, e in exchanges.items()} == {
        f"{site}/robots.txt": 200,
        f"{site}/plain.html": 200,
        f"{site}/gzip.html": 200,
        f"{site}/redirect": 302,
        f"{site}/target.html": 200,
        f"{site}/missing": 404,
        f"{site}/big.html": 200,
    }
    host = site.removeprefix("http://")
    for target, exchange in exchanges.items():
        request, response = exchange.request, exchange.response
        assert request.http is not None
        assert request.http.protocol == "GET"
        assert request.http.statusline == f"{target.removeprefix(site)} HTTP/1.1"
        assert request.http_header("Host") == host
        assert str(request.http_header("User-Agent")).startswith("webenrich/")
        assert "gzip" in str(request.http_header("Accept-Encoding"))
        assert response.http is not None
        assert response.http.protocol == "HTTP/1.1"
        assert response.field("WARC-IP-Address") == request.field("WARC-IP-Address") == "127.0.0.1"
        assert str(request.field("WARC-Date")) <= str(response.field("WARC-Date"))
    assert exchanges[f"{site}/redirect"].response.http_header("Location") == "/target.html"
    assert exchanges[f"{site}/robots.txt"].response.payload == ROBOTS
    assert exchanges[f"{site}/target.html"].response.payload == TARGET


def test_headers_as_received_duplicates_kept(crawl: dict[str, Any], site: str) -> None:
    response = by_target(read_exchanges(crawl["warc"]))[f"{site}/plain.html"].response
    assert response.http is not None
    assert response.http.statusline == "200 OK"
    assert [v for k, v in response.http.headers if k.lower() == "x-dup"] == ["one", "two"]
    assert response.http_header("Content-Length") == str(len(PLAIN))
    assert response.payload == PLAIN


def test_a_gzip_page_is_stored_as_sent_and_still_extracted(crawl: dict[str, Any], site: str) -> None:
    response = by_target(read_exchanges(crawl["warc"]))[f"{site}/gzip.html"].response
    assert response.http_header("Content-Encoding") == "gzip"
    assert response.payload == ZIPPED_WIRE  # the compressed bytes the server sent
    assert response.content == ZIPPED  # warcio decodes them
    record = crawl["records"][f"{site}/gzip.html"]
    assert record["error"] is None
    assert record["title"] == "Gzip page"  # the engine still decoded its own copy


def test_a_body_cut_at_the_cap_is_marked(crawl: dict[str, Any], site: str) -> None:
    response = by_target(read_exchanges(crawl["warc"]))[f"{site}/big.html"].response
    assert response.field("WARC-Truncated") == "length"
    assert response.payload == BIG[:CAP]
    assert response.http_header("Content-Length") == str(len(BIG))  # as received
    others = [e for e in read_exchanges(crawl["warc"]) if e.response.target != f"{site}/big.html"]
    assert all(e.response.field("WARC-Truncated") is None for e in others)


def test_warcio_tools_accept_the_files(crawl: dict[str, Any]) -> None:
    assert_warcio_accepts(crawl["warc"])


STOP = [
    pytest.param(True, signal.SIGTERM, id="async-SIGTERM"),
    pytest.param(False, signal.SIGINT, id="scrapy-SIGINT"),
]


@pytest.mark.parametrize(("use_async", "signum"), STOP)
def test_a_stopped_run_leaves_valid_files(site: str, tmp_path: Path, use_async: bool, signum: int) -> None:
    (tmp_path / "urls.txt").write_text("".join(f"{site}/slow/{n}\n" for n in range(200)), encoding="utf-8")
    command = cli_command(
        "--stage", "3", engine_flag(use_async), "-i", "urls.txt", "-o", "out.jsonl", "--warc", "warc",
        "--max-workers", "2", "--no-adaptive", "--batch-size", "1", "--progress-interval", "0.2",
    )  # fmt: skip
    env = checkout_env()
    out = tmp_path / "out.jsonl"
    with subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 2):
            time.sleep(0.1)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-4000:]
    exchanges = read_exchanges(tmp_path / "warc")
    pages = [e for e in exchanges if "/slow/" in e.response.target]
    assert 2 <= len(pages) < 200
    assert all(e.response.status == 200 and e.response.payload == PLAIN for e in pages)
    assert_warcio_accepts(tmp_path / "warc")


@pytest.mark.parametrize("use_async", ENGINES)
def test_a_full_disk_stops_the_run_with_a_clear_error(site: str, tmp_path: Path, use_async: bool) -> None:
    (tmp_path / "urls.txt").write_text("".join(f"{site}/noise/{n}\n" for n in range(30)), encoding="utf-8")
    command = cli_command(
        "--stage", "3", engine_flag(use_async), "-i", "urls.txt", "-o", "out.jsonl", "--warc", "warc",
        "--max-workers", "2",
    )  # fmt: skip
    result = run(with_file_size_limit(128 * 1024, command), cwd=tmp_path)  # Scrapy mode's process inherits it
    assert result.returncode == 1, result.stderr[-4000:]
    if use_async:
        assert "webenrich: failed: cannot write WARC file" in result.stderr
    else:
        assert "scrapy crawl enrich: WARC output failed: cannot write WARC file" in result.stderr
        assert "webenrich: failed: Scrapy mode's output failed (scrapy crawl exited with status 2)" in result.stderr
    assert "File too large" in result.stderr
    archived = [e for e in read_exchanges(tmp_path / "warc") if "/noise/" in e.response.target]
    assert 1 <= len(archived) < 30  # the run stopped
    assert_warcio_accepts(tmp_path / "warc")  # and what it wrote is whole
