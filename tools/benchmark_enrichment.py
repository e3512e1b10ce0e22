"""Benchmark the enrichment engines against each other and against what this machine can do.

    python tools/benchmark_enrichment.py --urls 100 --runs 3 --concurrency 50
    python tools/benchmark_enrichment.py --corpus ../shared/corpus/sites/postgresql --urls 1000 \\
        --engines async,scrapy --profile fetch,extract,full --concurrency 10,50,200 --json bench.json --plot bench.png

A local HTTP server (``tools/bench_server.py``) runs in its own process on loopback and serves real pages from a
folder or generated ones, with simulated latency and errors. Every configuration (engine x profile x concurrency)
runs once per round, in the same order each round (A B A B ...), for ``--runs`` rounds over the same URLs; each
run is a fresh process, so its peak RSS is its own. The ceilings are measured in the same rounds:

* fetch ceiling: plain aiohttp with an ``asyncio.Semaphore`` of the same concurrency, reading every body;
* extraction ceiling: ``enrich.extract.extract_page`` alone over the same pages, downloaded beforehand, with as
  many threads as ``extract.workers``;
* NLP ceiling: ``NLPStage`` with the same ``NLPConfig`` fed every extracted text at once (its workers started
  first); beside it the naive figure: the model's full default pipeline, one thread, one ``nlp()`` call per page,
  over the same texts (or an even sample of them);
* CPU bound of the full profile: (CPU-seconds of the NLP ceiling + those of the extraction ceiling) / cores, set
  against each run's duration, with the run's own CPU-seconds, the server's and the cores' idle time beside it.

A profile's ceiling is the slowest of the ceilings of the steps it runs (a perfect pipeline overlaps the steps),
and each configuration's efficiency is its throughput over that ceiling. Profiles: ``fetch`` (download only),
``extract`` (download + extraction), ``full`` (download + extraction + NLP).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from enrich.config import EnrichConfig
    from enrich.record import FetchedPage
    from enrich.state import CrawlState
    from enrich.stats import RunStats

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = Path(__file__).with_name("bench_server.py")
if str(ROOT) not in sys.path:  # the worker processes import enrich/ and crawler/ from the checkout
    sys.path.insert(0, str(ROOT))

ENGINES = ("async", "scrapy", "async-state", "scrapy-state")
"""The ``-state`` variants keep a crawl state (enrich.state) in the run's folder: what durability costs."""
PROFILES = ("fetch", "extract", "full")
PROFILE_STEPS = {"fetch": ("fetch",), "extract": ("fetch", "extract"), "full": ("fetch", "extract", "nlp")}
RSS_POLL_S = (0.05, 0.25)
"""How often the process tree of a run is sampled for its resident memory and CPU: often in its first seconds (a
short run's figures), then seldom: sampling four processes 20 times a second took 4 % of a core from the run."""
RSS_POLL_FAST_S = 2.0
SCRAPY_SINK_PIPELINE = "crawler.scrapy_mode.pipelines.SinkPipeline"
"""Scrapy mode's last item pipeline; alone, it makes Scrapy's fetch profile (no extraction, no NLP)."""
PREFETCH_CONCURRENCY = 50
"""Concurrency of the untimed download that feeds the extraction and NLP ceilings."""

_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------------------------------------------
# the server process


