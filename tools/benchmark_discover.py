"""Benchmark of stage 1 (discovery): both engines over one site, against the site's politeness bound.

The site is served in this process (aiohttp, in a thread), with a latency per request; each engine runs as a real
process through the command line (``python -m crawler --stage 1``). By default the site is generated: ``--pages``
pages, each linking to the next ones and a few others, half of them also listed in a gzipped sitemap named by
robots.txt. ``--site-dir`` serves a real folder instead (the PostgreSQL manual of ``../shared/corpus``, say).

For each engine it reports the URLs listed, the requests the site saw, the peak in flight at the server, the wall
time and the crawler's CPU time (its processes, start-up included), and the politeness bound: the shortest time
any crawler keeping ``per_domain_limit`` requests in flight on the site (and its ``Crawl-delay``, with
``--crawl-delay``) can take for those requests, ``max(ceil(n / cap) * latency, (n - 1) * crawl_delay + latency)``.

Usage::

    python tools/benchmark_discover.py --pages 2000 --latency-ms 20
    python tools/benchmark_discover.py --site-dir ../shared/corpus/sites/postgresql --latency-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import mimetypes
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crawler.localsite import ServerThread  # noqa: E402

ENGINES = {"async": "--async-enrichment", "scrapy": "--no-async-enrichment"}


class Site:
    """A site with a latency, counting requests and the peak in flight."""

    def __init__(self, *, pages: int, site_dir: Path | None, latency_s: float, crawl_delay_s: float) -> None:
        self.pages, self.site_dir, self.latency_s, self.crawl_delay_s = pages, site_dir, latency_s, crawl_delay_s
        self.requests = self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.requests = self.in_flight = self.peak = 0

    def _page(self, n: int) -> bytes:
        links = {n + 1, n + 2, 2 * n + 1, (n * 7919) % self.pages}
        anchors = "".join(f'<a href="/p/{m}.html">page {m}</a> ' for m in sorted(links) if 0 <= m < self.pages)
        body = f"<html><head><title>Page {n}</title></head><body><p>Text of page {n}.</p>{anchors}</body></html>"
        return body.encode()

    def _answer(self, path: str, base: str) -> web.Response:
        if path == "/robots.txt":
            delay = f"Crawl-delay: {self.crawl_delay_s:g}\n" if self.crawl_delay_s else ""
            return web.Response(text=f"User-agent: *\n{delay}Sitemap: {base}/sitemap.xml.gz\n")
        if self.site_dir is not None:
            target = (self.site_dir / (path.lstrip("/") or "index.html")).resolve()
            if target.is_relative_to(self.site_dir) and target.is_file():
                kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                return web.Response(body=target.read_bytes(), content_type=kind)
            return web.Response(status=404, text="not found")
        if path == "/sitemap.xml.gz":
            entries = "".join(f"<url><loc>{base}/p/{n}.html</loc></url>" for n in range(0, self.pages, 2))
            xml = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
            return web.Response(body=gzip.compress(xml.encode()), content_type="application/gzip")
        if path.startswith("/p/") and path.endswith(".html"):
            n = int(path[3:-5])
            if 0 <= n < self.pages:
                return web.Response(body=self._page(n), content_type="text/html")
        return web.Response(status=404, text="not found")

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            with self.lock:
                self.requests += request.path != "/robots.txt"
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            try:
                await asyncio.sleep(self.latency_s)
                return self._answer(request.path, f"http://{request.host}")
            finally:
                with self.lock:
                    self.in_flight -= 1

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        return app


def run_engine(engine: str, seed: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    config = tmp / f"{engine}.yml"
    config.write_text(
        "stages:\n  discover:\n"
        f"    max_depth: {args.max_depth}\n    max_pages: 10000000\n    concurrency: {args.concurrency}\n"
        f"  enrichment:\n    per_domain_limit: {args.per_site}\n",
        encoding="utf-8",
    )
    data = tmp / engine
    command = [sys.executable, "-m", "crawler", "--stage", "1", ENGINES[engine], "--seeds", seed]
    command += ["--config", str(config), "--data-dir", str(data)]
    started, cpu = time.perf_counter(), _children_cpu_s()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - started, _children_cpu_s() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{engine}: exit {done.returncode}\n{done.stderr[-2000:]}")
    report = json.loads((data / "stage01/discover_report.json").read_text(encoding="utf-8"))
    return {"engine": engine, "wall_s": wall, "cpu_s": cpu, "urls": report["urls"], "report": report}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000, help="pages of the generated site")
    parser.add_argument("--site-dir", type=Path, help="serve this folder instead (its index.html is the seed)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--crawl-delay", type=float, default=0.0, help="robots.txt Crawl-delay of the site")
    parser.add_argument("--per-site", type=int, default=8, help="per_domain_limit")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-depth", type=int, default=50)
    parser.add_argument("--engines", default="async,scrapy")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    site_dir = args.site_dir.resolve() if args.site_dir else None
    site = Site(pages=args.pages, site_dir=site_dir, latency_s=args.latency_ms / 1000, crawl_delay_s=args.crawl_delay)
    rows = []
    with ServerThread(site.app) as server, tempfile.TemporaryDirectory(prefix="bench-discover-") as tmp_name:
        seed = server.url + ("/index.html" if site_dir else "/p/0.html")
        for engine in args.engines.split(","):
            site.reset()
            row = run_engine(engine, seed, args, Path(tmp_name))
            n, latency = site.requests, site.latency_s
            bound = max(math.ceil(n / args.per_site) * latency, (n - 1) * args.crawl_delay + latency if n else 0.0)
            row.update(requests=n, peak_in_flight=site.peak, bound_s=bound)
            rows.append(row)
    print("| engine | URLs | requests | peak in flight (cap) | wall s | CPU s | politeness bound s | bound / wall |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['urls']} | {r['requests']} | {r['peak_in_flight']} ({args.per_site}) "
            f"| {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['bound_s']:.2f} | {r['bound_s'] / r['wall_s']:.2f} |"
        )
    if len(rows) == 2:
        print(f"\n{rows[1]['engine']} wall / {rows[0]['engine']} wall: {rows[1]['wall_s'] / rows[0]['wall_s']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
