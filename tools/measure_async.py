"""Measure the asyncio engine: throughput (URLs/s) and peak memory for N URLs against a local server.

The server runs in a subprocess (so it does not share the crawler's interpreter lock) and generates small article
pages on the fly. Records go to a JSONL file in a temporary folder, as in a real run. Prints one JSON object.

Examples::

    python tools/measure_async.py --urls 1000 --nlp off
    python tools/measure_async.py --urls 10000 --nlp off
    python tools/measure_async.py --urls 1000 --nlp on
    python tools/measure_async.py --urls 3000 --nlp off --warc     # with WARC output (files in the temp folder)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from aiohttp import web

from crawler.async_engine import AsyncEnrichmentProcessor
from enrich.config import EnrichConfig
from enrich.sinks import JsonlSink
from enrich.urls import read_urls

if TYPE_CHECKING:
    from collections.abc import Iterator

    from enrich.stats import RunStats

SENTENCES = (
    "Harbour Town keeps its lighthouse open every summer for visitors from Norway and abroad.",
    "The keepers wrote logbooks for a century, and the Historical Society now reads them at the market.",
    "Ingrid Solberg of the University of Bergen surveyed the harbour in May 2024.",
    "Fishing boats leave before dawn and return with cod, herring and mackerel from the North Sea.",
    "The Midsummer Festival drew twelve thousand visitors, the most since the festival began in 1952.",
)


def page(n: int) -> bytes:
    """A small article (about 2 KB, 250 words), different for each ``n``."""
    paragraphs = "".join(
        f"<p>{SENTENCES[(n + i) % 5]} {SENTENCES[(n + i + 2) % 5]} Page {n}, part {i}.</p>" for i in range(6)
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Article {n}</title>"
        f"<meta name='description' content='Article number {n} about Harbour Town'></head>"
        f"<body><nav><a href='/'>Home</a></nav><article><h1>Article {n}</h1>{paragraphs}</article></body></html>"
    ).encode()


def serve() -> None:
    """Serve ``/page/{n}`` on a free loopback port; print the port, then run until killed."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=page(int(request.match_info["n"])), content_type="text/html", charset="utf-8")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/page/{n}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def measure(args: argparse.Namespace, base_url: str, output: Path) -> dict[str, Any]:
    config = EnrichConfig().replace(
        fetch={"max_concurrency": args.max_concurrency},
        nlp={"enabled": args.nlp == "on"},
        output={"batch_size": 100},
        **({"warc": {"dir": str(output.parent / "warc")}} if args.warc else {}),
    )
    peak_sampled = [rss_mb()]

    def sample(_: RunStats) -> None:
        peak_sampled[0] = max(peak_sampled[0], rss_mb())

    processor = AsyncEnrichmentProcessor.from_config(
        config, sinks=[JsonlSink(path=output)], progress_interval_s=args.progress_s, progress_callback=sample
    )

    def urls() -> Iterator[tuple[int, str]]:
        for n in range(args.urls):
            yield n + 1, f"{base_url}/page/{n}"

    rss_before = rss_mb()
    started = time.perf_counter()
    stats = await processor.run(read_urls(urls()))
    elapsed = time.perf_counter() - started
    lines = sum(1 for _ in output.open(encoding="utf-8"))
    summary = stats.to_dict()
    history = summary.pop("concurrency_history", None)  # gone from RunStats since the frontier
    return {
        "urls": args.urls,
        "nlp": args.nlp == "on",
        "warc": args.warc,
        "records_written": lines,
        "success": stats.success,
        "failed": stats.failed,
        "elapsed_s": round(elapsed, 2),
        "throughput_urls_per_s": round(stats.processed / elapsed, 1),
        "avg_fetch_ms": summary["avg_fetch_ms"],
        "avg_process_ms": summary["avg_process_ms"],
        "rss_before_run_mb": round(rss_before, 1),
        "peak_rss_sampled_mb": round(max(peak_sampled[0], rss_mb()), 1),
        "peak_rss_ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "final_concurrency": summary.get("concurrency"),
        "concurrency_history": history,
        "aimd": summary.get("aimd"),
        "peak_in_flight": summary.get("peak_in_flight"),
        "errors_by_type": summary["errors_by_type"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=1000, help="number of URLs to crawl")
    parser.add_argument("--nlp", choices=("on", "off"), default="off")
    parser.add_argument("--max-concurrency", type=int, default=50)
    parser.add_argument("--warc", action="store_true", help="also write WARC files (measures their cost)")
    parser.add_argument("--progress-s", type=float, default=5.0, help="progress line (and memory sample) interval")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(measure(args, f"http://127.0.0.1:{port}", Path(tmp) / "out.jsonl"))
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