class BenchServer:
    """``tools/bench_server.py`` in a child process; :attr:`base_url` once it listens."""

    def __init__(self, args: argparse.Namespace, log_path: Path) -> None:
        cmd = [sys.executable, str(SERVER_SCRIPT), "--latency-ms", str(args.latency_ms)]
        cmd += ["--error-rate", str(args.error_rate), "--page-bytes", str(args.page_bytes)]
        if args.corpus is not None:
            cmd += ["--corpus", str(args.corpus)]
        if args.retry_after_s is not None:
            cmd += ["--retry-after-s", str(args.retry_after_s)]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.stop()
            raise SystemExit(f"benchmark server did not start (see {log_path}): {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}"

    def cpu_s(self) -> float:
        """CPU seconds the server process has used so far."""
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def get(self, path: str) -> Any:
        with _LOCAL.open(self.base_url + path, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --------------------------------------------------------------------------------------------------------------
# configurations


@dataclass(frozen=True, slots=True)
class Variant:
    """One thing that is run once per round: an engine configuration or a ceiling."""

    kind: str  # "async", "scrapy", "async-state", "scrapy-state", "ceiling-fetch", "ceiling-cpu"
    profile: str  # fetch, extract, full; "-" for ceilings
    concurrency: int
    layout: str = ""
    """``extract.executor`` of an engine run when the round compares layouts (``--extract-executor a,b``)."""

    @property
    def key(self) -> str:
        if self.kind == "ceiling-cpu":
            return "ceiling-cpu"
        if self.kind == "ceiling-fetch":
            return f"ceiling-fetch/c{self.concurrency}"
        return f"{self.kind}/{self.profile}/c{self.concurrency}" + (f"/x-{self.layout}" if self.layout else "")

    @property
    def is_engine(self) -> bool:
        return self.kind in ENGINES


def build_config(
    args: argparse.Namespace, profile: str, concurrency: int, output: Path, *, layout: str = ""
) -> EnrichConfig:
    """The engine configuration of one run: the base config with the benchmark's knobs applied.

    Every concurrency limit is set to ``concurrency`` (a single host would otherwise be held at the per-domain
    limit), and the per-site congestion control (AIMD), when on, starts there.
    """
    from enrich.config import EnrichConfig, load_config

    base = load_config(args.config) if args.config is not None else EnrichConfig()
    fetch: dict[str, Any] = {
        "max_concurrency": concurrency,
        "per_host_limit": concurrency,
    }
    if args.retries is not None:
        fetch["retries"] = args.retries
    if args.backoff_base_s is not None:
        fetch["backoff_base_s"] = args.backoff_base_s
        fetch["backoff_cap_s"] = max(base.fetch.backoff_cap_s, args.backoff_base_s)
    nlp: dict[str, Any] = {"enabled": profile == "full", "executor": args.nlp_executor, "workers": args.nlp_workers}
    if args.nlp_batch_size is not None:
        nlp["batch_size"] = args.nlp_batch_size
    if args.nlp_backend is not None:  # the NLP backend: its ceiling is measured with it, on this machine's devices
        nlp["backend"] = args.nlp_backend
    if args.nlp_model is not None:
        nlp["model"] = args.nlp_model
    extract: dict[str, Any] = {"workers": args.extract_workers}
    if layout or args.extract_executor:
        extract["executor"] = layout or args.extract_executor[0]
    return base.replace(
        fetch=fetch,
        aimd={"enabled": args.aimd == "on"},
        politeness={"per_domain_concurrency": concurrency},
        extract=extract,
        nlp=nlp,
        output={"path": output, "sqlite_path": None},
    )


# --------------------------------------------------------------------------------------------------------------
# workers: one configuration in a fresh process, result as JSON


def _peak_rss_self_mb() -> float:
    import resource

    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process, its live descendants and its reaped children so far."""
    import psutil

    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


def _concurrency_history(stats: dict[str, Any]) -> list[Any] | None:
    """The engine's own concurrency history, if its stats hold one (any list under a key naming concurrency)."""
    for key, value in stats.items():
        if "concurrency" in key and isinstance(value, list) and value:
            return value
    return None


async def _worker_async(spec: dict[str, Any]) -> dict[str, Any]:
    from crawler import run_async_enrichment
    from enrich.config import EnrichConfig

    config = EnrichConfig.model_validate(spec["config"])
    urls: list[str] = spec["urls"]
    output = Path(spec["output"])
    notes: list[str] = []
    state = None
    if spec["kind"] == "async-state":
        from enrich.state import CrawlState

        state = CrawlState.open(output.with_suffix(".state.sqlite"), restart=True)
        notes.append("with a crawl state: every batch committed to SQLite (WAL), the JSONL output fsynced first")
    started = time.perf_counter()
    if spec["profile"] == "fetch":
        run_stats = await _async_fetch_only(config, urls, output, state)
        notes.append("async fetch profile: the processor with a SinkStage over a MemorySink as its only stage")
    elif state is not None:
        from crawler.async_engine import AsyncEnrichmentProcessor, iter_inputs

        processor = AsyncEnrichmentProcessor.from_config(config, progress_interval_s=0, state=state)
        run_stats = await processor.run(iter_inputs(urls))
    else:
        run_stats = await run_async_enrichment(urls=urls, output_file=output, config=config, progress_interval_s=0)
    call_s = time.perf_counter() - started
    if state is not None:
        state.close(complete=True)
    stats = run_stats.to_dict()
    return {"duration_s": stats.get("elapsed_s") or call_s, "call_s": call_s, "engine_stats": stats, "notes": notes}


async def _async_fetch_only(
    config: EnrichConfig, urls: list[str], output: Path, state: CrawlState | None = None
) -> RunStats:
    """The async engine with no extraction and no NLP: its processor with only a sink stage over a MemorySink
    (committing to ``state`` when one is given).

    The records are written to ``output`` after the run, for the parent to read.
    """
    from crawler.async_engine import AsyncEnrichmentProcessor, iter_inputs
    from enrich.pipeline import build_sink_stage
    from enrich.record import dumps_record
    from enrich.sinks import MemorySink

    sink = MemorySink()
    processor = AsyncEnrichmentProcessor.from_config(
        config, stages=[build_sink_stage(config, sinks=[sink], state=state)], progress_interval_s=0, state=state
    )
    stats = await processor.run(iter_inputs(urls))
    _write_lines(output, [dumps_record(record) for record in sink.records])
    return stats


def _write_lines(path: Path, lines: list[str]) -> None:
    """Written after the clock stops; blocking is harmless there."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


async def _download(urls: Sequence[str], concurrency: int, *, keep: bool) -> tuple[float, list[dict[str, Any]]]:
    """Plain aiohttp: a semaphore, one attempt per URL, every body read in full. Returns (seconds, results)."""
    import aiohttp

    from enrich.record import FetchedPage, utc_now_iso

    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=60)

    async def one(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        async with semaphore:
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    ms = (time.perf_counter() - started) * 1000
                    out: dict[str, Any] = {"status": response.status, "bytes": len(body), "fetch_ms": ms}
                    if keep and response.status == 200:
                        out["page"] = FetchedPage(
                            url=url,
                            final_url=str(response.url),
                            status=response.status,
                            headers={k.lower(): v for k, v in response.headers.items()},
                            body=body,
                            fetched_at=utc_now_iso(),
                            fetch_duration_ms=ms,
                        )
                    return out
            except (aiohttp.ClientError, TimeoutError) as exc:
                return {"status": None, "bytes": 0, "fetch_ms": None, "error": type(exc).__name__}

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(session, url) for url in urls))
        return time.perf_counter() - started, list(results)


async def _worker_ceiling_fetch(spec: dict[str, Any]) -> dict[str, Any]:
    urls: list[str] = spec["urls"]
    duration, results = await _download(urls, spec["concurrency"], keep=False)
    # written as records so the parent computes fetch percentiles the same way for every row
    lines = []
    for url, r in zip(urls, results, strict=True):
        error = None if r["status"] == 200 else {"type": f"HTTP {r['status']}", "message": "", "stage": "fetch"}
        lines.append(
            json.dumps({"url": url, "status": r["status"], "fetch_duration_ms": r["fetch_ms"], "error": error})
        )
    _write_lines(Path(spec["output"]), lines)
    return {"duration_s": duration, "engine_stats": {}, "notes": []}


async def _worker_ceiling_cpu(spec: dict[str, Any]) -> dict[str, Any]:
    """Extraction alone, then the NLP stage alone, then the naive NLP pipeline, over the same pages."""
    from enrich.config import EnrichConfig

    config = EnrichConfig.model_validate(spec["config"])
    urls: list[str] = spec["urls"]
    _, results = await _download(urls, PREFETCH_CONCURRENCY, keep=True)
    pages: list[FetchedPage] = [r["page"] for r in results if "page" in r]
    out: dict[str, Any] = {"urls": len(urls), "pages": len(pages), "notes": []}
    out["extract"], texts = _extract_ceiling(pages, config)
    notes = []
    if out["extract"]["errors"]:
        notes.append(
            f"extraction failed on {out['extract']['errors']} of {len(pages)} pages: {out['extract']['first_error']}"
        )
    if spec["nlp"] and texts:
        out["nlp"] = await _nlp_ceiling(texts, config)
        if config.nlp.backend == "spacy":  # the naive figure is spaCy's full pipeline
            out["naive_nlp"] = _naive_nlp(texts, config, spec["naive_pages"])
    elif spec["nlp"]:
        notes.append("no NLP ceiling: extraction produced no text")
    return {"duration_s": out["extract"]["duration_s"], "engine_stats": {}, "ceilings": out, "notes": notes}


def _extract_ceiling(pages: list[FetchedPage], config: EnrichConfig) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    from concurrent.futures import ThreadPoolExecutor

    from enrich.extract import extract_page

    with ThreadPoolExecutor(config.extract.workers, thread_name_prefix="extract") as pool:
        started, cpu_started = time.perf_counter(), _tree_cpu_s()
        extractions = list(pool.map(lambda page: extract_page(page, config.extract), pages))
        duration, cpu_s = time.perf_counter() - started, _tree_cpu_s() - cpu_started
    texts = [(e.text, e.language) for e in extractions if e.text]
    words = sum(len(text.split()) for text, _ in texts)
    errors = [e.error for e in extractions if e.error is not None]
    return {
        "duration_s": duration,
        "cpu_s": cpu_s,
        "pages": len(pages),
        "workers": config.extract.workers,
        "texts": len(texts),
        "words": words,
        "bytes": sum(len(p.body) for p in pages),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }, texts


async def _nlp_ceiling(texts: list[tuple[str, Any]], config: EnrichConfig) -> dict[str, Any]:
    from enrich.nlp import NLPStage
    from enrich.record import Record
    from enrich.stages import WorkItem

    stage = NLPStage(config=config.nlp)
    started, cpu_started = time.perf_counter(), _tree_cpu_s()
    await stage.open()
    await stage.ready()  # the workers load their models now, not on the clock
    open_s, open_cpu_s = time.perf_counter() - started, _tree_cpu_s() - cpu_started
    items = [WorkItem(record=Record(url=f"text:{i}", text=text, language=lang)) for i, (text, lang) in enumerate(texts)]
    try:
        started, cpu_started = time.perf_counter(), _tree_cpu_s()
        await asyncio.gather(*(stage.process(item) for item in items))
        duration, cpu_s = time.perf_counter() - started, _tree_cpu_s() - cpu_started
    finally:
        await stage.close()
    words = sum(len(text[: config.nlp.max_chars].split()) for text, _ in texts)
    return {
        "duration_s": duration,
        "cpu_s": cpu_s,
        "open_s": open_s,
        "open_cpu_s": open_cpu_s,
        "texts": len(texts),
        "words": words,
        "executor": config.nlp.executor,
        "workers": config.nlp.workers,
        "batch_size": config.nlp.batch_size,
        "backend": config.nlp.backend,
        "model": config.nlp.model_name,
    }


def naive_sample(texts: Sequence[tuple[str, Any]], limit: int) -> list[tuple[str, Any]]:
    """The texts of the naive NLP figure: all of them (``limit`` 0), the NLP stage's own, so their words per second
    compare like for like; else ``limit`` texts spread evenly over them (the first ones of a corpus can be far
    shorter than the rest)."""
    if limit <= 0 or limit >= len(texts):
        return list(texts)
    return [texts[i * len(texts) // limit] for i in range(limit)]


def _naive_nlp(texts: list[tuple[str, Any]], config: EnrichConfig, limit: int) -> dict[str, Any]:
    import spacy

    from enrich.nlp import resolve_model

    started = time.perf_counter()
    nlp = spacy.load(resolve_model(config.nlp.model))
    open_s = time.perf_counter() - started
    nlp.max_length = max(nlp.max_length, 2_000_000)
    sample = [text[: config.nlp.max_chars] for text, _ in naive_sample(texts, limit)]
    started = time.perf_counter()
    for text in sample:
        nlp(text)
    duration = time.perf_counter() - started
    return {
        "duration_s": duration,
        "open_s": open_s,
        "texts": len(sample),
        "words": sum(len(text.split()) for text in sample),
        "pipeline": list(nlp.pipe_names),
    }


def worker_main(spec_path: Path) -> None:
    """``--worker SPEC``: run one configuration and write its result JSON where the spec says."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    spec["urls"] = Path(spec["urls_file"]).read_text(encoding="utf-8").split()
    runner = {
        "async": _worker_async,
        "async-state": _worker_async,
        "ceiling-fetch": _worker_ceiling_fetch,
        "ceiling-cpu": _worker_ceiling_cpu,
    }
    result = asyncio.run(runner[spec["kind"]](spec))
    result["ru_maxrss_mb"] = _peak_rss_self_mb()
    Path(spec["result"]).write_text(json.dumps(result, default=str), encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------
# running one configuration from the parent


class RSSPoller:
    """Samples the summed RSS of a process and its descendants until stopped; :attr:`peak_mb` is the highest.

    It also keeps each process's last CPU time seen: :attr:`cpu_s` is their sum (a process's last 50 ms missed).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        started = time.perf_counter()
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied), proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                    self._cpu[proc.pid] = times.user + times.system
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop.wait(RSS_POLL_S[time.perf_counter() - started > RSS_POLL_FAST_S])

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak_mb

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu.values())

    @property
    def main_cpu_s(self) -> float:
        """The run's own process (the engine's event loop or reactor), its workers left out."""
        return self._cpu.get(self.pid, 0.0)


@dataclass
class RunResult:
    """One run of one variant."""

    variant: Variant
    round: int
    ok: bool
    wall_s: float
    duration_s: float | None = None
    peak_rss_mb: float | None = None
    ru_maxrss_mb: float | None = None
    cpu_s: float | None = None
    """CPU seconds of the run's process tree (NLP worker processes included)."""
    main_cpu_s: float | None = None
    """CPU seconds of the run's own process alone."""
    server_cpu_s: float | None = None
    """CPU seconds the benchmark server spent during the run (it shares the machine's cores)."""
    idle_s: float | None = None
    """Core-seconds the machine's cores were idle during the run (the rest went to other processes)."""
    steal_s: float | None = None
    """Core-seconds the hypervisor gave to other guests during the run."""
    records: dict[str, Any] = field(default_factory=dict)
    engine_stats: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    ceilings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "ok": self.ok,
            "duration_s": _r(self.duration_s),
            "wall_s": _r(self.wall_s),
            "peak_rss_mb": _r(self.peak_rss_mb, 1),
            "ru_maxrss_mb": _r(self.ru_maxrss_mb, 1),
            "cpu_s": _r(self.cpu_s),
            "main_cpu_s": _r(self.main_cpu_s),
            "server_cpu_s": _r(self.server_cpu_s),
            "idle_s": _r(self.idle_s),
            "steal_s": _r(self.steal_s),
            "records": self.records,
            "engine_stats": self.engine_stats,
            "server": {k: v for k, v in self.server.items() if k != "timeline"},
            "ceilings": self.ceilings,
            "notes": self.notes,
            "error": self.error,
        }


def _median_of(runs: list[RunResult], name: str) -> float | None:
    """The median of the runs' figure ``name`` where they have one (2 decimals); ``None`` if none has it."""
    return _median([getattr(r, name) for r in runs])


def _median_stat(runs: list[RunResult], name: str) -> float | None:
    """The median of the engine's own figure ``name`` (its stats) in the runs that report it."""
    return _median([r.engine_stats.get(name) for r in runs])


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if isinstance(value, int | float)]
    return _r(statistics.median(present), 2) if present else None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = q * (len(ordered) - 1)
    lo = int(index)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (index - lo)


