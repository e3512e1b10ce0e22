"""A hostile HTTP server: every way a web server can hurt a crawler, one route each, on loopback.

Use it in tests with :class:`crawler.localsite.ServerThread` (``ServerThread(make_app)``), or several at once on
``127.0.0.1``, ``127.0.0.2``, ``127.0.0.3`` to simulate distinct domains (:func:`hostile_sites`), or as its own
process for subprocess tests::

    python tests/hostile_server.py --port 8765 [--host 127.0.0.2]

which prints ``listening on http://HOST:PORT`` once ready (``--port 0`` picks a free port) and stops on SIGTERM or
SIGINT. ``docs/hostile-web.md`` lists the routes and what each engine must make of them.

Routes that never end on their own (trickle, hang) wake every :data:`TICK_S` to check a stop flag that the app's
``on_shutdown`` sets, so stopping the server is never held up by them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import socket
import struct
import threading
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from crawler.demo import make_pdf

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BOMB_DEFAULT_MB",
    "ROBOTS_CRAWL_DELAY",
    "ROUTES",
    "TICK_S",
    "HostileState",
    "gzip_bomb",
    "hostile_sites",
    "make_app",
    "minimal_pdf",
]

TICK_S = 0.1
"""How often endless handlers check whether the server is stopping."""

BOMB_DEFAULT_MB = 200
"""What ``/gzip-bomb`` inflates to, in MiB (the body sent is about 200 KB)."""

MAX_BIG_BYTES = 2 * 1024**3
"""``/big`` refuses larger requests: the route is for testing a size cap, not for filling a disk."""

ROBOTS_CRAWL_DELAY = 1
"""The ``Crawl-delay`` in ``/robots.txt``."""

ROBOTS_TXT = """User-agent: *
Disallow: /private/
Crawl-delay: {delay}
Sitemap: {base}/sitemap.xml
"""

ROUTES: dict[str, str] = {
    "/": "normal HTML page with links to /page/1../page/3",
    "/page/{n}": "normal HTML page number n",
    "/robots.txt": "Disallow: /private/, Crawl-delay: 1, a Sitemap line",
    "/private/{tail}": "normal page that robots.txt forbids",
    "/sitemap.xml": "a small sitemap",
    "/whoami": "text/plain: the Host and User-Agent the server saw, and whether an Authorization header came",
    "/redirect/loop": "302 -> /redirect/loop-b -> /redirect/loop (forever)",
    "/redirect/loop-b": "302 -> /redirect/loop",
    "/redirect/self": "302 to itself",
    "/redirect/chain/{n}": "302 -> /redirect/chain/{n-1} ... /redirect/chain/0 is a normal page",
    "/redirect/ftp": "302 to ftp://127.0.0.1/file.txt",
    "/redirect/file": "302 to file:///etc/passwd",
    "/redirect/javascript": "302 to javascript:alert(1)",
    "/redirect/data": "302 to data:text/html,<h1>hi</h1>",
    "/redirect/to?url=U": "302 to any URL U (an open redirect)",
    "/big?bytes=N": "N bytes of HTML with a Content-Length, streamed in 64 KiB chunks",
    "/big-chunked?bytes=N": "N bytes of HTML, chunked (no Content-Length)",
    "/gzip-bomb?mb=M": "Content-Encoding: gzip body of ~M/1000 MB that inflates to M MiB of zeros (M=200)",
    "/lie/pdf-as-html": "a real PDF served as text/html",
    "/lie/html-as-png": "an HTML page served as image/png",
    "/charset/latin1-as-utf8": "latin-1 bytes declared charset=utf-8",
    "/charset/utf8-as-latin1": "utf-8 bytes declared charset=iso-8859-1",
    "/binary-as-html": "64 KiB of random bytes served as text/html",
    "/truncated": "Content-Length: 100000, 1000 bytes sent, then the connection is closed",
    "/reset": "Content-Length: 100000, 1000 bytes sent, then the connection is reset (RST)",
    "/empty": "200 text/html with an empty body",
    "/trickle?seconds=S": "text/html, one byte per second for S seconds (600)",
    "/hang": "reads the request and never answers",
    "/rate-limited?n=N&key=K": "429 Retry-After: 1 for the first N requests (3) per Host and key, then 200",
    "/status/{code}": "that status with a small HTML body; /status/503 is the circuit-breaker target",
    "/{anything else}": "normal page (any path, any credentials: tests URLs with user:password@)",
}
"""Every route and what it does; tests and docs read this."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="description" content="A page of the hostile test server."></head>
<body><h1>{title}</h1>
<p>This is an ordinary page served by the hostile test server at path {path}. It has enough words in it to be
extracted as the main text of the page by any reasonable extractor, and a few links to its neighbours.</p>
<ul><li><a href="/page/1">Page one</a></li><li><a href="/page/2">Page two</a></li>
<li><a href="/page/3">Page three</a></li></ul>
</body></html>
"""

LATIN1_TEXT = "Café crème, déjà vu, naïve façade: à bientôt, señor Müller."


@dataclass
class HostileState:
    """Per-app state: the stop flag and the ``/rate-limited`` counters."""

    stopping: bool = False
    rate_counts: dict[tuple[str, str], int] = field(default_factory=dict)


STATE_KEY = web.AppKey("hostile_state", HostileState)

_bomb_lock = threading.Lock()
_bombs: dict[int, bytes] = {}


def gzip_bomb(mb: int = BOMB_DEFAULT_MB) -> bytes:
    """A gzip member that inflates to ``mb`` MiB of zeros; built once per size (about a second for 200 MiB)."""
    with _bomb_lock:
        bomb = _bombs.get(mb)
        if bomb is None:
            compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip header and trailer
            chunk = bytes(1024 * 1024)
            parts = [compressor.compress(chunk) for _ in range(mb)]
            parts.append(compressor.flush())
            bomb = _bombs[mb] = b"".join(parts)
        return bomb


def minimal_pdf(text: str = "Hostile PDF") -> bytes:
    """A small valid one-page PDF showing ``text`` (the demo site's PDF maker)."""
    return make_pdf((text,), title=text)


def _page(title: str, path: str) -> bytes:
    return PAGE.format(title=title, path=path).encode()


def _int_query(request: web.Request, name: str, default: int, *, low: int = 0, high: int = 2**62) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"{name} must be between {low} and {high}")
    return value


