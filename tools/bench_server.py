"""The benchmark's HTTP server: real pages from a folder or generated ones, with latency and errors on demand.

Run by ``tools/benchmark_enrichment.py`` as a separate process on loopback, so serving pages never shares a GIL
with the engine being measured. It prints one line, ``PORT <n>``, once it listens, then serves until killed.

Pages:
    ``/c/<file>?u=<i>``  the i-th URL over a corpus folder (``--corpus``): files are cycled when there are more URLs
                         than files, and the query string keeps every URL distinct.
    ``/g/<i>.html``      a generated English page of about ``--page-bytes`` bytes, the same for the same ``i``.

Control endpoints (never delayed, never failed): ``/__bench/urls?n=N`` lists the paths of the first N URLs and
makes their generated pages, ``/__bench/reset`` clears the counters, ``/__bench/stats`` returns them with the
in-flight timeline (concurrency as the server sees it: the most requests in flight in each ``SAMPLE_S``
interval). ``/robots.txt`` allows everything.

Errors are deterministic per URL (a CRC of path and query), so every configuration meets the same ones: a
fraction ``--error-rate`` of the URLs always answers 503 or 429, split evenly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import mimetypes
import random
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["corpus_files", "error_status", "generate_page", "make_app", "url_paths"]

SAMPLE_S = 0.05
"""Interval of the in-flight timeline; fine enough to see AIMD steps, small enough to stay cheap."""

CORPUS_SUFFIXES = (".html", ".htm", ".pdf")

_FIRST = ("Ingrid", "Marta", "Tomasz", "Aiko", "Samuel", "Leila", "Carlos", "Hannah", "Oskar", "Priya", "Jonas")
_LAST = ("Solberg", "Kowalski", "Tanaka", "Okafor", "Haddad", "Ferreira", "Lindqvist", "Novak", "Moreau", "Rao")
_PLACES = ("Bergen", "Lisbon", "Krakow", "Osaka", "Lagos", "Montreal", "Valparaiso", "Tromso", "Edinburgh", "Porto")
_ORGS = (
    "the Harbour Town Historical Society",
    "the University of Bergen",
    "the Northern Shipping Company",
    "the National Library",
    "the Coastal Research Institute",
    "the City Council",
    "the Maritime Museum",
)
_MONTHS = ("January", "March", "April", "May", "June", "August", "September", "November")
_TOPICS = (
    "lighthouse",
    "harbour",
    "market",
    "festival",
    "archive",
    "railway",
    "fishery",
    "bridge",
    "survey",
    "library",
    "museum",
    "shipyard",
)
_TEMPLATES = (
    "{person} visited {place} in {month} {year} to study the {topic} and its history.",
    "According to {org}, the {topic} in {place} was restored in {year} at a cost of {number} euros.",
    "The {topic} report, written by {person}, counts {number} visitors during {month}.",
    "In {year} {org} opened a new {topic} near the old {topic2} of {place}.",
    "{person} and {person2} argue that the {topic} shaped the economy of {place} for a century.",
    "Every {month} the {topic} of {place} draws traders from {place2} and beyond.",
    "The committee, chaired by {person}, asked {org} to digitise the {topic} records before {year}.",
    "Old maps show that the {topic} stood beside the {topic2} long before {year}.",
)


def _sentence(rng: random.Random) -> str:
    def person() -> str:
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"

    return rng.choice(_TEMPLATES).format(
        person=person(),
        person2=person(),
        place=rng.choice(_PLACES),
        place2=rng.choice(_PLACES),
        org=rng.choice(_ORGS),
        month=rng.choice(_MONTHS),
        year=rng.randint(1850, 2024),
        number=f"{rng.randint(2, 90) * 1000:,}",
        topic=rng.choice(_TOPICS),
        topic2=rng.choice(_TOPICS),
    )


def generate_page(index: int, size: int) -> bytes:
    """A plausible English article of about ``size`` bytes (at least one paragraph), the same for the same index."""
    rng = random.Random(index)
    title = f"{rng.choice(_PLACES)} {rng.choice(_TOPICS)} notes, part {index}"
    head = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="description" content="Notes on the {rng.choice(_TOPICS)} of {rng.choice(_PLACES)}.">'
        f'<meta name="author" content="{rng.choice(_FIRST)} {rng.choice(_LAST)}"></head>\n'
        f'<body><nav><a href="/">Home</a> <a href="/g/{index + 1}.html">Next</a></nav>\n'
        f"<article><h1>{title}</h1>\n"
    )
    tail = "</article><footer>Generated for the webenrich benchmark.</footer></body></html>\n"
    parts = [head]
    length = len(head) + len(tail)
    while True:
        paragraph = "<p>" + " ".join(_sentence(rng) for _ in range(rng.randint(3, 6))) + "</p>\n"
        parts.append(paragraph)
        length += len(paragraph)
        if length >= size:
            break
    parts.append(tail)
    return "".join(parts).encode("utf-8")


def corpus_files(root: Path) -> list[Path]:
    """The documents under ``root`` (HTML and PDF, recursively), in a stable order."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES)
    if not files:
        raise SystemExit(f"no HTML or PDF files under {root}")
    return files