def read_records(path: Path, n_urls: int) -> dict[str, Any]:
    """What the records of a run say: success, fetch percentiles, process time. Missing records count as failed."""
    fetch_ms: list[float] = []
    process_ms: list[float] = []
    count = success = words = 0
    errors: dict[str, int] = {}
    if path.exists():
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                record = json.loads(line)
                count += 1
                if record.get("error") is None:
                    success += 1
                else:
                    kind = f"{record['error'].get('stage')}:{record['error'].get('type')}"
                    errors[kind] = errors.get(kind, 0) + 1
                if record.get("fetch_duration_ms") is not None and record.get("status") is not None:
                    fetch_ms.append(record["fetch_duration_ms"])
                if record.get("process_duration_ms") is not None:
                    process_ms.append(record["process_duration_ms"])
                words += record.get("word_count") or 0
    return {
        "count": count,
        "success": success,
        "success_rate": round(success / n_urls, 4) if n_urls else 1.0,
        "fetch_p50_ms": _r(_percentile(fetch_ms, 0.5), 1),
        "fetch_p95_ms": _r(_percentile(fetch_ms, 0.95), 1),
        "avg_process_ms": _r(statistics.fmean(process_ms), 1) if process_ms else None,
        "words": words,
        "errors": errors,
        "_fetch_ms": fetch_ms,
    }


