"""Measure the engines on a web like the real one: many sites, each with its own limits (tools/multisite_web.py).

    python tools/benchmark_multisite.py --engines async,scrapy --sites 12 --pages 75 --json multisite.json
    python tools/benchmark_multisite.py --scenario deadlinks --urls 2000 --json deadlinks.json

``multisite``: the web runs in its own process; the URL list is written grouped by site and shuffled; every
engine runs once per order (and ``--runs``) in a fresh process, NLP off, with one config (per-domain 8, max
concurrency 50, retries 2; adaptive control at each engine's defaults). Per run: the engine's own duration
(``elapsed_s`` of its stats), the lower bound of tools/multisite_web.py and bound/duration, one record per input URL
(missing, duplicated, unexpected), errors by type, and the politeness the server saw (log cleared before each run).

``deadlinks``: one host (20 ms) where 5% of the URLs fail for good (2% 404, 2% 500, 1% on ``.invalid`` hosts):
the engine against plain aiohttp with a semaphore of the same concurrency (benchmark_enrichment's fetch ceiling;
per-domain limit = concurrency so the one host is not held at 8). Pace ratio: aiohttp's time over the engine's,
whole run and to 95% of the URLs answered (retries of the 500s make the tail). Extraction runs in the engine and
not in aiohttp, so a control run of the engine over as many healthy URLs gives what the dead links themselves
cost. Then a variant: host A answers 429 + ``Retry-After: 2`` to ~5% of requests, host B serves normally
(per-domain ``--per-domain``): requests/s at each host per time window; B should not slow down with A.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multisite_web as msw

if TYPE_CHECKING:
    from collections.abc import Sequence

ROOT = Path(__file__).resolve().parents[1]
WEB_SCRIPT = Path(__file__).with_name("multisite_web.py")
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}


class WebProcess:
    """``multisite_web.py serve`` in a child process; stopped on exit, failure or Ctrl-C (use ``with``)."""

    def __init__(self, specs: Sequence[msw.SiteSpec], workdir: Path, tag: str) -> None:
        self.specs = list(specs)
        spec_path = workdir / f"{tag}.spec.json"
        spec_path.write_text(json.dumps([asdict(s) for s in specs]), encoding="utf-8")
        self._err: IO[bytes] = (workdir / f"{tag}.server.log").open("wb")
        cmd = [sys.executable, str(WEB_SCRIPT), "serve", "--spec", str(spec_path)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, cwd=ROOT)
        try:
            assert self.proc.stdout is not None
            ready = json.loads(self.proc.stdout.readline().decode())
        except ValueError:
            self.stop()
            raise RuntimeError(f"the web did not start; see {workdir / f'{tag}.server.log'}") from None
        except BaseException:
            self.stop()
            raise
        self.port: int = ready["port"]
        self.control: str = ready["control"]
        if ready["not_refusing"]:
            print(f"warning: refused sites accept connections: {ready['not_refusing']}", file=sys.stderr)

    def __enter__(self) -> WebProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _get(self, path: str) -> Any:
        with _LOCAL.open(self.control + path, timeout=60) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self._get("/__reset")

    def log(self) -> list[msw.LogEntry]:
        return [msw.LogEntry(**entry) for entry in self._get("/__log")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


# --------------------------------------------------------------------------------------------------------------
# one engine run


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def engine_command(engine: str, urls_file: Path, out: Path, stats: Path, args: argparse.Namespace) -> list[str]:
    """The command of one run; both engines get the same EnrichConfig (async through its env-file keys)."""
    import yaml

    c, per_domain, retries = args.concurrency, args.per_domain, args.retries
    config = {
        "fetch": {"max_concurrency": c, "per_host_limit": per_domain, "retries": retries},
        "politeness": {"per_domain_concurrency": per_domain},
        "nlp": {"enabled": False},
        "output": {"path": str(out)},
    }
    if args.profile == "fetch" and engine == "async":
        cfg = out.with_suffix(".enrich.yml")
        cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
        return [sys.executable, __file__, "--worker-async-fetch", str(urls_file), str(stats), str(cfg)]
    if engine == "async":
        enrichment = {"max_workers": c, "per_domain_limit": per_domain, "per_host_limit": per_domain}
        enrichment |= {"retries": retries, "nlp_enabled": False}
        cfg = out.with_suffix(".env.yml")
        cfg.write_text(yaml.safe_dump({"stages": {"enrichment": enrichment}}), encoding="utf-8")
        cmd = [sys.executable, "-m", "crawler", "--env", "development", "--data-dir", str(out.parent / "data")]
        cmd += ["--stage", "3", "--input", str(urls_file), "--output", str(out), "--no-nlp", "--config", str(cfg)]
        return [*cmd, "--stats-file", str(stats), "--progress", "off", "--log-level", "WARNING"]
    cfg = out.with_suffix(".enrich.yml")
    cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
    scrapy = Path(sys.executable).with_name("scrapy")
    cmd = [str(scrapy)] if scrapy.exists() else [sys.executable, "-m", "scrapy"]
    cmd += ["crawl", "enrich", "-L", "WARNING", "-a", f"input={urls_file}", "-a", f"output={out}", "-a", "nlp=off"]
    cmd += ["-a", f"config={cfg}", "-a", f"stats_file={stats}"]
    if args.profile == "fetch":  # no extraction: the sink pipeline alone, as benchmark_enrichment's fetch profile
        cmd += ["-s", 'ITEM_PIPELINES={"crawler.scrapy_mode.pipelines.SinkPipeline": 300}']
    return cmd


def run_process(cmd: list[str], log_path: Path, timeout_s: float) -> tuple[int, float]:
    """(exit code, wall seconds); the child is killed on timeout, failure or Ctrl-C."""
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = -9
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return code, time.perf_counter() - started


def check_records(output: Path, input_urls: Sequence[str]) -> dict[str, Any]:
    """Exactly one record per input URL? Counts of missing, duplicated and unexpected URLs; errors by type."""
    seen: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    if output.exists():
        for line in output.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                seen[record["url"]] += 1
                if record.get("error"):
                    errors[record["error"]["type"]] += 1
    wanted = Counter(input_urls)
    return {
        "records": sum(seen.values()),
        "urls": len(input_urls),
        "missing": sum((wanted - seen).values()),
        "duplicates": sum(n - wanted[u] for u, n in seen.items() if u in wanted and n > wanted[u]),
        "unexpected": sum(n for u, n in seen.items() if u not in wanted),
        "errors": dict(errors.most_common()),
        "exact": seen == wanted,
    }


def run_engine(engine: str, urls_file: Path, tag: str, args: argparse.Namespace, web: WebProcess) -> dict[str, Any]:
    out, stats = args.workdir / f"{tag}.jsonl", args.workdir / f"{tag}.stats.json"
    for stale in (out, stats):
        stale.unlink(missing_ok=True)
    web.reset()
    code, wall = run_process(
        engine_command(engine, urls_file, out, stats, args), out.with_suffix(".log"), args.timeout_s
    )
    log = web.log()
    figures = json.loads(stats.read_text(encoding="utf-8")) if stats.exists() else {}
    urls = urls_file.read_text(encoding="utf-8").split()
    result = {"engine": engine, "exit_code": code, "wall_s": wall, "duration_s": figures.get("elapsed_s", wall)}
    result |= {"records": check_records(out, urls), "log": log}
    if code != 0:
        tail = out.with_suffix(".log").read_text(encoding="utf-8", errors="replace")[-1200:]
        result["failure"] = f"exit {code}, log {out.with_suffix('.log')}:\n{tail}"
    return result


# --------------------------------------------------------------------------------------------------------------
# scenarios


def multisite(args: argparse.Namespace) -> dict[str, Any]:
    specs = msw.default_specs(args.sites, args.pages, max_rps=args.max_rps)
    terms = msw.lower_bound_terms(specs, args.per_domain, args.concurrency)
    bound = max(terms.values())
    runs: list[dict[str, Any]] = []
    with WebProcess(specs, args.workdir, "multisite") as web:
        for order in args.orders:
            urls_file = args.workdir / f"urls-{order}.txt"
            urls_file.write_text("\n".join(msw.urls(specs, web.port, order, args.seed)) + "\n", encoding="utf-8")
            for round_no in range(1, args.runs + 1):
                for engine in args.engines:
                    run = run_engine(engine, urls_file, f"{order}-{engine}-r{round_no}", args, web)
                    report = msw.politeness_report(run.pop("log"), specs, args.per_domain)
                    run |= {"order": order, "round": round_no, "bound_s": bound, "politeness": report.to_dict()}
                    ok = run["exit_code"] == 0 and run["duration_s"]
                    run["bound_ratio"] = bound / run["duration_s"] if ok else None
                    runs.append(run)
                    _say(args, f"{order} {engine} r{round_no}: {run['duration_s']:.2f} s, exit {run['exit_code']}")
    meta = {"specs": [asdict(s) for s in specs], "bound_terms_s": terms, "bound_s": bound}
    return {"scenario": "multisite", "meta": meta | _meta(args), "runs": runs}


def deadlinks_specs(n: int, latency_ms: float) -> list[msw.SiteSpec]:
    dead = max(1, round(n * 0.01))
    main = msw.SiteSpec("main", "127.0.0.10", n - dead, latency_ms, not_found_rate=0.02, server_error_rate=0.02)
    specs = [replace(main, redirect_rate=0.0)]
    hosts = min(4, dead)
    return specs + [
        msw.SiteSpec(f"dead-{k}", f"dead-{k}.invalid", dead // hosts + (k < dead % hosts), 0, "unresolvable")
        for k in range(hosts)
    ]


def throttle_specs(n: int, latency_ms: float) -> list[msw.SiteSpec]:
    a = msw.SiteSpec("A-429", "127.0.0.10", n // 2, latency_ms, random_429_rate=0.05, retry_after_s=2.0)
    b = msw.SiteSpec("B-normal", "127.0.0.11", n - n // 2, latency_ms)
    return [replace(spec, not_found_rate=0.0, redirect_rate=0.0) for spec in (a, b)]


def _time_to_share(log: Sequence[msw.LogEntry], share: float) -> float | None:
    """Seconds from the first request until ``share`` of the distinct paths had their first answer."""
    firsts: dict[tuple[str, str], float] = {}
    for e in sorted((e for e in log if not e.robots and e.status != 499), key=lambda e: e.end):
        firsts.setdefault((e.site, e.path), e.end)
    if not firsts:
        return None
    ends = sorted(firsts.values())
    t0 = min(e.start for e in log)
    return ends[max(0, math.ceil(share * len(ends)) - 1)] - t0


def rate_windows(
    log: Sequence[msw.LogEntry], sites: Sequence[str], max_rows: int = 30, window_s: float | None = None
) -> dict[str, Any]:
    """Requests/s per site per window (non-robots starts); by default wide enough for at most ``max_rows``."""
    entries = [e for e in log if not e.robots]
    if not entries:
        return {"window_s": 0.0, "rows": []}
    t0, t1 = min(e.start for e in entries), max(e.start for e in entries)
    width = window_s or max(0.5, math.ceil((t1 - t0) / max_rows * 2) / 2)
    rows = []
    for k in range(int((t1 - t0) // width) + 1):
        lo, hi = t0 + k * width, t0 + (k + 1) * width
        inside = [e for e in entries if lo <= e.start < hi]
        counts = {s: sum(1 for e in inside if e.site == s) / width for s in sites}
        rows.append({"t_s": k * width, **counts, "429s": sum(1 for e in inside if e.status == 429)})
    return {"window_s": width, "rows": rows}


def deadlinks(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": "deadlinks", "meta": _meta(args), "runs": [], "throttle": []}
    specs = deadlinks_specs(args.urls, args.latency_ms)
    wide = argparse.Namespace(**(vars(args) | {"per_domain": args.concurrency}))
    with WebProcess(specs, args.workdir, "deadlinks") as web:
        urls_file = args.workdir / "urls-deadlinks.txt"
        urls_file.write_text("\n".join(msw.urls(specs, web.port, "shuffled", args.seed)) + "\n", encoding="utf-8")
        for round_no in range(1, args.runs + 1):
            web.reset()
            result = args.workdir / f"aiohttp-r{round_no}.json"
            cmd = [sys.executable, __file__, "--worker-aiohttp", str(urls_file), str(result), str(args.concurrency)]
            code, wall = run_process(cmd, result.with_suffix(".log"), args.timeout_s)
            base = json.loads(result.read_text(encoding="utf-8")) if result.exists() else {"duration_s": None}
            log = web.log()
            base |= {"exit_code": code, "wall_s": wall, "t95_s": _time_to_share(log, 0.95)}
            base["windows"] = rate_windows(log, ["main"], window_s=0.5)
            for engine in args.engines:
                run = run_engine(engine, urls_file, f"deadlinks-{engine}-r{round_no}", wide, web)
                log = run.pop("log")
                run |= {"round": round_no, "aiohttp": base, "t95_s": _time_to_share(log, 0.95)}
                run["windows"] = rate_windows(log, ["main"], window_s=0.5)
                run["politeness"] = msw.politeness_report(log, specs, args.concurrency).to_dict()
                run["pace_ratio"] = (base["duration_s"] or 0) / run["duration_s"] if run["duration_s"] else None
                run["pace_ratio_95"] = (base["t95_s"] or 0) / run["t95_s"] if run["t95_s"] else None
                out["runs"].append(run)
                _say(args, f"deadlinks {engine} r{round_no}: {run['duration_s']:.2f} s vs aiohttp {base['duration_s']}")
    # the control: the same number of URLs on the same host, all healthy, so extraction costs the same
    healthy = [replace(specs[0], pages=args.urls, not_found_rate=0.0, server_error_rate=0.0)]
    with WebProcess(healthy, args.workdir, "healthy") as web:
        urls_file = args.workdir / "urls-healthy.txt"
        urls_file.write_text("\n".join(msw.urls(healthy, web.port, "shuffled", args.seed)) + "\n", encoding="utf-8")
        for run in out["runs"]:
            control = run_engine(run["engine"], urls_file, f"healthy-{run['engine']}-r{run['round']}", wide, web)
            run["healthy"] = {k: control[k] for k in ("duration_s", "exit_code")}
            run["healthy"]["t95_s"] = _time_to_share(control["log"], 0.95)
            run["dead_link_cost"] = run["duration_s"] / control["duration_s"] - 1 if control["duration_s"] else None
    if args.throttle_urls > 0:
        specs = throttle_specs(args.throttle_urls, args.latency_ms)
        with WebProcess(specs, args.workdir, "throttle") as web:
            urls_file = args.workdir / "urls-throttle.txt"
            urls_file.write_text("\n".join(msw.urls(specs, web.port, "shuffled", args.seed)) + "\n", encoding="utf-8")
            for engine in args.engines:
                run = run_engine(engine, urls_file, f"throttle-{engine}", args, web)
                log = run.pop("log")
                run["windows"] = rate_windows(log, [s.name for s in specs])
                run["politeness"] = msw.politeness_report(log, specs, args.per_domain).to_dict()
                run["bound_s"] = msw.lower_bound_s(specs[1:], args.per_domain, args.concurrency)
                out["throttle"].append(run)
                _say(args, f"throttle {engine}: {run['duration_s']:.2f} s")
    return out


def worker_async_fetch(urls_file: Path, stats: Path, config_file: Path) -> None:
    """The async engine with no extraction (a sink stage alone), like benchmark_enrichment's fetch profile."""
    import asyncio

    from crawler.async_engine import AsyncEnrichmentProcessor, iter_inputs
    from enrich.config import load_config
    from enrich.sinks import JsonlSink, SinkStage

    config = load_config(config_file)
    sink = SinkStage(sinks=[JsonlSink(path=config.output.path)], batch_size=config.output.batch_size)
    processor = AsyncEnrichmentProcessor.from_config(config, stages=[sink], progress_interval_s=0)
    run = asyncio.run(processor.run(iter_inputs(urls_file)))
    stats.write_text(json.dumps(run.to_dict(), default=str), encoding="utf-8")


