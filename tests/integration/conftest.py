"""Local servers for integration tests: one scenario app on loopback, run in a thread for the whole session.

Routes (``{key}`` keeps per-test state apart, so tests sharing the server do not see each other's hits):

- ``/ok/{name}``: a small HTML article; ``/slow/{ms}``: the same after ``ms`` milliseconds.
- ``/flaky/{key}``: 500 on the first hit, then 200. ``/ratelimited/{key}/{seconds}``: 429 with ``Retry-After``,
  then 200. ``/overload/{key}/{n}``: 503 for the first ``n`` hits, then 200.
- ``/drop/{key}``: closes the connection without answering. ``/hang/{key}``: answers after 30 s.
- ``/redirect/{n}``: a chain of ``n`` redirects ending at ``/ok/final``.
- ``/report.pdf``, ``/map.png``: demo documents. ``/big``: 200 KB of HTML. ``/missing/{key}``: 404.
- ``/ua``: a page whose text is the request's User-Agent.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from crawler.demo import DEMO_ROOT, demo_pages, make_pdf, make_png
from crawler.localsite import ServerThread, static_app

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator


def article(title: str, body: str = "") -> bytes:
    paragraph = body or (
        "Harbour Town keeps its lighthouse open every summer. The keepers wrote logbooks for a century, and the "
        "historical society reads them aloud at the Saturday market. Visitors walk the pier at dusk."
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><article><h1>{title}</h1><p>{paragraph}</p><p>{paragraph}</p></article></body></html>"
    ).encode()


class Hits:
    """Requests seen per route key, counted in the server thread and read by tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0

    def hit(self, key: str) -> int:
        with self._lock:
            self.counts[key] += 1
            return self.counts[key]

    def __getitem__(self, key: str) -> int:
        with self._lock:
            return self.counts[key]


def scenario_app(hits: Hits) -> web.Application:
    pdf, png = make_pdf(), make_png()
    big = article("Big page", "word " * 40_000)

    def html(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(body=body, status=status, content_type="text/html", charset="utf-8", headers=headers)

    @web.middleware
    async def count_in_flight(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        hits.in_flight += 1
        hits.peak_in_flight = max(hits.peak_in_flight, hits.in_flight)
        try:
            return await handler(request)
        finally:
            hits.in_flight -= 1

    async def ok(request: web.Request) -> web.Response:
        return html(article(f"Page {request.match_info['name']}"))

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return html(article("Slow page"))

    async def flaky(request: web.Request) -> web.Response:
        if hits.hit(request.path) == 1:
            return html(b"<h1>oops</h1>", status=500)
        return html(article("Recovered page"))

    async def ratelimited(request: web.Request) -> web.Response:
        if hits.hit(request.path) == 1:
            return html(b"slow down", status=429, headers={"Retry-After": request.match_info["seconds"]})
        return html(article("Patient page"))

    async def overload(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if hits.hit(key) <= int(request.match_info["n"]):
            await asyncio.sleep(0.005)
            return html(b"busy", status=503)
        await asyncio.sleep(0.005)
        return html(article("Calm page"))

    async def drop(request: web.Request) -> web.Response:
        hits.hit(request.path)
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError  # the handler ends with the connection; nothing is sent

    async def hang(request: web.Request) -> web.Response:
        hits.hit(request.path)
        await asyncio.sleep(30)
        return html(article("Too late"))

    async def redirect(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound("/ok/final" if n <= 0 else f"/redirect/{n - 1}")

    async def missing(request: web.Request) -> web.Response:
        hits.hit(request.path)
        raise web.HTTPNotFound()

    async def user_agent(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("User-Agent", ""), content_type="text/plain")

    async def document(request: web.Request) -> web.Response:
        if request.path.endswith(".pdf"):
            return web.Response(body=pdf, content_type="application/pdf")
        return web.Response(body=png, content_type="image/png")

    async def big_page(request: web.Request) -> web.Response:
        return html(big)

    app = web.Application(middlewares=[count_in_flight])
    app.router.add_get("/ok/{name}", ok)
    app.router.add_get("/slow/{ms}", slow)
    app.router.add_get("/flaky/{key}", flaky)
    app.router.add_get("/ratelimited/{key}/{seconds}", ratelimited)
    app.router.add_get("/overload/{key}/{n}/{item}", overload)
    app.router.add_get("/drop/{key}", drop)
    app.router.add_get("/hang/{key}", hang)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/missing/{key}", missing)
    app.router.add_get("/ua", user_agent)
    app.router.add_get("/report.pdf", document)
    app.router.add_get("/map.png", document)
    app.router.add_get("/big", big_page)
    return app


@pytest.fixture(scope="session")
def hits() -> Hits:
    return Hits()


@pytest.fixture(scope="session")
def site(hits: Hits) -> Iterator[ServerThread]:
    """The scenario server, shared by the session."""
    with ServerThread(lambda: scenario_app(hits)) as server:
        yield server


@pytest.fixture(scope="session")
def demo_site() -> Iterator[ServerThread]:
    """The embedded demo site (HTML files, a PDF and a PNG)."""
    with ServerThread(lambda: static_app(DEMO_ROOT, demo_pages())) as server:
        yield server


@pytest.fixture
def unreachable_url() -> Iterator[str]:
    """A URL whose port is bound but never listening: connections are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server for the session (tests/postgres_server.py); skipped, saying why, where none runs."""
    from postgres_server import Unavailable, postgres_server

    try:
        server = postgres_server()
        dsn = server.__enter__()
    except (Unavailable, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.decode(errors="replace")[-300:] if isinstance(exc, subprocess.CalledProcessError) else exc
        pytest.skip(f"no PostgreSQL server: {detail}")
    try:
        yield dsn
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server for the session (tests/redis_server.py); skipped, saying why, where none runs."""
    from redis_server import Unavailable, redis_server

    try:
        server = redis_server()
        url = server.__enter__()
    except Unavailable as exc:
        pytest.skip(f"no Redis server: {exc}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def tripwire_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tripwire pipeline (``nlp_tripwire.py``) as an installed model package, on the ``sys.path`` that spawned
    NLP workers inherit: real worker processes with a model that loads in no time."""
    from nlp_tripwire import PACKAGE

    root = tmp_path / "site"
    package = root / PACKAGE
    package.mkdir(parents=True)
    shutil.copyfile(Path(__file__).with_name("nlp_tripwire.py"), package / "__init__.py")
    dist_info = root / f"{PACKAGE}-0.0.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.0.0\n")
    monkeypatch.syspath_prepend(str(root))
    return PACKAGE