class Runner:
    """Runs variants in fresh processes against the server, in a work directory."""

    def __init__(self, args: argparse.Namespace, server: BenchServer, workdir: Path, urls_file: Path) -> None:
        self.args = args
        self.server = server
        self.workdir = workdir
        self.urls_file = urls_file
        self.n_urls = len(urls_file.read_text(encoding="utf-8").split())
        self.env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

    def run(self, variant: Variant, round_no: int) -> RunResult:
        tag = f"{variant.key.replace('/', '_')}_r{round_no}"
        output = self.workdir / f"{tag}.jsonl"
        result_path = self.workdir / f"{tag}.result.json"
        log_path = self.workdir / f"{tag}.log"
        for stale in (output, result_path):
            stale.unlink(missing_ok=True)
        profile = variant.profile if variant.is_engine else ("full" if "full" in self.args.profile else "extract")
        config = build_config(
            self.args, profile, variant.concurrency or max(self.args.concurrency), output, layout=variant.layout
        )
        notes: list[str] = []
        if variant.kind.startswith("scrapy"):
            cmd, stats_path = self._scrapy_command(config, variant, output, tag)
            if variant.profile == "fetch":
                notes.append("scrapy fetch profile: -s ITEM_PIPELINES={SinkPipeline} (no extraction, no NLP)")
        else:
            spec = {
                "kind": variant.kind,
                "profile": variant.profile,
                "concurrency": variant.concurrency,
                "config": config.model_dump(mode="json"),
                "urls_file": str(self.urls_file),
                "output": str(output),
                "result": str(result_path),
                "nlp": "full" in self.args.profile,
                "naive_pages": self.args.naive_pages,
            }
            spec_path = self.workdir / f"{tag}.spec.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)]
            stats_path = None
        self.server.get("/__bench/reset")
        server_cpu, (idle, steal) = self.server.cpu_s(), _core_times()
        with log_path.open("wb") as log:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            poller = RSSPoller(proc.pid)
            try:
                code = proc.wait(timeout=self.args.timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
                notes.append(f"killed after {self.args.timeout_s}s")
            wall = time.perf_counter() - started
            peak = poller.stop()
        idle_after, steal_after = _core_times()
        server_cpu, idle, steal = self.server.cpu_s() - server_cpu, idle_after - idle, steal_after - steal
        server = self.server.get("/__bench/stats")
        run = RunResult(variant, round_no, ok=code == 0, wall_s=wall, peak_rss_mb=peak, server=server, notes=notes)
        run.cpu_s, run.server_cpu_s, run.idle_s, run.steal_s = poller.cpu_s, server_cpu, idle, steal
        run.main_cpu_s = poller.main_cpu_s
        if code != 0:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-1500:]
            run.error = f"exit code {code}; log {log_path}:\n{tail}"
        if variant.kind.startswith("scrapy"):
            stats = _read_json(stats_path) if stats_path is not None else None
            run.engine_stats = stats or {}
            # the spider's own run time when its stats give one, else the process wall time (startup included)
            elapsed = run.engine_stats.get("elapsed_s")
            run.duration_s = float(elapsed) if isinstance(elapsed, int | float) else wall
            if not isinstance(elapsed, int | float):
                run.notes.append("scrapy stats have no elapsed_s: duration is the process wall time")
        else:
            worker = _read_json(result_path)
            if worker is not None:
                run.duration_s = worker["duration_s"]
                run.ru_maxrss_mb = worker.get("ru_maxrss_mb")
                run.engine_stats = worker.get("engine_stats") or {}
                run.ceilings = worker.get("ceilings") or {}
                run.notes.extend(worker.get("notes") or [])
            elif run.ok:
                run.ok, run.error = False, f"worker wrote no result; log {log_path}"
        if variant.kind != "ceiling-cpu":
            run.records = read_records(output, self.n_urls)
        if not self.args.keep_outputs:
            output.unlink(missing_ok=True)
        return run

    def _scrapy_command(self, config: EnrichConfig, variant: Variant, output: Path, tag: str) -> tuple[list[str], Path]:
        import yaml

        config_path = self.workdir / f"{tag}.yml"
        config_path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        stats_path = self.workdir / f"{tag}.stats.json"
        stats_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "scrapy", "crawl", "enrich", "-L", self.args.scrapy_log_level]
        for key, value in (
            ("input", self.urls_file),
            ("output", output),
            ("config", config_path),
            ("stats_file", stats_path),
            ("nlp", "on" if variant.profile == "full" else "off"),
            ("concurrency", variant.concurrency),
        ):
            cmd += ["-a", f"{key}={value}"]
        if variant.kind == "scrapy-state":
            cmd += ["-a", f"state={self.workdir / f'{tag}.state.sqlite'}"]
        if variant.profile == "fetch":
            # only the sink pipeline: the page goes from the downloader straight to the JSONL file
            cmd += ["-s", "ITEM_PIPELINES=" + json.dumps({SCRAPY_SINK_PIPELINE: 300})]
        return cmd, stats_path


def _core_times() -> tuple[float, float]:
    """Core-seconds every core of the machine has been idle (or waiting on I/O) since boot, and stolen by the
    hypervisor (a virtual machine's cores run another guest's work: a CPU-second then does less of ours)."""
    import psutil

    times = psutil.cpu_times()
    return float(times.idle + getattr(times, "iowait", 0.0)), float(getattr(times, "steal", 0.0))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------------------
# summaries


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _scaled(spread: dict[str, float] | None, numerator: float) -> dict[str, float] | None:
    """Durations to rates: the median rate is the rate of the median duration; min and max swap."""
    if spread is None:
        return None
    return {
        "median": numerator / spread["median"],
        "min": numerator / spread["max"],
        "max": numerator / spread["min"],
    }


def summarize_ceilings(runs: list[RunResult], n_urls: int) -> dict[str, Any]:
    """Medians (with min and max) of every ceiling, as URLs/s and, for NLP, words/s and pages/s."""
    out: dict[str, Any] = {"fetch": {}}
    for run in runs:
        if run.variant.kind == "ceiling-fetch" and run.ok and run.duration_s:
            out["fetch"].setdefault(str(run.variant.concurrency), []).append(run)
    for conc, group in list(out["fetch"].items()):
        durations = [r.duration_s for r in group if r.duration_s]
        out["fetch"][conc] = {
            "duration_s": _spread(durations),
            "urls_per_s": _scaled(_spread(durations), n_urls),
            "success_rate": min(r.records.get("success_rate", 0) for r in group),
            "peak_rss_mb": statistics.median(r.peak_rss_mb or 0 for r in group),
            "fetch_p50_ms": statistics.median(r.records.get("fetch_p50_ms") or 0 for r in group),
            "fetch_p95_ms": statistics.median(r.records.get("fetch_p95_ms") or 0 for r in group),
        }
    cpu = [r for r in runs if r.variant.kind == "ceiling-cpu" and r.ok and r.ceilings]
    if cpu:
        first = cpu[0].ceilings
        ex = [r.ceilings["extract"] for r in cpu]
        durations = [e["duration_s"] for e in ex]
        out["extract"] = {
            "workers": first["extract"]["workers"],
            "pages": first["extract"]["pages"],
            "duration_s": _spread(durations),
            "urls_per_s": _scaled(_spread(durations), n_urls),
            "pages_per_s": _scaled(_spread(durations), first["extract"]["pages"]),
            "mb_per_s": _scaled(_spread(durations), first["extract"]["bytes"] / 2**20),
        }
        for name in ("nlp", "naive_nlp"):
            parts = [r.ceilings[name] for r in cpu if name in r.ceilings]
            if not parts:
                continue
            durations = [p["duration_s"] for p in parts]
            entry = {
                "texts": parts[0]["texts"],
                "words": parts[0]["words"],
                "open_s": statistics.median(p["open_s"] for p in parts),
                "duration_s": _spread(durations),
                "words_per_s": _scaled(_spread(durations), parts[0]["words"]),
                "pages_per_s": _scaled(_spread(durations), parts[0]["texts"]),
            }
            for key in ("executor", "workers", "batch_size", "pipeline", "backend", "model"):
                if key in parts[0]:
                    entry[key] = parts[0][key]
            if all("cpu_s" in p for p in parts):
                entry["cpu_s"] = _spread([p["cpu_s"] for p in parts])
            if name == "nlp":
                entry["urls_per_s"] = _scaled(_spread(durations), n_urls)
            out[name] = entry
        out["peak_rss_mb_cpu"] = statistics.median(r.peak_rss_mb or 0 for r in cpu)
        if all("cpu_s" in e for e in ex):
            out["extract"]["cpu_s"] = _spread([e["cpu_s"] for e in ex])
        out["cpu_bound"] = cpu_bound(cpu)
        if "nlp" in out and "naive_nlp" in out:
            naive, stage = out["naive_nlp"], out["nlp"]
            naive["stage_speedup"] = stage["words_per_s"]["median"] / naive["words_per_s"]["median"]
            naive["same_texts"] = naive["texts"] == stage["texts"]
        out["extract"]["errors"] = first["extract"].get("errors", 0)
    out["notes"] = sorted({note for r in runs if not r.variant.is_engine for note in r.notes})
    failed = [r for r in runs if not r.variant.is_engine and not r.ok]
    out["notes"] += [f"{r.variant.key} round {r.round} failed: {(r.error or '').splitlines()[0]}" for r in failed]
    return out