def worker_aiohttp(urls_file: Path, result: Path, concurrency: int) -> None:
    """Plain aiohttp, one attempt per URL: benchmark_enrichment's fetch ceiling, imported unchanged."""
    import asyncio
    import importlib

    # imported by name so type checking does not follow it into the engines
    download = importlib.import_module("benchmark_enrichment")._download
    duration, results = asyncio.run(download(urls_file.read_text(encoding="utf-8").split(), concurrency, keep=False))
    statuses = Counter(str(r["status"] or r.get("error")) for r in results)
    result.write_text(json.dumps({"duration_s": duration, "statuses": dict(statuses)}), encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------
# output


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    keep = ("engines", "concurrency", "per_domain", "retries", "runs", "seed")
    return {k: getattr(args, k) for k in keep} | {"cpus": os.cpu_count(), "load_avg": os.getloadavg()[0]}


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in errors.items()) or "-"


def _site_table(report: dict[str, Any], specs: list[dict[str, Any]], t0: float | None) -> list[str]:
    lines = [f"      {'site':<9} {'kind':<10} {'lat ms':>6} {'delay':>5} {'served':>6} {'peak':>4} "
             f"{'min gap':>7} {'short':>5} {'429':>4} {'RA-ign':>6} {'priv':>4} {'done s':>6}  statuses"]  # fmt: skip
    for spec in specs:
        r = report["sites"].get(spec["name"])
        if r is None or spec["kind"] in ("refused", "unresolvable"):
            continue
        gap = f"{r['min_gap_s']:.3f}" if r["min_gap_s"] is not None else "-"
        done = f"{r['last_end'] - t0:.2f}" if r["last_end"] is not None and t0 is not None else "-"
        lines.append(
            f"      {r['name']:<9} {r['kind']:<10} {spec['latency_ms']:>6.0f} {spec['crawl_delay_s']:>5g} "
            f"{r['requests']:>6} {r['peak_in_flight']:>4} {gap:>7} {r['short_gaps']:>5} {r['served_429']:>4} "
            f"{r['retry_after_ignored']:>6} {r['disallowed_fetched']:>4} {done:>6}  {r['statuses']}"
        )
    return lines


