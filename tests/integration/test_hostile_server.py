"""Self-test of the hostile server (tests/hostile_server.py) with plain aiohttp: each route misbehaves as designed.

Every request here has a short timeout, so the whole module runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from hostile_server import (
    BOMB_DEFAULT_MB,
    BROKEN_LENGTH,
    BROKEN_SENT,
    LATIN1_TEXT,
    gzip_bomb,
    hostile_sites,
    make_app,
)

from crawler.localsite import ServerThread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

SERVER_SCRIPT = Path(__file__).resolve().parents[1] / "hostile_server.py"
QUICK = aiohttp.ClientTimeout(total=5)


@pytest.fixture(scope="module")
def sites() -> Iterator[dict[str, str]]:
    with hostile_sites() as urls:
        yield urls


@pytest.fixture(scope="module")
def base(sites: dict[str, str]) -> str:
    return sites["127.0.0.1"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=QUICK) as client:
        yield client


# --- normal pages and robots ----------------------------------------------------------------------------------


async def test_normal_pages(session: aiohttp.ClientSession, base: str) -> None:
    for path in ("/", "/page/2", "/anything/at/all", "/private/secret"):
        async with session.get(base + path) as response:
            assert response.status == 200, path
            assert response.content_type == "text/html"
            assert "<title>" in await response.text()


async def test_robots_txt(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/robots.txt") as response:
        text = await response.text()
    assert "Disallow: /private/" in text
    assert "Crawl-delay: 1" in text
    assert f"Sitemap: {base}/sitemap.xml" in text


async def test_distinct_domains_and_localhost(session: aiohttp.ClientSession, sites: dict[str, str]) -> None:
    assert set(sites) == {"127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost"}
    for host, url in sites.items():
        async with session.get(url + "/whoami", headers={"User-Agent": "hostile-test/1"}) as response:
            text = await response.text()
        assert f"host: {host}:" in text
        assert "user-agent: hostile-test/1" in text


async def test_credentials_in_url_are_accepted(session: aiohttp.ClientSession, base: str) -> None:
    url = base.replace("http://", "http://user:s3cret@") + "/members/page"
    async with session.get(url) as response:
        assert response.status == 200
        assert response.headers["X-Auth-Seen"] == "yes"
        assert "s3cret" not in await response.text()


# --- redirects ------------------------------------------------------------------------------------------------


async def test_redirect_loop(session: aiohttp.ClientSession, base: str) -> None:
    with pytest.raises(aiohttp.TooManyRedirects):
        await session.get(base + "/redirect/loop", max_redirects=10)
    async with session.get(base + "/redirect/self", allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (302, "/redirect/self")


async def test_redirect_chain(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/redirect/chain/3") as response:
        assert response.status == 200
        assert len(response.history) == 3
        assert response.url.path == "/redirect/chain/0"


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/redirect/ftp", "ftp://127.0.0.1/file.txt"),
        ("/redirect/file", "file:///etc/passwd"),
        ("/redirect/javascript", "javascript:alert(1)"),
        ("/redirect/data", "data:text/html,<h1>hi</h1>"),
        ("/redirect/to?url=http://127.0.0.2/x", "http://127.0.0.2/x"),
    ],
)
async def test_redirect_to_other_schemes(session: aiohttp.ClientSession, base: str, path: str, location: str) -> None:
    async with session.get(base + path, allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == location


async def test_client_refuses_non_http_redirect(session: aiohttp.ClientSession, base: str) -> None:
    with pytest.raises(aiohttp.NonHttpUrlRedirectClientError):
        await session.get(base + "/redirect/file")


# --- size -----------------------------------------------------------------------------------------------------


async def test_big_body_has_length_and_streams(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/big?bytes=300000") as response:
        assert response.content_length == 300_000
        assert len(await response.read()) == 300_000
    async with session.get(base + "/big?bytes=1000000000") as response:
        assert response.content_length == 1_000_000_000
        first = await response.content.read(70_000)  # a reader can stop at its cap without the rest
        assert len(first) > 0
    async with session.get(base + "/big-chunked?bytes=100000") as response:
        assert response.content_length is None
        assert len(await response.read()) == 100_000


async def test_big_refuses_silly_sizes(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/big?bytes=99999999999999") as response:
        assert response.status == 400


async def test_gzip_bomb(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/gzip-bomb", auto_decompress=False) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.content_type == "text/html"
        body = await response.read()
    assert len(body) < 1024 * 1024
    assert body == gzip_bomb(BOMB_DEFAULT_MB)
    # Inflate in bounded steps, counting: never hold more than 1 MiB of output.
    inflater = zlib.decompressobj(31)
    total, data = 0, body
    while data or not inflater.eof:
        out = inflater.decompress(data, 1024 * 1024)
        total += len(out)
        data = inflater.unconsumed_tail
        if not out and not data:
            break
    assert total == BOMB_DEFAULT_MB * 1024 * 1024


# --- lies -----------------------------------------------------------------------------------------------------


async def test_content_type_lies(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/lie/pdf-as-html") as response:
        assert response.content_type == "text/html"
        assert (await response.read()).startswith(b"%PDF-")
    async with session.get(base + "/lie/html-as-png") as response:
        assert response.content_type == "image/png"
        assert (await response.read()).startswith(b"<!doctype html>")


async def test_charset_lies(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/charset/latin1-as-utf8") as response:
        assert response.charset == "utf-8"
        body = await response.read()
    assert LATIN1_TEXT.encode("latin-1") in body
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    async with session.get(base + "/charset/utf8-as-latin1") as response:
        assert response.charset == "iso-8859-1"
        assert LATIN1_TEXT.encode("utf-8") in await response.read()


async def test_binary_as_html_and_empty(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/binary-as-html") as response:
        assert response.content_type == "text/html"
        body = await response.read()
    assert len(body) == 64 * 1024
    assert b"\x00" in body
    async with session.get(base + "/empty") as response:
        assert response.status == 200
        assert await response.read() == b""


# --- broken connections ---------------------------------------------------------------------------------------


async def test_truncated_body(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/truncated") as response:
        assert response.content_length == BROKEN_LENGTH
        with pytest.raises(aiohttp.ClientPayloadError, match=f"received {BROKEN_SENT} of {BROKEN_LENGTH}"):
            await response.read()


async def test_connection_reset_mid_body(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/reset") as response:
        assert response.content_length == BROKEN_LENGTH
        with pytest.raises(aiohttp.ClientPayloadError, match="ConnectionResetError"):
            await response.read()


async def test_trickle_outlasts_a_timeout(session: aiohttp.ClientSession, base: str) -> None:
    started = time.monotonic()

    async def read_all() -> bytes:
        async with session.get(base + "/trickle", timeout=aiohttp.ClientTimeout(total=2.5)) as response:
            assert response.status == 200
            return await response.read()

    with pytest.raises(TimeoutError):
        await read_all()
    assert 2 <= time.monotonic() - started < 4


async def test_trickle_sends_a_byte_a_second(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/trickle?seconds=2") as response:
        assert await response.read() == b"  "


async def test_hang_never_answers(session: aiohttp.ClientSession, base: str) -> None:
    with pytest.raises(TimeoutError):
        await session.get(base + "/hang", timeout=aiohttp.ClientTimeout(total=1))


def test_endless_handlers_do_not_block_shutdown() -> None:
    server = ServerThread(make_app).start()

    async def start_requests() -> list[asyncio.Task[object]]:
        client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(client.get(server.url + path)) for path in ("/hang", "/trickle", "/hang")
        ]
        await asyncio.sleep(0.3)  # the requests reach their handlers
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        assert time.monotonic() - started < 3
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        return tasks

    asyncio.run(start_requests())


# --- statuses -------------------------------------------------------------------------------------------------


async def test_rate_limited_then_ok_per_domain_and_key(session: aiohttp.ClientSession, sites: dict[str, str]) -> None:
    a, b = sites["127.0.0.1"], sites["127.0.0.2"]
    statuses = []
    for _ in range(3):
        async with session.get(a + "/rate-limited?n=2&key=t1") as response:
            statuses.append(response.status)
            if response.status == 429:
                assert response.headers["Retry-After"] == "1"
    assert statuses == [429, 429, 200]
    async with session.get(b + "/rate-limited?n=2&key=t1") as response:
        assert response.status == 429  # another domain has its own count
    async with session.get(a + "/rate-limited?n=2&key=t2") as response:
        assert response.status == 429  # and so has another key


async def test_status_routes(session: aiohttp.ClientSession, base: str) -> None:
    for code in (503, 503, 500, 404, 204):
        async with session.get(base + f"/status/{code}") as response:
            assert response.status == code


# --- as its own process ---------------------------------------------------------------------------------------


def test_runs_as_a_process() -> None:
    env = {**os.environ, "PYTHONPATH": str(SERVER_SCRIPT.parents[1])}
    with subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "--host", "127.0.0.2", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.2:")
            url = line.removeprefix("listening on ")

            async def fetch() -> int:
                async with aiohttp.ClientSession(timeout=QUICK) as client, client.get(url + "/page/1") as response:
                    return response.status

            assert asyncio.run(fetch()) == 200
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0