async def _wait_stopping(request: web.Request, seconds: float) -> bool:
    """Sleep up to ``seconds`` in :data:`TICK_S` steps; ``True`` if the server began stopping meanwhile."""
    state = request.app[STATE_KEY]
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not state.stopping:
        left = end - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(TICK_S, left))
    return True


# --- normal pages ---------------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    return web.Response(body=_page("Hostile server home", request.path), content_type="text/html", charset="utf-8")


async def page(request: web.Request) -> web.Response:
    title = f"Page {request.match_info['n']}"
    return web.Response(body=_page(title, request.path), content_type="text/html", charset="utf-8")


async def any_page(request: web.Request) -> web.Response:
    response = web.Response(body=_page("Any page", request.path), content_type="text/html", charset="utf-8")
    response.headers["X-Auth-Seen"] = "yes" if "Authorization" in request.headers else "no"
    return response


async def robots(request: web.Request) -> web.Response:
    base = f"{request.scheme}://{request.host}"
    return web.Response(text=ROBOTS_TXT.format(delay=ROBOTS_CRAWL_DELAY, base=base), content_type="text/plain")


async def sitemap(request: web.Request) -> web.Response:
    base = f"{request.scheme}://{request.host}"
    urls = "".join(f"<url><loc>{base}/page/{n}</loc></url>" for n in (1, 2, 3))
    body = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    return web.Response(text=body, content_type="application/xml")