def cpu_bound(cpu_runs: Sequence[RunResult]) -> dict[str, Any] | None:
    """The full profile's CPU bound: (CPU seconds of the NLP ceiling + those of the extraction ceiling) / cores, per
    round, the shortest run a pipeline could make whose fetching, JSON and sinks cost nothing. Both ceilings run on
    the same pages as the engines, in the same round; fetching is left out (plain aiohttp costs far less)."""
    rounds = [
        (r.round, r.ceilings["extract"]["cpu_s"], r.ceilings["nlp"]["cpu_s"])
        for r in cpu_runs
        if "cpu_s" in r.ceilings.get("extract", {}) and "cpu_s" in r.ceilings.get("nlp", {})
    ]
    if not rounds:
        return None
    per_round = [(e, n) for _, e, n in rounds]
    cores = os.cpu_count() or 1
    loads = [r.ceilings["nlp"]["open_cpu_s"] for r in cpu_runs if "open_cpu_s" in r.ceilings.get("nlp", {})]
    return {
        "cores": cores,
        "model_load_cpu_s": statistics.median(loads) if loads else None,
        "extract_cpu_s": statistics.median(e for e, _ in per_round),
        "nlp_cpu_s": statistics.median(n for _, n in per_round),
        "duration_s": _spread([(e + n) / cores for e, n in per_round]),
        "per_round": {str(round_no): (e + n) / cores for round_no, e, n in rounds},
        "per_round_cpu_s": {str(round_no): e + n for round_no, e, n in rounds},
    }


def bound_figures(runs: Sequence[RunResult], bound: dict[str, Any] | None) -> dict[str, Any]:
    """Each full run against bounds: its own round's CPU bound (the ceilings measured minutes before it), and the
    bound of the work it did itself: the CPU-seconds its NLP batches and extractions used, over the cores. The
    first is the issue's yardstick; on a shared virtual machine a CPU-second does more or less work from one minute
    to the next (the same 1,000 texts took 97 to 141 CPU-s in one benchmark), and the second is immune to that:
    what separates a run from it is only the engine's own overhead, idle cores and other load. ``work_vs_ceiling``
    is the run's work CPU over the round's ceiling CPU: 1.0 when the machine ran at one speed and the engine's
    batches cost what the NLP stage alone pays."""
    cores = os.cpu_count() or 1
    by_round, work_ratio, drift = [], [], []
    for run in runs:
        stats = run.engine_stats
        if not run.ok or not run.duration_s:
            continue
        if bound and str(run.round) in bound.get("per_round", {}):
            by_round.append(bound["per_round"][str(run.round)] / run.duration_s)
        nlp, extract = stats.get("nlp_compute_cpu_s"), stats.get("extract_cpu_s")
        if isinstance(nlp, int | float) and isinstance(extract, int | float):
            work_ratio.append((nlp + extract) / cores / run.duration_s)
            if bound and str(run.round) in bound.get("per_round_cpu_s", {}):
                drift.append((nlp + extract) / bound["per_round_cpu_s"][str(run.round)])
    return {
        "cpu_bound_ratio_by_round": [_r(x) for x in by_round],
        "cpu_bound_ratio_paired": _median(by_round),
        "work_bound_ratio": _median(work_ratio),
        "work_bound_ratios": [_r(x) for x in work_ratio],
        "work_vs_ceiling": [_r(x) for x in drift],
    }


def profile_ceiling(ceilings: dict[str, Any], profile: str, concurrency: int) -> tuple[float | None, str | None]:
    """The URLs/s a perfect pipeline could reach for a profile: its slowest step's ceiling, and which step."""
    bounds: dict[str, float] = {}
    fetch = ceilings.get("fetch", {}).get(str(concurrency))
    if fetch and fetch["urls_per_s"]:
        bounds["fetch"] = fetch["urls_per_s"]["median"]
    for step in PROFILE_STEPS[profile][1:]:
        entry = ceilings.get(step)
        if entry and entry.get("urls_per_s"):
            bounds[step] = entry["urls_per_s"]["median"]
    if len(bounds) < len(PROFILE_STEPS[profile]):
        return None, None
    step = min(bounds, key=lambda s: bounds[s])
    return bounds[step], step


def expected_success_rate(paths: Sequence[str], error_rate: float) -> float:
    """The share of URLs the server answers with a page: all but those it always fails (deterministic per URL)."""
    if str(SERVER_SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SERVER_SCRIPT.parent))
    from bench_server import error_status

    failing = sum(1 for path in paths if error_status(path, error_rate) is not None)
    return 1 - failing / len(paths) if paths else 1.0


def summarize(args: argparse.Namespace, runs: list[RunResult], n_urls: int, expected: float) -> dict[str, Any]:
    ceilings = summarize_ceilings(runs, n_urls)
    by_key: dict[str, list[RunResult]] = {}
    for run in runs:
        if run.variant.is_engine:
            by_key.setdefault(run.variant.key, []).append(run)
    configurations: list[dict[str, Any]] = []
    for key, group in by_key.items():
        variant = group[0].variant
        good = [r for r in group if r.ok and r.duration_s]
        durations = [r.duration_s for r in good if r.duration_s]
        fetch_ms = [ms for r in good for ms in r.records.get("_fetch_ms", [])]
        process = [r.records["avg_process_ms"] for r in good if r.records.get("avg_process_ms") is not None]
        ceiling, bottleneck = profile_ceiling(ceilings, variant.profile, variant.concurrency)
        bound = ceilings.get("cpu_bound")
        bound_s = bound["duration_s"]["median"] if bound and variant.profile == "full" else None
        durations_median = statistics.median(durations) if durations else None
        throughput = _scaled(_spread(durations), n_urls)
        notes = sorted({note for r in group for note in r.notes})
        history = next((h for r in good if (h := _concurrency_history(r.engine_stats))), None)
        record_errors: dict[str, int] = {}
        for r in good:
            for kind, count in r.records.get("errors", {}).items():
                record_errors[kind] = record_errors.get(kind, 0) + count
        configurations.append(
            {
                "key": key,
                "engine": variant.kind,
                "profile": variant.profile,
                "concurrency": variant.concurrency,
                "runs": len(group),
                "failed_runs": len(group) - len(good),
                "duration_s": _spread(durations),
                "wall_s": _spread([r.wall_s for r in good]),
                "throughput_urls_per_s": throughput,
                "speedup_vs_scrapy": None,
                "ceiling_urls_per_s": ceiling,
                "ceiling_step": bottleneck,
                "efficiency": throughput["median"] / ceiling if throughput and ceiling else None,
                "cpu_bound_s": bound_s,
                "cpu_bound_ratio": bound_s / durations_median if bound_s and durations_median else None,
                **(bound_figures(good, bound) if variant.profile == "full" else {}),
                "cpu_s": _median_of(good, "cpu_s"),
                "server_cpu_s": _median_of(good, "server_cpu_s"),
                "main_cpu_s": _median_of(good, "main_cpu_s"),
                "idle_s": _median_of(good, "idle_s"),
                "steal_s": _median_of(good, "steal_s"),
                "nlp_compute_cpu_s": _median_stat(good, "nlp_compute_cpu_s"),
                "nlp_compute_s": _median_stat(good, "nlp_compute_s"),
                "nlp_cache": _cache_figures(good),
                "success_rate": statistics.median(r.records.get("success_rate", 0) for r in good) if good else 0.0,
                "expected_success_rate": round(expected, 4),
                "record_errors": record_errors,
                "fetch_p50_ms": _r(_percentile(fetch_ms, 0.5), 1),
                "fetch_p95_ms": _r(_percentile(fetch_ms, 0.95), 1),
                "avg_process_ms": _r(statistics.fmean(process), 1) if process else None,
                "peak_rss_mb": _r(statistics.median(r.peak_rss_mb or 0 for r in good), 1) if good else None,
                "peak_rss_mb_max": _r(max((r.peak_rss_mb or 0 for r in good), default=0), 1),
                "server_max_inflight": max((r.server.get("max_inflight", 0) for r in good), default=0),
                "engine_concurrency_history": history,
                "server_inflight_timeline": good[-1].server.get("timeline") if good else None,
                "last_duration_s": good[-1].duration_s if good else None,
                "notes": notes,
                "errors": [r.error for r in group if r.error],
                "per_run": [r.to_dict() | {"records": _public(r.records)} for r in group],
            }
        )
    for conf in configurations:
        twin = next(
            (
                c
                for c in configurations
                if c["engine"] == "scrapy"
                and (c["profile"], c["concurrency"]) == (conf["profile"], conf["concurrency"])
            ),
            None,
        )
        if twin and twin["duration_s"] and conf["duration_s"]:
            conf["speedup_vs_scrapy"] = twin["duration_s"]["median"] / conf["duration_s"]["median"]
    ceiling_runs = [
        {"key": r.variant.key, **r.to_dict(), "records": _public(r.records)} for r in runs if not r.variant.is_engine
    ]
    return {
        "meta": _meta(args, n_urls) | {"expected_success_rate": round(expected, 4)},
        "ceilings": ceilings,
        "configurations": configurations,
        "ceiling_runs": ceiling_runs,
    }