def render(report: dict[str, Any]) -> str:
    lines: list[str] = []
    meta = report["meta"]
    head = f"{meta['cpus']} CPUs, load {meta['load_avg']:.2f}; concurrency {meta['concurrency']}, "
    lines.append(head + f"per-domain {meta['per_domain']}, retries {meta['retries']}")
    if report["scenario"] == "multisite":
        lines.append(
            f"lower bound {meta['bound_s']:.2f} s ({max(meta['bound_terms_s'], key=meta['bound_terms_s'].get)})"
        )
        header = (f"{'order':<9} {'engine':<7} {'dur s':>7} {'wall s':>7} {'bound s':>7} {'bound/dur':>9} "
                  f"{'records/URLs':>12} {'miss':>4} {'dup':>4} {'extra':>5} {'breaches':>8}")  # fmt: skip
        lines += ["", header, "-" * len(header)]
        for r in report["runs"]:
            rec, pol = r["records"], r["politeness"]
            ratio = f"{r['bound_ratio']:.0%}" if r["bound_ratio"] else "-"
            lines.append(
                f"{r['order']:<9} {r['engine']:<7} {r['duration_s']:>7.2f} {r['wall_s']:>7.2f} {r['bound_s']:>7.2f} "
                f"{ratio:>9} {rec['records']:>5}/{rec['urls']:<6} {rec['missing']:>4} {rec['duplicates']:>4} "
                f"{rec['unexpected']:>5} {len(pol['breaches']):>8}"
            )
            lines.append(f"    errors: {_errors(rec['errors'])}")
            lines += [f"    ! {b}" for b in pol["breaches"]] + ([f"    ! {r['failure']}"] if "failure" in r else [])
            starts = [s["first_start"] for s in pol["sites"].values() if s["first_start"] is not None]
            lines += _site_table(pol, meta["specs"], min(starts) if starts else None)
        return "\n".join(lines)
    for r in report["runs"]:
        base = r["aiohttp"]
        lines.append(
            f"deadlinks {r['engine']}: {r['duration_s']:.2f} s (95% answered at {r['t95_s']:.2f} s) vs plain aiohttp "
            f"{base['duration_s']:.2f} s ({base['t95_s']:.2f} s): pace {r['pace_ratio']:.0%}, to 95% "
            f"{r['pace_ratio_95']:.0%}; records {r['records']['records']}/{r['records']['urls']}, "
            f"missing {r['records']['missing']}, dup {r['records']['duplicates']}"
        )
        h = r["healthy"]
        lines.append(
            f"    the same URLs all healthy: {h['duration_s']:.2f} s (95% at {h['t95_s']:.2f} s): the dead links "
            f"cost {r['dead_link_cost']:+.0%} of run time"
        )
        lines.append(f"    errors: {_errors(r['records']['errors'])}; aiohttp statuses {base.get('statuses')}")
        for who, rows in ((r["engine"], r["windows"]["rows"]), ("aiohttp", base["windows"]["rows"])):
            lines.append(f"    {who} requests/s at the host, per 0.5 s: " + " ".join(f"{w['main']:.0f}" for w in rows))
        lines += [f"    ! {b}" for b in r["politeness"]["breaches"]]
    for r in report["throttle"]:
        lines.append(f"\n429 variant, {r['engine']}: {r['duration_s']:.2f} s; B alone could take {r['bound_s']:.2f} s")
        lines.append(f"    errors: {_errors(r['records']['errors'])}")
        lines += [f"    ! {b}" for b in r["politeness"]["breaches"]]
        sites = [k for k in r["windows"]["rows"][0] if k not in ("t_s", "429s")] if r["windows"]["rows"] else []
        lines.append(f"    {'t s':>6} " + " ".join(f"{s + ' req/s':>15}" for s in sites) + f" {'429s':>5}")
        for row in r["windows"]["rows"]:
            lines.append(
                f"    {row['t_s']:>6.1f} " + " ".join(f"{row[s]:>15.1f}" for s in sites) + f" {row['429s']:>5}"
            )
    return "\n".join(lines)


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--worker-aiohttp"]:
        worker_aiohttp(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return 0
    if argv is None and sys.argv[1:2] == ["--worker-async-fetch"]:
        worker_async_fetch(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("multisite", "deadlinks"), default="multisite")
    parser.add_argument("--engines", default=None, help="async,scrapy (default: both; deadlinks: async)")
    parser.add_argument("--orders", default="grouped,shuffled", help="multisite URL orders")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--profile",
        choices=("fetch", "extract"),
        default=None,
        help="fetch: no extraction (deadlinks' default, to compare with plain aiohttp); extract: extraction on, NLP "
        "off (multisite's default)",
    )
    parser.add_argument("--sites", type=int, default=12)
    parser.add_argument("--pages", type=int, default=75, help="pages of a normal site (fewer on limited ones)")
    parser.add_argument("--max-rps", type=float, default=4.0, help="the throttled site's requests/s")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--per-domain", type=int, default=8)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--urls", type=int, default=2000, help="deadlinks: URLs")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="deadlinks: latency")
    parser.add_argument("--throttle-urls", type=int, default=400, help="deadlinks' 429 variant: URLs (0: skip)")
    parser.add_argument("--timeout-s", type=float, default=600, help="limit per run")
    parser.add_argument("--workdir", type=Path, help="keep run files here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    default = "async" if args.scenario == "deadlinks" else "async,scrapy"
    if args.profile is None:
        args.profile = "fetch" if args.scenario == "deadlinks" else "extract"
    args.engines = [e for e in (args.engines or default).split(",") if e]
    args.orders = [o for o in args.orders.split(",") if o]
    if set(args.engines) - {"async", "scrapy"} or set(args.orders) - {"grouped", "shuffled"}:
        parser.error("engines: async,scrapy; orders: grouped,shuffled")
    with tempfile.TemporaryDirectory(prefix="multisite-") as tmp:
        args.workdir = (args.workdir or Path(tmp)).resolve()
        args.workdir.mkdir(parents=True, exist_ok=True)
        try:
            report = multisite(args) if args.scenario == "multisite" else deadlinks(args)
        except KeyboardInterrupt:  # the server and the engine run have been stopped on the way out
            print("interrupted", file=sys.stderr)
            return 130
    print(render(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    runs = report["runs"] + report.get("throttle", [])
    return 1 if any(r["exit_code"] != 0 for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