async def whoami(request: web.Request) -> web.Response:
    lines = [
        f"host: {request.host}",
        f"user-agent: {request.headers.get('User-Agent', '')}",
        f"authorization: {'present' if 'Authorization' in request.headers else 'absent'}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


# --- redirects ------------------------------------------------------------------------------------------------


def _redirect(location: str) -> web.Response:
    # Built by hand: web.HTTPFound would validate the location, and hostile locations are the point.
    return web.Response(status=302, headers={"Location": location}, text="redirecting\n")


async def redirect_loop(request: web.Request) -> web.Response:
    return _redirect("/redirect/loop-b")


async def redirect_loop_b(request: web.Request) -> web.Response:
    return _redirect("/redirect/loop")


async def redirect_self(request: web.Request) -> web.Response:
    return _redirect("/redirect/self")


async def redirect_chain(request: web.Request) -> web.Response:
    try:
        n = int(request.match_info["n"])
    except ValueError:
        raise web.HTTPBadRequest(text="n must be an integer") from None
    if n <= 0:
        return web.Response(body=_page("End of the chain", request.path), content_type="text/html", charset="utf-8")
    return _redirect(f"/redirect/chain/{n - 1}")


SCHEME_TARGETS = {
    "ftp": "ftp://127.0.0.1/file.txt",
    "file": "file:///etc/passwd",
    "javascript": "javascript:alert(1)",
    "data": "data:text/html,<h1>hi</h1>",
}


async def redirect_scheme(request: web.Request) -> web.Response:
    target = SCHEME_TARGETS.get(request.match_info["scheme"])
    if target is None:
        raise web.HTTPNotFound()
    return _redirect(target)


async def redirect_to(request: web.Request) -> web.Response:
    url = request.query.get("url")
    if not url:
        raise web.HTTPBadRequest(text="url is required")
    return _redirect(url)


# --- size -----------------------------------------------------------------------------------------------------

_BIG_CHUNK = (b"<p>" + b"x" * 1017 + b"</p>\n") * 64  # 64 KiB of HTML paragraphs


async def _stream_big(request: web.Request, size: int, *, chunked: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    if chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = size
    await response.prepare(request)
    left = size
    while left > 0 and not request.app[STATE_KEY].stopping:
        part = _BIG_CHUNK[: min(left, len(_BIG_CHUNK))]
        await response.write(part)
        left -= len(part)
    await response.write_eof()
    return response


async def big(request: web.Request) -> web.StreamResponse:
    size = _int_query(request, "bytes", 50 * 1024 * 1024, high=MAX_BIG_BYTES)
    return await _stream_big(request, size, chunked=False)


async def big_chunked(request: web.Request) -> web.StreamResponse:
    size = _int_query(request, "bytes", 50 * 1024 * 1024, high=MAX_BIG_BYTES)
    return await _stream_big(request, size, chunked=True)


async def bomb(request: web.Request) -> web.Response:
    mb = _int_query(request, "mb", BOMB_DEFAULT_MB, low=1, high=4096)
    body = await asyncio.to_thread(gzip_bomb, mb)
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/html; charset=utf-8"}
    return web.Response(body=body, headers=headers)


# --- lies -----------------------------------------------------------------------------------------------------


async def pdf_as_html(request: web.Request) -> web.Response:
    return web.Response(body=minimal_pdf(), headers={"Content-Type": "text/html; charset=utf-8"})


async def html_as_png(request: web.Request) -> web.Response:
    return web.Response(body=_page("HTML pretending to be PNG", request.path), headers={"Content-Type": "image/png"})


def _charset_page(text: str) -> str:
    return f"<!doctype html><html><head><title>{text[:20]}</title></head><body><p>{text}</p></body></html>"


async def latin1_as_utf8(request: web.Request) -> web.Response:
    body = _charset_page(LATIN1_TEXT).encode("latin-1")
    return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8"})


async def utf8_as_latin1(request: web.Request) -> web.Response:
    body = _charset_page(LATIN1_TEXT).encode("utf-8")
    return web.Response(body=body, headers={"Content-Type": "text/html; charset=iso-8859-1"})


async def binary_as_html(request: web.Request) -> web.Response:
    body = random.Random(1234).randbytes(64 * 1024)
    return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8"})


async def empty(request: web.Request) -> web.Response:
    return web.Response(body=b"", headers={"Content-Type": "text/html; charset=utf-8"})


# --- broken connections ---------------------------------------------------------------------------------------

BROKEN_LENGTH = 100_000
BROKEN_SENT = 1_000


async def _partial(request: web.Request, *, reset: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    response.content_length = BROKEN_LENGTH
    await response.prepare(request)
    await response.write(b"<html><body>" + b"y" * (BROKEN_SENT - 12))
    await asyncio.sleep(0.05)  # let the partial body leave before the connection goes
    transport = request.transport
    if transport is not None:
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger on with a zero timeout: close() sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
    # The handler must not return normally (aiohttp would try to finish the body): stop it like a dropped client.
    raise asyncio.CancelledError


async def truncated(request: web.Request) -> web.StreamResponse:
    return await _partial(request, reset=False)


async def reset(request: web.Request) -> web.StreamResponse:
    return await _partial(request, reset=True)


# --- slow -----------------------------------------------------------------------------------------------------


async def trickle(request: web.Request) -> web.StreamResponse:
    seconds = _int_query(request, "seconds", 600, high=24 * 3600)
    response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(seconds):
        await response.write(b" ")
        if await _wait_stopping(request, 1.0):
            break
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


async def hang(request: web.Request) -> web.Response:
    await _wait_stopping(request, 24 * 3600)
    raise asyncio.CancelledError


# --- statuses -------------------------------------------------------------------------------------------------


async def rate_limited(request: web.Request) -> web.Response:
    limit = _int_query(request, "n", 3)
    key = (request.host.rsplit(":", 1)[0], request.query.get("key", ""))
    counts = request.app[STATE_KEY].rate_counts
    counts[key] = seen = counts.get(key, 0) + 1
    if seen <= limit:
        return web.Response(status=429, headers={"Retry-After": "1"}, text=f"too many requests ({seen}/{limit})\n")
    return web.Response(body=_page("Rate limit passed", request.path), content_type="text/html", charset="utf-8")


async def status(request: web.Request) -> web.Response:
    try:
        code = int(request.match_info["code"])
    except ValueError:
        raise web.HTTPBadRequest(text="code must be an integer") from None
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text="code must be between 200 and 599")
    body = b"" if code in {204, 304} else f"<html><body><h1>Status {code}</h1></body></html>".encode()
    return web.Response(status=code, body=body, content_type="text/html" if body else None)


# --- app ------------------------------------------------------------------------------------------------------


def make_app() -> web.Application:
    """The hostile app; build it inside the loop that serves it (``ServerThread(make_app)`` does)."""
    app = web.Application()
    state = HostileState()
    app[STATE_KEY] = state

    async def on_shutdown(_app: web.Application) -> None:
        state.stopping = True

    app.on_shutdown.append(on_shutdown)
    add = app.router.add_get
    add("/", index)
    add("/page/{n}", page)
    add("/robots.txt", robots)
    add("/sitemap.xml", sitemap)
    add("/whoami", whoami)
    add("/redirect/loop", redirect_loop)
    add("/redirect/loop-b", redirect_loop_b)
    add("/redirect/self", redirect_self)
    add("/redirect/chain/{n}", redirect_chain)
    add("/redirect/to", redirect_to)
    add("/redirect/{scheme:ftp|file|javascript|data}", redirect_scheme)
    add("/big", big)
    add("/big-chunked", big_chunked)
    add("/gzip-bomb", bomb)
    add("/lie/pdf-as-html", pdf_as_html)
    add("/lie/html-as-png", html_as_png)
    add("/charset/latin1-as-utf8", latin1_as_utf8)
    add("/charset/utf8-as-latin1", utf8_as_latin1)
    add("/binary-as-html", binary_as_html)
    add("/truncated", truncated)
    add("/reset", reset)
    add("/empty", empty)
    add("/trickle", trickle)
    add("/hang", hang)
    add("/rate-limited", rate_limited)
    add("/status/{code}", status)
    add("/{tail:.*}", any_page)  # also /private/..., any path, with or without credentials
    return app


DOMAIN_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
"""Loopback addresses that act as three distinct domains (Linux routes all of 127.0.0.0/8 to loopback)."""


@contextlib.contextmanager
def hostile_sites(hosts: tuple[str, ...] = DOMAIN_HOSTS) -> Iterator[dict[str, str]]:
    """Start one hostile server per host, in threads; yield ``{host: base URL}`` plus ``"localhost"``.

    The ``localhost`` entry points at the ``127.0.0.1`` server (when it is among ``hosts``) by name.
    """
    from crawler.localsite import ServerThread

    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for host in hosts:
            server = stack.enter_context(ServerThread(make_app, host=host))
            urls[host] = server.url
        if "127.0.0.1" in urls:
            urls["localhost"] = urls["127.0.0.1"].replace("127.0.0.1", "localhost")
        yield urls


async def _serve(host: str, port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    actual = server.sockets[0].getsockname()[1]
    print(f"listening on http://{host}:{actual}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the hostile test server until SIGTERM or SIGINT.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one; the URL is printed)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
