"""A simulated web of many sites, each with its own limits, on loopback: to measure crawlers as the real web does.

Each site listens on its own address ``127.0.0.<10+i>``, all on one port, so a crawler sees distinct hosts (and
keeps per-domain state for each). A site is a frozen :class:`SiteSpec`: pages, latency, robots.txt Crawl-delay and
a kind: ``normal``; ``throttled`` (429 + ``Retry-After`` once ``max_rps`` requests were admitted in the last
second; 429s are not admitted); ``always503`` (every page 503, robots.txt 404); ``refused`` (nothing listens on its
address); ``unresolvable`` (a ``.invalid`` host name). Pages answer 404 on ``not_found_rate`` of the URLs (3%),
500 on ``server_error_rate`` and 302 to a page of another site on ``redirect_rate`` (2%): the first redirect goes
into a Crawl-delay site, the second into its ``/private/``, which its robots.txt disallows. Deterministic per specs.

The server logs every request as a :class:`LogEntry` (site, path, status, start and end ``time.monotonic()``,
robots.txt flagged). In-process (pytest)::

    with MultiSiteWeb(specs) as web:
        urls = web.urls("shuffled", seed=1)    # or "grouped": site by site
        ...                                    # crawl them
        report = web.politeness_report(per_site_cap=8)   # report.breaches == [] means polite

As a process: ``python tools/multisite_web.py serve --spec spec.json [--log log.jsonl]`` prints one JSON line
(port, control URL, base URL per site) once it listens; ``GET /__log`` and ``GET /__reset`` on the control URL
(``127.0.0.1``, same port) return and clear the log. ``specs --sites 12 --pages 75`` prints default specs.

**Lower bound** (:func:`lower_bound_terms`): the shortest run any crawler obeying the sites' limits can make, with
``cap`` requests in flight per site and ``C`` overall. ``n`` is what a polite crawler must request on a site: its
URLs plus the redirect targets landing on it (not the disallowed ``/private/`` ones), ``L`` its latency::

    site term  = max(ceil(n / cap) * L,                        every site
                     (n - 1) * crawl_delay + L,                Crawl-delay sites
                     (ceil(n / max_rps) - 1) * 1 s + L)        throttled sites (the 1 s admission window)
    global     = sum over sites of n * L / C
    bound      = max(every site term, global)

Dead URLs (refused, unresolvable) cost 0. The always-503 site counts one wave of first attempts (``min(n, cap)``
requests, one ``L``): a circuit breaker may end it there, so retries and backoff are not counted. robots.txt
round trips and random 429s (``random_429_rate``, luck) are not counted either: the bound stays a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import ipaddress
import itertools
import json
import math
import random
import signal
import socket
import sys
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Self

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import generate_page

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from types import TracebackType

SiteKind = Literal["normal", "throttled", "always503", "refused", "unresolvable"]
SERVING: frozenset[str] = frozenset({"normal", "throttled", "always503"})
CONTROL_HOST = "127.0.0.1"
PORT_ATTEMPTS = 20
THROTTLE_WINDOW_S = 1.0


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """One site. ``host`` is a loopback address (a ``.invalid`` name for ``unresolvable``): traffic stays local."""

    name: str
    host: str
    pages: int
    latency_ms: float = 20.0
    kind: SiteKind = "normal"
    crawl_delay_s: float = 0.0
    max_rps: float = 4.0  # throttled sites
    retry_after_s: float = 1.0  # sent with every 429
    not_found_rate: float = 0.03
    server_error_rate: float = 0.0
    redirect_rate: float = 0.02
    random_429_rate: float = 0.0  # share of page requests answered 429 at random

    def __post_init__(self) -> None:
        if self.kind == "unresolvable" and not self.host.endswith(".invalid"):
            raise ValueError(f"{self.name}: an unresolvable host must end with .invalid")
        if self.kind != "unresolvable" and not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"{self.name}: {self.host} is not a loopback address")
        if min(self.pages, self.latency_ms, self.crawl_delay_s) < 0 or self.max_rps <= 0:
            raise ValueError(f"{self.name}: pages, latency and crawl delay must be >= 0, max_rps > 0")

    def base_url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def robots_txt(self) -> str | None:
        """None: robots.txt answers 404 (the always-503 site)."""
        if self.kind == "always503":
            return None
        if self.crawl_delay_s > 0:
            return f"User-agent: *\nCrawl-delay: {self.crawl_delay_s:g}\nDisallow: /private/\n"
        return "User-agent: *\nAllow: /\n"


@dataclass(frozen=True, slots=True)
class Page:
    """An input URL's path and what its site answers (status 0: no answer; 302 goes to ``target``)."""

    site: str
    path: str
    status: int
    target: tuple[str, str] | None = None  # (site name, path)