def _cache_figures(runs: Sequence[RunResult]) -> dict[str, Any] | None:
    """The NLP cache's hits and misses in the engines' own stats (last run), when the run analyzed anything."""
    for run in reversed(runs):
        stats = run.engine_stats
        if "nlp_cache_misses" in stats or "nlp_cache_hits" in stats:
            return {k: stats.get(k, 0) for k in ("nlp_cache_hits", "nlp_cache_misses")}
    return None


def _public(records: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in records.items() if not k.startswith("_")}


def _meta(args: argparse.Namespace, n_urls: int) -> dict[str, Any]:
    import psutil

    return {
        "tool": "tools/benchmark_enrichment.py",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "urls": n_urls,
        "runs": args.runs,
        "engines": args.engines,
        "profiles": args.profile,
        "concurrency": args.concurrency,
        "source": str(args.corpus) if args.corpus is not None else f"generated pages of {args.page_bytes} bytes",
        "latency_ms": args.latency_ms,
        "error_rate": args.error_rate,
        "aimd": args.aimd,
        "extract_workers": args.extract_workers,
        "extract_executor": args.extract_executor,
        "nlp_executor": args.nlp_executor,
        "nlp_workers": args.nlp_workers,
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }


# --------------------------------------------------------------------------------------------------------------
# output