def url_paths(n: int, *, files: list[str] | None) -> list[str]:
    """The paths (with query) of the first ``n`` URLs: cycling over corpus ``files``, or generated pages."""
    if files is None:
        return [f"/g/{i}.html" for i in range(n)]
    return [f"/c/{files[i % len(files)]}?u={i}" for i in range(n)]


def error_status(path_qs: str, rate: float) -> int | None:
    """The error status a URL always gets (503 or 429), or None; deterministic so every run sees the same."""
    if rate <= 0:
        return None
    h = zlib.crc32(path_qs.encode("utf-8"))
    if (h % 100_000) >= rate * 100_000:
        return None
    return 503 if (h // 100_000) % 2 == 0 else 429


class _Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.t0 = time.monotonic()
        self.inflight = 0
        self.max_inflight = 0
        self.window_max = 0
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.bytes_sent = 0
        self.timeline: list[tuple[float, int]] = []
        self.first_request_s: float | None = None
        self.last_response_s: float | None = None

    def to_dict(self) -> dict[str, object]:
        # keep only the part of the timeline with traffic, plus one sample either side
        timeline = self.timeline
        if self.first_request_s is not None and self.last_response_s is not None:
            lo, hi = self.first_request_s - SAMPLE_S, self.last_response_s + SAMPLE_S
            timeline = [(t, n) for t, n in timeline if lo <= t <= hi]
        return {
            "requests": self.requests,
            "by_status": self.by_status,
            "bytes_sent": self.bytes_sent,
            "max_inflight": self.max_inflight,
            "first_request_s": self.first_request_s,
            "last_response_s": self.last_response_s,
            "timeline": [[round(t, 3), n] for t, n in timeline],
        }


def make_app(
    *,
    corpus: Path | None,
    page_bytes: int,
    latency_ms: float,
    error_rate: float,
    retry_after_s: float | None,
) -> web.Application:
    """The benchmark app. Corpus files are read into memory once, so the disk never enters the measurement."""
    files: dict[str, tuple[bytes, str]] = {}
    names: list[str] | None = None
    if corpus is not None:
        root = corpus.resolve()
        for path in corpus_files(root):
            rel = path.relative_to(root).as_posix()
            files[rel] = (path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        names = list(files)
    generated: dict[int, bytes] = {}
    counters = _Counters()
    delay = latency_ms / 1000

    async def sampler(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                # the highest in-flight count since the last sample: short requests would slip between samples
                counters.timeline.append((time.monotonic() - counters.t0, counters.window_max))
                counters.window_max = counters.inflight
                await asyncio.sleep(SAMPLE_S)

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    async def page(request: web.Request) -> web.StreamResponse:
        now = time.monotonic() - counters.t0
        if counters.first_request_s is None:
            counters.first_request_s = now
        counters.requests += 1
        counters.inflight += 1
        counters.max_inflight = max(counters.max_inflight, counters.inflight)
        counters.window_max = max(counters.window_max, counters.inflight)
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            path = request.path
            status = error_status(request.path_qs, error_rate)
            if status is not None:
                headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None and status == 429 else {}
                response = web.Response(status=status, text=f"simulated {status}\n", headers=headers)
            elif path.startswith("/g/") and path.endswith(".html") and path[3:-5].isdigit():
                index = int(path[3:-5])
                body = generated.get(index) or generate_page(index, page_bytes)
                response = web.Response(body=body, content_type="text/html")
            elif path.startswith("/c/") and path[3:] in files:
                body, content_type = files[path[3:]]
                response = web.Response(body=body, content_type=content_type)
            else:
                response = web.Response(status=404, text="not found\n")
            key = str(response.status)
            counters.by_status[key] = counters.by_status.get(key, 0) + 1
            counters.bytes_sent += len(response.body) if isinstance(response.body, bytes) else 0
            return response
        finally:
            counters.inflight -= 1
            counters.last_response_s = time.monotonic() - counters.t0

    async def robots(request: web.Request) -> web.StreamResponse:
        return web.Response(text="User-agent: *\nAllow: /\n")

    async def urls(request: web.Request) -> web.StreamResponse:
        n = int(request.query.get("n", "10"))
        if names is None:
            # made now, before any run: about 1 ms a page would otherwise cap the server near 800 pages/s
            for index in range(n):
                if index not in generated:
                    generated[index] = generate_page(index, page_bytes)
        return web.json_response(url_paths(n, files=names))

    async def reset(request: web.Request) -> web.StreamResponse:
        counters.reset()
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.StreamResponse:
        return web.json_response(counters.to_dict())

    app = web.Application()
    app.cleanup_ctx.append(sampler)
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/__bench/urls", urls)
    app.router.add_get("/__bench/reset", reset)
    app.router.add_get("/__bench/stats", stats)
    app.router.add_route("GET", "/{tail:.*}", page)
    return app


async def _serve(args: argparse.Namespace) -> None:
    app = make_app(
        corpus=args.corpus,
        page_bytes=args.page_bytes,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        retry_after_s=args.retry_after_s,
    )
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=4096, reuse_address=True)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--corpus", type=Path, help="folder of real pages; default: generated pages")
    parser.add_argument("--page-bytes", type=int, default=16_384, help="size of generated pages")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--retry-after-s", type=float, default=None, help="Retry-After sent with 429s")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