@dataclass(frozen=True, slots=True)
class LogEntry:
    site: str
    path: str
    status: int  # 499: the client went away before the answer
    start: float
    end: float
    robots: bool = False


def default_specs(sites: int = 12, pages: int = 75, *, max_rps: float = 4.0) -> list[SiteSpec]:
    """``sites`` sites, latencies spread over 5..150 ms; of every 12, three with a Crawl-delay (0.2, 0.3, 0.5 s, a
    quarter of the pages so runs stay short), one throttled and one always-503 (half), one refused (a tenth);
    plus two ``.invalid`` hosts with 5 URLs in all."""
    order = list(range(sites))
    random.Random(sites).shuffle(order)
    specs: list[SiteSpec] = []
    for i in range(sites):
        name, host, lat, role = f"site-{i:02d}", f"127.0.0.{10 + i}", 5 + 145 * order[i] / max(1, sites - 1), i % 12
        if role in (2, 5, 9):
            delay = {2: 0.2, 5: 0.3, 9: 0.5}[role]
            specs.append(SiteSpec(name, host, max(2, pages // 4), lat, crawl_delay_s=delay))
        elif role == 4:
            specs.append(SiteSpec(name, host, max(2, pages // 2), lat, "throttled", max_rps=max_rps, redirect_rate=0))
        elif role == 6:
            specs.append(SiteSpec(name, host, max(2, pages // 2), lat, "always503", redirect_rate=0))
        elif role == 8:
            specs.append(SiteSpec(name, host, max(2, pages // 10), 0, "refused"))
        else:
            specs.append(SiteSpec(name, host, pages, lat))
    dead = [SiteSpec(f"dead-{k}", f"dead-{k}.invalid", 4 - k, 0, "unresolvable") for k in (1, 2)]
    return specs + dead


def read_specs(path: Path) -> list[SiteSpec]:
    return [SiteSpec(**item) for item in json.loads(path.read_text(encoding="utf-8"))]


def _count(rate: float, n: int) -> int:
    return 0 if rate <= 0 else min(n, max(1 if n >= 20 else 0, round(rate * n)))


def plan(specs: Sequence[SiteSpec]) -> dict[str, list[Page]]:
    """Every site's input pages, in index order; the same for the same specs (server and client agree on it)."""
    out: dict[str, list[Page]] = {}
    slots: list[tuple[str, int]] = []
    for s in specs:
        status = [{"always503": 503, "normal": 200, "throttled": 200}.get(s.kind, 0)] * s.pages
        if s.kind in ("normal", "throttled"):
            shuffled = list(range(s.pages))
            random.Random(f"{s.name}/{s.pages}").shuffle(shuffled)
            k404, k500 = _count(s.not_found_rate, s.pages), _count(s.server_error_rate, s.pages)
            kredir = max(0, min(_count(s.redirect_rate, s.pages), s.pages - k404 - k500))
            for j, i in enumerate(shuffled[: k404 + k500 + kredir]):
                status[i] = 404 if j < k404 else 500 if j < k404 + k500 else 302
            slots += [(s.name, i) for i in range(s.pages) if status[i] == 302]
        out[s.name] = [Page(s.name, f"/p/{i}.html", st) for i, st in enumerate(status)]
    # redirect targets: the first into a Crawl-delay site, the second into its /private/, the rest anywhere else
    ok = {n: [p.path for p in pages if p.status == 200] for n, pages in out.items()}
    rng = random.Random("redirects")
    for j, (source, i) in enumerate(slots):
        others = [s for s in specs if s.kind in ("normal", "throttled") and s.name != source and ok[s.name]]
        delayed = [s for s in others if s.crawl_delay_s > 0]
        if not others:
            out[source][i] = Page(source, out[source][i].path, 200)
            continue
        target = delayed[j % len(delayed)] if j < 2 and delayed else rng.choice(others)
        path = f"/private/{j}.html" if j == 1 and delayed else rng.choice(ok[target.name])
        out[source][i] = Page(source, out[source][i].path, 302, (target.name, path))
    return out


def urls(specs: Sequence[SiteSpec], port: int, order: str = "grouped", seed: int = 0) -> list[str]:
    """Every input URL: ``grouped`` (site by site, in spec order) or ``shuffled`` (with ``seed``)."""
    pages = plan(specs)
    out = [s.base_url(port) + p.path for s in specs for p in pages[s.name]]
    if order not in ("grouped", "shuffled"):
        raise ValueError(f"order must be grouped or shuffled, not {order!r}")
    if order == "shuffled":
        random.Random(seed).shuffle(out)
    return out


def lower_bound_terms(specs: Sequence[SiteSpec], per_site_cap: int, max_concurrency: int) -> dict[str, float]:
    """Each site's term and ``"global"`` (seconds); the bound is their max (formula: module docstring)."""
    pages = plan(specs)
    counts = Counter({s.name: len(pages[s.name]) for s in specs})
    counts.update(p.target[0] for ps in pages.values() for p in ps if p.target and p.target[1].startswith("/p/"))
    terms: dict[str, float] = {}
    for s in specs:
        n = min(counts[s.name], per_site_cap) if s.kind == "always503" else counts[s.name] * (s.kind in SERVING)
        counts[s.name], lat = n, s.latency_ms / 1000
        term = math.ceil(n / per_site_cap) * lat
        if n and s.crawl_delay_s > 0:
            term = max(term, (n - 1) * s.crawl_delay_s + lat)
        if n and s.kind == "throttled":
            term = max(term, (math.ceil(n / s.max_rps) - 1) * THROTTLE_WINDOW_S + lat)
        terms[s.name] = term
    terms["global"] = sum(counts[s.name] * s.latency_ms / 1000 for s in specs) / max_concurrency
    return terms


def lower_bound_s(specs: Sequence[SiteSpec], per_site_cap: int, max_concurrency: int) -> float:
    """The shortest time any crawler obeying the sites' limits can take over :func:`urls` (module docstring)."""
    return max(lower_bound_terms(specs, per_site_cap, max_concurrency).values())


@dataclass(slots=True)
class SiteReport:
    """What one site's server saw; robots.txt requests are counted apart and left out of everything else."""

    name: str
    kind: str
    requests: int
    robots_requests: int
    statuses: dict[int, int]
    peak_in_flight: int
    min_gap_s: float | None  # between request starts
    short_gaps: int  # gaps under the Crawl-delay minus the tolerance
    served_429: int
    retry_after_ignored: int  # requests started inside a 429's Retry-After
    disallowed_fetched: int  # /private/ of a Crawl-delay site
    first_start: float | None
    last_end: float | None


@dataclass(slots=True)
class PolitenessReport:
    sites: dict[str, SiteReport]
    breaches: list[str] = field(default_factory=list)  # empty: polite

    def to_dict(self) -> dict[str, Any]:
        return {"sites": {n: asdict(r) for n, r in self.sites.items()}, "breaches": self.breaches}


def _site_report(spec: SiteSpec, entries: list[LogEntry], tolerance_s: float) -> SiteReport:
    pages = [e for e in entries if not e.robots]
    starts = [e.start for e in pages]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    statuses = Counter(e.status for e in pages)
    events = sorted(t for e in pages for t in ((e.start, 1), (e.end, -1)))  # at a tie the end (-1) goes first
    windows = sorted((e.end + tolerance_s, e.end + spec.retry_after_s - tolerance_s) for e in pages if e.status == 429)
    lows = [lo for lo, _ in windows]  # one length: only the last window opened before t can hold t

    def inside(t: float) -> bool:
        i = bisect.bisect_right(lows, t) - 1
        return i >= 0 and t < windows[i][1]

    delayed = spec.crawl_delay_s > 0
    return SiteReport(
        name=spec.name,
        kind=spec.kind,
        requests=len(pages),
        robots_requests=len(entries) - len(pages),
        statuses=dict(sorted(statuses.items())),
        peak_in_flight=max(itertools.accumulate(step for _, step in events), default=0),
        min_gap_s=min(gaps, default=None),
        short_gaps=sum(g < spec.crawl_delay_s - tolerance_s for g in gaps) if delayed else 0,
        served_429=statuses[429],
        retry_after_ignored=sum(inside(t) for t in starts),
        disallowed_fetched=sum(e.path.startswith("/private/") for e in pages) if delayed else 0,
        first_start=starts[0] if starts else None,
        last_end=max((e.end for e in pages), default=None),
    )


def politeness_report(
    log: Iterable[LogEntry], specs: Sequence[SiteSpec], per_site_cap: int, *, tolerance_s: float = 0.02
) -> PolitenessReport:
    """What the server saw per site, and the breaches: more than ``per_site_cap`` in flight, starts closer than the
    Crawl-delay (minus ``tolerance_s``), requests inside a 429's Retry-After, fetches robots.txt disallows."""
    entries = sorted(log, key=lambda e: e.start)
    report = PolitenessReport(
        {s.name: _site_report(s, [e for e in entries if e.site == s.name], tolerance_s) for s in specs}
    )
    for spec in specs:
        r = report.sites[spec.name]
        checks = [
            (r.peak_in_flight > per_site_cap, f"{r.peak_in_flight} requests in flight (cap {per_site_cap})"),
            (r.short_gaps > 0, f"{r.short_gaps} gaps under its Crawl-delay of {spec.crawl_delay_s:g} s "
                               f"(shortest {r.min_gap_s or 0:.3f} s)"),
            (r.disallowed_fetched > 0, f"{r.disallowed_fetched} fetches of /private/, disallowed by robots.txt"),
            (r.retry_after_ignored > 0, f"{r.retry_after_ignored} requests inside a 429's Retry-After "
                                        f"of {spec.retry_after_s:g} s"),
        ]  # fmt: skip
        report.breaches += [f"{r.name}: {message}" for bad, message in checks if bad]
    return report


# --------------------------------------------------------------------------------------------------------------
# the server


class _Server:
    """The state behind every site's answers: pages, throttling windows, the request log. Lives in one loop."""

    def __init__(self, specs: Sequence[SiteSpec], *, control: bool, log_file: IO[str] | None = None) -> None:
        self.specs = {s.host: s for s in specs if s.kind in SERVING}
        if not self.specs:
            raise ValueError("no site to serve: every spec is refused or unresolvable")
        if len({s.name for s in specs}) < len(specs) or len({s.host for s in specs}) < len(specs):
            raise ValueError("site names and hosts must be unique")
        self.by_name = {s.name: s for s in specs}
        self.control, self.log_file = control, log_file
        self.entries: list[LogEntry] = []
        self.lock = threading.Lock()  # the log is read from other threads (MultiSiteWeb)
        self.admitted: dict[str, deque[float]] = {s.name: deque() for s in specs}
        self.rng = random.Random(0)
        self.pages = {(p.site, p.path): p for pages in plan(specs).values() for p in pages}
        # made before serving (about 0.3 ms each), so latency is all the server adds
        seeds = {key: zlib.crc32(f"{key[0]}{key[1]}".encode()) for key, p in self.pages.items() if p.status == 200}
        self.bodies = {key: generate_page(seed, 2000 + seed % 3000) for key, seed in seeds.items()}
        self.private = generate_page(0, 2500)
        self.runner: web.AppRunner | None = None
        self.port = 0

    def record(self, entry: LogEntry) -> None:
        with self.lock:
            self.entries.append(entry)
        if self.log_file is not None:
            self.log_file.write(json.dumps(asdict(entry)) + "\n")

    def take_log(self, *, clear: bool = False) -> list[LogEntry]:
        with self.lock:
            out = list(self.entries)
            if clear:
                self.entries.clear()
                for window in self.admitted.values():
                    window.clear()
        return out

    def _throttled(self, spec: SiteSpec, now: float) -> bool:
        if spec.random_429_rate > 0 and self.rng.random() < spec.random_429_rate:
            return True
        if spec.kind != "throttled":
            return False
        window = self.admitted[spec.name]
        while window and window[0] <= now - THROTTLE_WINDOW_S:
            window.popleft()
        if len(window) >= spec.max_rps:
            return True
        window.append(now)
        return False

    def _answer(self, spec: SiteSpec, path: str, now: float) -> web.Response:
        if path == "/robots.txt":
            text = spec.robots_txt()
            return web.Response(text=text) if text is not None else web.Response(status=404, text="no robots\n")
        if spec.crawl_delay_s > 0 and path.startswith("/private/"):
            return web.Response(body=self.private, content_type="text/html")
        if self._throttled(spec, now):
            return web.Response(status=429, text="slow down\n", headers={"Retry-After": f"{spec.retry_after_s:g}"})
        page = self.pages.get((spec.name, path))
        if page is None or page.status == 404:
            return web.Response(status=404, text="not found\n")
        if page.status == 302 and page.target is not None:
            location = self.by_name[page.target[0]].base_url(self.port) + page.target[1]
            return web.Response(status=302, text="moved\n", headers={"Location": location})
        if page.status != 200:
            return web.Response(status=page.status, text=f"simulated {page.status}\n")
        return web.Response(body=self.bodies[(spec.name, path)], content_type="text/html")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        spec = self.specs.get(sockname[0]) if sockname else None
        if spec is None:  # the control address
            if not self.control or request.path not in ("/__log", "/__reset"):
                return web.Response(status=404, text="not found\n")
            entries = self.take_log(clear=request.path == "/__reset")
            return web.json_response([asdict(e) for e in entries] if request.path == "/__log" else len(entries))
        start, status = time.monotonic(), 499
        try:
            response = self._answer(spec, request.path, start)
            await asyncio.sleep(spec.latency_ms / 1000)
            status = response.status
            return response
        finally:
            end, robots = time.monotonic(), request.path == "/robots.txt"
            self.record(LogEntry(spec.name, request.path, status, start, end, robots))

    async def start(self) -> int:
        """Binds every serving site (and the control address) on one free port; tries another on a clash."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self.runner.setup()
        hosts = [*self.specs, *([CONTROL_HOST] if self.control else [])]
        for _ in range(PORT_ATTEMPTS):
            started: list[web.TCPSite] = []
            try:
                for host in hosts:
                    started.append(web.TCPSite(self.runner, host, self.port, backlog=1024))
                    await started[-1].start()
                    self.port = self.port or self.runner.addresses[-1][1]
                return self.port
            except OSError:
                self.port = 0
                for site in started:
                    await site.stop()
        raise OSError(f"no port free on all of {', '.join(hosts)} after {PORT_ATTEMPTS} attempts")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class MultiSiteWeb:
    """The web in a background thread with its own event loop, for tests and tools in the same process.

    ``start()``/``stop()`` or a ``with`` block; :attr:`port` once started. The log is kept until :meth:`reset`.
    """

    def __init__(self, specs: Sequence[SiteSpec]) -> None:
        self.specs = list(specs)
        self._server: _Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.port:
            raise RuntimeError("MultiSiteWeb is not started")
        return self._server.port

    def start(self) -> Self:
        self._server = _Server(self.specs, control=False)
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="multisite-web", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._server.start(), loop).result(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loop, thread, self._loop = self._loop, self._thread, None
        if loop is None or thread is None:
            return
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def base_url(self, name: str) -> str:
        return next(s for s in self.specs if s.name == name).base_url(self.port)

    def urls(self, order: str = "grouped", seed: int = 0) -> list[str]:
        return urls(self.specs, self.port, order, seed)

    def log(self) -> list[LogEntry]:
        """Every request answered (or abandoned: status 499) since the start or the last :meth:`reset`."""
        return self._server.take_log() if self._server is not None else []

    def reset(self) -> None:
        """Clears the log and the throttling windows."""
        if self._server is not None:
            self._server.take_log(clear=True)

    def politeness_report(self, per_site_cap: int, *, tolerance_s: float = 0.02) -> PolitenessReport:
        return politeness_report(self.log(), self.specs, per_site_cap, tolerance_s=tolerance_s)

    def lower_bound_s(self, per_site_cap: int, max_concurrency: int) -> float:
        return lower_bound_s(self.specs, per_site_cap, max_concurrency)


def refuses(host: str, port: int) -> bool:
    """True when a connection to ``host:port`` is refused at once (the ``refused`` sites' promise)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        pass
    return False


async def _serve(specs: list[SiteSpec], log_path: Path | None) -> None:
    log_file = log_path.open("a", encoding="utf-8", buffering=1) if log_path is not None else None
    server = _Server(specs, control=True, log_file=log_file)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        port = await server.start()
        sites = {s.name: s.base_url(port) for s in specs}
        bad = [s.name for s in specs if s.kind == "refused" and not refuses(s.host, port)]
        ready = {"port": port, "control": f"http://{CONTROL_HOST}:{port}", "sites": sites, "not_refusing": bad}
        print(json.dumps(ready), flush=True)
        await stop.wait()
    finally:
        await server.stop()
        if log_file is not None:
            log_file.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the sites until SIGTERM/SIGINT")
    serve.add_argument("--spec", type=Path, help="JSON list of SiteSpec fields (default: default_specs())")
    serve.add_argument("--log", type=Path, help="also append every request to this JSONL file")
    specs = sub.add_parser("specs", help="print default specs as JSON")
    specs.add_argument("--sites", type=int, default=12)
    specs.add_argument("--pages", type=int, default=75)
    args = parser.parse_args(argv)
    if args.command == "specs":
        print(json.dumps([asdict(s) for s in default_specs(args.sites, args.pages)], indent=1))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(read_specs(args.spec) if args.spec else default_specs(), args.log))


if __name__ == "__main__":
    main()