def _fmt(value: float | None, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _fmt_spread(spread: dict[str, float] | None, spec: str = ".1f") -> str:
    if spread is None:
        return "-"
    return f"{spread['median']:{spec}} [{spread['min']:{spec}}-{spread['max']:{spec}}]"


def render_table(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        f"{meta['urls']} URLs x {meta['runs']} run(s), {meta['source']}, latency {meta['latency_ms']} ms, "
        f"errors {meta['error_rate']:.0%}, {meta['machine']['cpus']} CPUs, "
        f"load at start {meta['machine']['load_avg_at_start']}",
        "",
    ]
    header = (
        f"{'configuration':<30} {'duration s med [min-max]':<24} {'URLs/s med [min-max]':<24} {'vs scrapy':>9} "
        f"{'ceiling':>13} {'eff.':>6} {'CPU bnd':>7} {'success':>8} {'fetch p50/p95 ms':>17} {'proc ms':>8} "
        f"{'RSS MB':>7}"
    )
    lines += [header, "-" * len(header)]
    for c in report["configurations"]:
        speed = f"{c['speedup_vs_scrapy']:.2f}x" if c["speedup_vs_scrapy"] else "-"
        eff = f"{c['efficiency']:.0%}" if c["efficiency"] else "-"
        ceiling = f"{c['ceiling_urls_per_s']:.4g} {c['ceiling_step']}" if c["ceiling_urls_per_s"] else "-"
        fetch = f"{_fmt(c['fetch_p50_ms'], '.0f')}/{_fmt(c['fetch_p95_ms'], '.0f')}"
        bound = f"{c['cpu_bound_ratio']:.0%}" if c.get("cpu_bound_ratio") else "-"
        lines.append(
            f"{c['key']:<30} {_fmt_spread(c['duration_s'], '.2f'):<24} {_fmt_spread(c['throughput_urls_per_s']):<24} "
            f"{speed:>9} {ceiling:>13} {eff:>6} {bound:>7} {c['success_rate']:>8.1%} {fetch:>17} "
            f"{_fmt(c['avg_process_ms'], '.0f'):>8} {_fmt(c['peak_rss_mb'], '.0f'):>7}"
        )
        lines.extend(_cpu_lines(c, report["meta"]["machine"]["cpus"], report["ceilings"].get("cpu_bound")))
        if c["failed_runs"]:
            lines.append(f"    ! {c['failed_runs']} run(s) failed: {c['errors'][0].splitlines()[0]}")
        if c["efficiency"] and c["efficiency"] > 1.05:
            why = "other load slowed the ceiling runs (use more --runs)"
            if c["ceiling_step"] == "nlp":
                why += ", or too few texts to fill every NLP worker's batches (use more --urls)"
            lines.append(f"    ! above its ceiling: {why}")
        if c["success_rate"] < c["expected_success_rate"]:
            top = ", ".join(f"{kind} x{n}" for kind, n in sorted(c["record_errors"].items(), key=lambda kv: -kv[1])[:3])
            lines.append(
                f"    ! success {c['success_rate']:.1%} is below the {c['expected_success_rate']:.1%} the server "
                f"allows: {top}"
            )
    ceil = report["ceilings"]
    lines += ["", "Ceilings (median [min-max]):"]
    for conc, entry in sorted(ceil.get("fetch", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"  fetch, plain aiohttp, c={conc:<5} {_fmt_spread(entry['urls_per_s'])} URLs/s, "
            f"success {entry['success_rate']:.1%}, p50/p95 {entry['fetch_p50_ms']:.0f}/{entry['fetch_p95_ms']:.0f} ms, "
            f"RSS {entry['peak_rss_mb']:.0f} MB"
        )
    if "extract" in ceil:
        e = ceil["extract"]
        lines.append(
            f"  extraction alone, {e['workers']} thread(s): {_fmt_spread(e['urls_per_s'])} URLs/s "
            f"({_fmt_spread(e['pages_per_s'])} pages/s over {e['pages']} pages, {_fmt_spread(e['mb_per_s'])} MB/s)"
            + (f" ! {e['errors']} page(s) failed extraction" if e.get("errors") else "")
        )
    if "nlp" in ceil:
        n = ceil["nlp"]
        lines.append(
            f"  NLP stage alone ({n.get('backend', 'spacy')} {n.get('model', '')}), {n['workers']} {n['executor']} "
            f"worker(s), batch {n['batch_size']}: "
            f"{_fmt_spread(n['words_per_s'], '.0f')} words/s, {_fmt_spread(n['pages_per_s'])} pages/s, "
            f"{_fmt_spread(n['urls_per_s'])} URLs/s (model load {n['open_s']:.1f} s, not counted)"
        )
    if "naive_nlp" in ceil:
        n = ceil["naive_nlp"]
        texts = "the NLP stage's texts" if n.get("same_texts") else f"{n['texts']} of the NLP stage's texts"
        speedup = f"; the NLP stage is {n['stage_speedup']:.2f}x faster" if n.get("stage_speedup") else ""
        lines.append(
            f"  naive NLP (full pipeline {'+'.join(n['pipeline'])}, 1 thread, nlp() per page, {texts}): "
            f"{_fmt_spread(n['words_per_s'], '.0f')} words/s, {_fmt_spread(n['pages_per_s'])} pages/s{speedup}"
        )
    bound = ceil.get("cpu_bound")
    if bound:
        load = bound.get("model_load_cpu_s")
        lines.append(
            f"  CPU bound of the full profile: (NLP {bound['nlp_cpu_s']:.1f} CPU-s + extraction "
            f"{bound['extract_cpu_s']:.1f} CPU-s) / {bound['cores']} cores = "
            f"{_fmt_spread(bound['duration_s'], '.2f')} s"
            + (f" (starting the NLP workers, left out: {load:.1f} CPU-s)" if load is not None else "")
        )
    notes = sorted({note for c in report["configurations"] for note in c["notes"]}) + ceil.get("notes", [])
    if notes:
        lines += ["", "Notes:", *(f"  - {note}" for note in notes)]
    return "\n".join(lines)


def _cpu_lines(conf: dict[str, Any], cores: int, bound: dict[str, Any] | None = None) -> list[str]:
    """Where a full-profile run's core-seconds went, against its CPU bound: the engine's process tree, the server,
    the cores' idle time, and the rest (other processes on a shared machine). The run's wall time covers process
    start-up too, so these add up to a little more than duration x cores."""
    if not conf.get("cpu_bound_s") or conf.get("cpu_s") is None or not conf["duration_s"]:
        return []
    core_s = conf["duration_s"]["median"] * cores
    engine, server, idle = conf["cpu_s"], conf.get("server_cpu_s") or 0.0, conf.get("idle_s")
    cache = conf.get("nlp_cache") or {}
    hits = f"; NLP cache {cache['nlp_cache_hits']} hit(s) / {cache['nlp_cache_misses']} miss(es)" if cache else ""
    steal = f", stolen by the hypervisor {conf['steal_s']:.1f}" if conf.get("steal_s") is not None else ""
    rest = (
        f"idle {idle:.1f}, other processes {max(core_s - engine - server - idle, 0):.1f}{steal}"
        if idle is not None
        else ""
    )
    load = (bound or {}).get("model_load_cpu_s")
    extra = engine - conf["cpu_bound_s"] * cores
    overhead = (
        f"    engine CPU over the bound's: {extra:.1f} CPU-s, of which starting the NLP workers (fork server, imports, "
        f"model load; the NLP ceiling's) {load:.1f}"
        if load is not None
        else ""
    )
    main = conf.get("main_cpu_s") or 0.0
    batches = (
        f"    child processes (NLP workers) {engine - main:.1f} CPU-s; NLP batches, as the workers measured them: "
        f"{conf['nlp_compute_cpu_s']:.1f} CPU-s in {conf['nlp_compute_s']:.1f} s"
        if conf.get("nlp_compute_cpu_s") is not None and conf.get("nlp_compute_s") is not None
        else ""
    )
    paired = conf.get("cpu_bound_ratio_by_round") or []
    work = conf.get("work_bound_ratios") or []
    rounds = (
        f"    each run against its own round's bound: {', '.join(f'{x:.0%}' for x in paired)}"
        + (
            f"; against the work it did itself (its NLP batches' and extractions' CPU-s / cores): "
            f"{', '.join(f'{x:.0%}' for x in work)} (that work over the round's ceilings' CPU-s: "
            f"{', '.join(f'{x:.2f}' for x in conf.get('work_vs_ceiling') or [])})"
            if work
            else ""
        )
        if paired
        else ""
    )
    return [
        f"    CPU bound {conf['cpu_bound_s']:.2f} s ({conf['cpu_bound_s'] * cores:.1f} CPU-s); of {core_s:.1f} "
        f"core-s: engine {engine:.1f} CPU-s (its own process {conf.get('main_cpu_s') or 0:.1f}; the bound's CPU is "
        f"{conf['cpu_bound_s'] * cores / engine:.0%} of it), "
        f"server {server:.1f}, {rest}{hits}",
        *([overhead] if overhead else []),
        *([batches] if batches else []),
        *([rounds] if rounds else []),
    ]


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Throughput against concurrency (with the fetch ceiling), and concurrency over time per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = [p for p in PROFILES if any(c["profile"] == p for c in report["configurations"])] or ["full"]
    fig = plt.figure(figsize=(14, max(5.0, 3.2 * len(profiles))))
    grid = fig.add_gridspec(len(profiles), 2)
    left = fig.add_subplot(grid[:, 0])
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in report["configurations"]:
        groups.setdefault(f"{c['engine']}/{c['profile']}", []).append(c)
    for label, confs in sorted(groups.items()):
        confs = sorted((c for c in confs if c["throughput_urls_per_s"]), key=lambda c: c["concurrency"])
        if not confs:
            continue
        xs = [c["concurrency"] for c in confs]
        med = [c["throughput_urls_per_s"]["median"] for c in confs]
        lo = [m - c["throughput_urls_per_s"]["min"] for m, c in zip(med, confs, strict=True)]
        hi = [c["throughput_urls_per_s"]["max"] - m for m, c in zip(med, confs, strict=True)]
        left.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=label)
    fetch = sorted(report["ceilings"].get("fetch", {}).items(), key=lambda kv: int(kv[0]))
    if fetch:
        left.plot(
            [int(k) for k, _ in fetch],
            [v["urls_per_s"]["median"] for _, v in fetch],
            "k--",
            marker="s",
            label="fetch ceiling (plain aiohttp)",
        )
    for step in ("extract", "nlp"):
        entry = report["ceilings"].get(step)
        if entry and entry.get("urls_per_s"):
            left.axhline(entry["urls_per_s"]["median"], linestyle=":", color="grey")
            left.annotate(f"{step} ceiling", (0.01, entry["urls_per_s"]["median"]), xycoords=("axes fraction", "data"))
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    left.set_xscale("log")
    left.set_yscale("log")
    concurrencies = sorted({c["concurrency"] for c in report["configurations"]})
    left.set_xticks(concurrencies, [str(c) for c in concurrencies])
    left.xaxis.set_minor_formatter(NullFormatter())
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.set_xlabel("concurrency")
    left.set_ylabel("URLs/s (median, bars: min-max)")
    left.set_title("Throughput against concurrency")
    left.legend(fontsize="small")
    left.grid(True, which="both", alpha=0.3)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    series = sorted({(c["engine"], c["concurrency"]) for c in report["configurations"]})
    color_of = {key: colors[i % len(colors)] for i, key in enumerate(series)}
    for row, profile in enumerate(profiles):
        right = fig.add_subplot(grid[row, 1])
        for c in report["configurations"]:
            if c["profile"] != profile:
                continue
            color = color_of[(c["engine"], c["concurrency"])]
            label = f"{c['engine']} c={c['concurrency']}"
            timeline = c.get("server_inflight_timeline")
            if timeline:
                t0 = timeline[0][0]
                right.plot([t - t0 for t, _ in timeline], [n for _, n in timeline], color=color, label=label)
            points = _history_points(c.get("engine_concurrency_history"), c.get("last_duration_s"))
            if points:
                right.step(
                    [t for t, _ in points],
                    [v for _, v in points],
                    where="post",
                    color=color,
                    linestyle="--",
                    alpha=0.7,
                    label=f"{label} AIMD limit",
                )
        right.set_ylabel("concurrency")
        right.set_title(f"{profile}: in flight at the server (solid), engine limit (dashed)", fontsize="medium")
        right.legend(fontsize="x-small", loc="upper right")
        right.grid(True, alpha=0.3)
        if row == len(profiles) - 1:
            right.set_xlabel("seconds since the first request (limit: since the run started); last run of each")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _history_points(history: Any, duration_s: float | None) -> list[tuple[float, float]] | None:
    """(t, concurrency) steps from an engine's history ``[[t, value], ...]`` (or dicts with t and concurrency),
    from the first entry, extended to the end of the run."""
    if not isinstance(history, list) or not history:
        return None
    points: list[tuple[float, float]] = []
    for entry in history:
        if isinstance(entry, list | tuple) and len(entry) >= 2:
            points.append((float(entry[0]), float(entry[1])))
        elif isinstance(entry, dict):
            t = next((entry[k] for k in ("t", "time", "elapsed_s", "at") if k in entry), None)
            c = next((entry[k] for k in ("concurrency", "limit", "value") if k in entry), None)
            if t is None or c is None:
                return None
            points.append((float(t), float(c)))
        else:
            return None
    t0 = points[0][0]
    points = [(t - t0, c) for t, c in points]
    if duration_s is not None and duration_s > points[-1][0]:
        points.append((duration_s, points[-1][1]))
    return points


# --------------------------------------------------------------------------------------------------------------
# main


def _csv(kind: type, allowed: Sequence[str] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        if allowed is not None:
            wrong = [v for v in values if v not in allowed]
            if wrong:
                raise argparse.ArgumentTypeError(f"unknown {', '.join(wrong)}; allowed: {', '.join(allowed)}")
        return values

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--urls", type=int, default=100, help="number of URLs (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="rounds over every configuration (default 3)")
    parser.add_argument(
        "--engines",
        type=_csv(str, (*ENGINES, "none")),
        default=list(ENGINES),
        help="async,scrapy (default both); none measures the ceilings only",
    )
    parser.add_argument("--profile", type=_csv(str, PROFILES), default=["full"], help="fetch,extract,full")
    parser.add_argument("--concurrency", type=_csv(int), default=[50], help="one value or a list: 10,50,200")
    source = parser.add_argument_group("pages")
    source.add_argument("--corpus", type=Path, help="folder of real pages (HTML/PDF), cycled; default: generated")
    source.add_argument("--page-bytes", type=int, default=16_384, help="size of generated pages (default 16384)")
    source.add_argument("--latency-ms", type=float, default=0.0, help="simulated server latency per response")
    source.add_argument("--error-rate", type=float, default=0.0, help="fraction of URLs answering 503/429")
    source.add_argument("--retry-after-s", type=float, help="Retry-After sent with the 429s (default none)")
    engine = parser.add_argument_group("engine settings")
    engine.add_argument("--config", type=Path, help="base EnrichConfig YAML (default: built-in defaults)")
    engine.add_argument("--aimd", choices=("on", "off"), default="on", help="per-site congestion control (AIMD)")
    engine.add_argument("--retries", type=int, help="fetch.retries (default: the config's)")
    engine.add_argument("--backoff-base-s", type=float, help="fetch.backoff_base_s (default: the config's)")
    engine.add_argument("--extract-workers", type=int, default=1, help="extraction threads (default 1)")
    engine.add_argument(
        "--extract-executor",
        type=_csv(str, ("thread", "process")),
        help="extract.executor (default: the config's); thread,process runs both layouts in every round, alternated",
    )
    engine.add_argument("--nlp-executor", choices=("thread", "process"), default="thread")
    engine.add_argument("--nlp-workers", type=int, default=1)
    engine.add_argument("--nlp-batch-size", type=int, help="nlp.batch_size (default: the config's)")
    engine.add_argument(
        "--nlp-backend", choices=("spacy", "transformers"), help="nlp.backend, for the runs and the NLP ceiling"
    )
    engine.add_argument("--nlp-model", help="nlp.model (transformers: hub id or local folder)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, help="write the full report as JSON")
    out.add_argument("--plot", type=Path, help="write throughput/concurrency charts (PNG)")
    out.add_argument(
        "--report", type=Path, help="write each engine run's HTML run report (the CLI's --report) into one file"
    )
    out.add_argument("--workdir", type=Path, help="keep run files here (default: a temporary folder)")
    out.add_argument("--keep-outputs", action="store_true", help="keep every run's JSONL output in the workdir")
    out.add_argument(
        "--naive-pages",
        type=int,
        default=0,
        help="texts for the naive NLP figure: 0 (default) all of the NLP stage's, N an even sample of them",
    )
    out.add_argument("--no-ceilings", action="store_true", help="skip the ceilings (no efficiency column)")
    out.add_argument("--timeout-s", type=float, default=3600, help="limit per run")
    out.add_argument("--scrapy-log-level", default="WARNING")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.worker is None:
        if args.urls < 1 or args.runs < 1 or min(args.concurrency) < 1:
            parser.error("--urls, --runs and --concurrency must be positive")
        if not 0 <= args.error_rate <= 1:
            parser.error("--error-rate is a fraction between 0 and 1")
        if args.corpus is not None:
            args.corpus = args.corpus.resolve()
            if not args.corpus.is_dir():
                parser.error(f"--corpus {args.corpus} is not a folder")
        if args.config is not None:
            args.config = args.config.resolve()
    return args


def plan(args: argparse.Namespace) -> list[Variant]:
    """The variants of one round, in the order they run (the same order every round)."""
    variants: list[Variant] = []
    for concurrency in args.concurrency:
        if not args.no_ceilings:
            variants.append(Variant("ceiling-fetch", "-", concurrency))
        layouts = args.extract_executor if args.extract_executor and len(args.extract_executor) > 1 else [""]
        for profile in args.profile:
            for engine in args.engines:
                if engine != "none":
                    variants.extend(
                        Variant(engine, profile, concurrency, layout if profile != "fetch" else "")
                        for layout in dict.fromkeys(layouts if profile != "fetch" else [""])
                    )
    if not args.no_ceilings and any(p != "fetch" for p in args.profile):
        variants.insert(0, Variant("ceiling-cpu", "-", 0))
    return variants


@contextlib.contextmanager
def _workdir(args: argparse.Namespace) -> Iterator[Path]:
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        yield args.workdir.resolve()
    else:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            yield Path(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker_main(args.worker)
        return 0

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    with _workdir(args) as workdir:
        server = BenchServer(args, workdir / "server.log")
        try:
            paths = server.get(f"/__bench/urls?n={args.urls}")
            urls_file = workdir / "urls.txt"
            urls_file.write_text("".join(f"{server.base_url}{p}\n" for p in paths), encoding="utf-8")
            runner = Runner(args, server, workdir, urls_file)
            variants = plan(args)
            say(f"server {server.base_url}, {len(paths)} URLs, {len(variants)} variant(s) x {args.runs} round(s)")
            runs: list[RunResult] = []
            for round_no in range(1, args.runs + 1):
                for variant in variants:
                    run = runner.run(variant, round_no)
                    runs.append(run)
                    status = "ok" if run.ok else "FAILED"
                    rate = f"{runner.n_urls / run.duration_s:.1f} URLs/s" if run.duration_s else ""
                    say(
                        f"[round {round_no}/{args.runs}] {variant.key:<22} {status:<6} "
                        f"{_fmt(run.duration_s, '.2f')} s {rate} (wall {run.wall_s:.1f} s, "
                        f"RSS {_fmt(run.peak_rss_mb, '.0f')} MB)"
                    )
                    if run.error:
                        say(run.error)
            report = summarize(args, runs, runner.n_urls, expected_success_rate(paths, args.error_rate))
        finally:
            server.stop()
    print(render_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        say(f"JSON written to {args.json}")
    if args.plot is not None:
        try:
            write_plot(report, args.plot)
        except ImportError:
            print("--plot needs matplotlib: pip install -e '.[bench]' (or pip install matplotlib)", file=sys.stderr)
            return 2
        say(f"plot written to {args.plot}")
    if args.report is not None:
        write_html_report(runs, args.report, report["ceilings"].get("cpu_bound"))
        say(f"HTML report written to {args.report}")
    failed = sum(c["failed_runs"] for c in report["configurations"])
    return 1 if failed else 0


def write_html_report(runs: Sequence[RunResult], path: Path, bound: dict[str, Any] | None = None) -> None:
    """The engines' own run reports (:mod:`enrich.report`), one section per engine run, from their stats; a full
    profile run's title gives its duration against the CPU bound of its round and against that of its own work
    (:func:`bound_figures`)."""
    from enrich.report import render_reports

    def title(run: RunResult) -> str:
        text = f"{run.variant.key}, round {run.round}"
        if bound is not None and run.variant.profile == "full" and run.duration_s:
            bound_s = bound.get("per_round", {}).get(str(run.round), bound["duration_s"]["median"])
            text += f": {bound_s / run.duration_s:.0%} of the CPU bound ({bound_s:.1f} s in {run.duration_s:.1f} s)"
            work = bound_figures([run], None)["work_bound_ratio"]
            if work is not None:
                text += f", {work:.0%} of the bound of its own work"
        return text

    sections = [(title(run), run.engine_stats) for run in runs if run.variant.is_engine and run.engine_stats]
    path.write_text(render_reports(sections, title="Enrichment benchmark"), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
