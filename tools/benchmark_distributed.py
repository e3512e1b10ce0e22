"""Measure distributed jobs (issue #12): real redis-server, PostgreSQL, workers and a multi-site loopback web.

    python tools/benchmark_distributed.py --scenario all --urls 20000 --report distributed.json
    python tools/benchmark_distributed.py --scenario kill --urls 2000 --kill-engine async

Every scenario starts its own redis-server and PostgreSQL (tests/redis_server.py, tests/postgres_server.py: temp
dirs, stopped in ``finally``) and the web of tools/multisite_web.py in its own process; the workers are
``python -m crawler worker`` processes (each in its own session), killed with their whole tree if anything fails.

``exactly-once``: sites with their own latency, one with a Crawl-delay, one throttled (429 + Retry-After), 404s,
redirects across sites, a refused and an unresolvable site. ``--urls`` URLs enqueued, 4 workers at once (2 async,
2 Scrapy mode), NLP off unless ``--nlp``. Then PostgreSQL must hold every input URL exactly once (rows, missing,
extra), and the server's politeness report no breach (per-site cap ``--per-domain`` for all workers together).

``kill``: the same web, 2 workers (async and Scrapy) with ``--lease-timeout`` 5 s; at ``--kill-at`` (30%) of the URLs
done, once it holds leases, one (``--kill-engine``) is SIGKILLed with its process tree and a replacement of the same
engine started. Still exactly once, nothing missing; reclaimed URLs (stats files; the ``reclaimed ... from worker``
warnings in the logs), the time from the kill to the end, and a timeline (every 2 s: queued, each worker's records
and leases, the site permits each holds in Redis).

``scaling``: a latency-bound web (``--scaling-sites`` sites of 200 ms, no Crawl-delay, no errors), N = 1..4 async
workers of ``--scaling-max-workers`` fetches each, a fresh job and table per N over the same URLs. Throughput from the
first start to the last exit and from the workers' own figures; efficiency = N-worker / (N x 1-worker); CPU seconds
of the workers (wait4 rusage, their Scrapy children included), the web, Redis and PostgreSQL, and the machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import multisite_web as msw
from benchmark_multisite import WebProcess, _env

from tests.postgres_server import postgres_server
from tests.redis_server import redis_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.5


class Worker:
    """One ``python -m crawler worker`` process, in its own session; reaped with ``wait4`` for its CPU use."""

    def __init__(self, ctx: Context, name: str, engine: str, extra: Sequence[str] = ()) -> None:
        self.name, self.engine = name, engine
        self.stats_file = ctx.workdir / f"{ctx.job}.{name}.stats.json"
        self.log_path = ctx.workdir / f"{ctx.job}.{name}.log"
        cmd = [sys.executable, "-m", "crawler", "worker", "--redis", ctx.redis, "--job", ctx.job]
        cmd += ["--postgres", ctx.dsn, "--name", name, "--stats-file", str(self.stats_file)]
        cmd += ["--config", str(ctx.config), "--data-dir", str(ctx.workdir / "data"), "--progress", "off"]
        cmd += [*([] if engine == "async" else ["--no-async-enrichment"]), *ctx.worker_args, *extra]
        self._log: IO[bytes] = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        self.ended: float | None = None
        self.cpu_s: float | None = None
        self.killed = False

    def poll(self) -> bool:
        """True once the process has exited (reaped here, so its rusage is known)."""
        if self.ended is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid == 0:
                return False
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.ended, self.cpu_s = time.monotonic(), usage.ru_utime + usage.ru_stime
            self._log.close()
        return True

    def kill(self) -> None:
        """SIGKILL the worker, its process group and every descendant's group (its Scrapy child has a session of
        its own: killing the worker's group alone leaves it crawling)."""
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            family = []
        self.killed = True
        for pid in [self.proc.pid, *(p.pid for p in family)]:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not self.poll() and time.monotonic() < deadline:
            time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        try:
            figures: dict[str, Any] = json.loads(self.stats_file.read_text(encoding="utf-8"))
            return figures
        except (OSError, ValueError):
            return {}

    def summary(self, t0: float) -> dict[str, Any]:
        stats, log = self.stats(), self.log_path.read_text(encoding="utf-8", errors="replace")
        queue = stats.get("worker") or {k.split("/")[-1]: v for k, v in stats.items() if k.startswith("enrich/worker/")}
        return {
            "name": self.name, "engine": self.engine, "exit_code": self.proc.returncode, "killed": self.killed,
            "start_s": round(self.started - t0, 2), "end_s": round((self.ended or self.started) - t0, 2),
            "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 2), "processed": stats.get("processed"),
            "elapsed_s": stats.get("elapsed_s"), "records_per_s": stats.get("throughput_urls_per_s"),
            "queue": queue or None, "reclaimed_in_log": log.count("reclaimed http"),
            "tail": log[-600:] if self.proc.returncode not in (0,) and not self.killed else "",
        }  # fmt: skip


class Context:
    """The servers of one scenario and what its workers share (job, config)."""

    def __init__(self, redis: str, dsn: str, workdir: Path, args: argparse.Namespace) -> None:
        self.redis, self.dsn, self.workdir, self.args = redis, dsn, workdir, args
        self.job, self.config, self.worker_args = "", workdir / "worker.yml", ["--log-level", "WARNING"]
        self.stalled: dict[str, Any] | None = None
        self.timeline: list[tuple[float, int, dict[str, tuple[int, int]], dict[str, int]]] = []
        """(seconds from the first worker's start, URLs queued, {worker: (records, leased)}, {worker: permits})"""

    def crawler(self, *argv: str, timeout: float = 600) -> str:
        cmd = [sys.executable, "-m", "crawler", *argv]
        done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:1])} exited {done.returncode}: {done.stderr[-1500:]}")
        return done.stdout

    def new_job(self, job: str, urls: Sequence[str], *, max_workers: int, nlp: bool) -> float:
        """Empty the records table, write the workers' config, enqueue ``urls`` as ``job``; returns seconds taken."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS records")
        self.job = job
        enrichment = {"allow_private_addresses": True, "per_domain_limit": self.args.per_domain, "retries": 2,
                      "max_workers": max_workers, "nlp_enabled": nlp, "timeout": 15,
                      "circuit_cooldown": 5.0}  # fmt: skip
        self.config.write_text(yaml.safe_dump({"stages": {"enrichment": enrichment}}), encoding="utf-8")
        self.worker_args = ["--log-level", "WARNING", "--max-workers", str(max_workers), "--nlp" if nlp else "--no-nlp"]
        if self.args.batch_size:
            self.worker_args += ["--batch-size", str(self.args.batch_size)]
        self.stalled, self.timeline = None, []
        urls_file = self.workdir / f"{job}.urls.txt"
        urls_file.write_text("\n".join(urls) + "\n", encoding="utf-8")
        started = time.monotonic()
        self.crawler("enqueue", "--redis", self.redis, "--job", job, "--input", str(urls_file))
        return time.monotonic() - started

    def sample(self, s: Any, t0: float) -> None:
        """Add the live status ``s`` to the timeline, at most every 2 s, with the site permits each worker holds."""
        if not self.timeline or time.monotonic() - t0 - self.timeline[-1][0] >= 2:
            workers = {w.name: (w.records, w.leased) for w in s.workers}
            self.timeline.append((round(time.monotonic() - t0, 1), s.queued, workers, self.permits()))

    def permits(self) -> dict[str, int]:
        """Unexpired per-site permits (enrich/distributed/gate.py) by worker and site."""
        from crawler.distributed import redis_client

        client, held = redis_client(self.redis), dict[str, int]()
        sec, micros = client.time()  # type: ignore[misc]
        now_ms = int(sec) * 1000 + int(micros) // 1000
        for key in client.scan_iter(match=f"webenrich:{{{self.job}}}:site-leases:*", count=1000):
            tokens: Any = client.zrangebyscore(key, now_ms, "+inf")
            for token in tokens:
                where = f"{token.decode().rsplit(':', 1)[0]} {key.decode().rsplit('site-leases:', 1)[1]}"
                held[where] = held.get(where, 0) + 1
        client.close()
        return held

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.crawler("status", "--redis", self.redis, "--job", self.job, "--json"))
        return status

    def live_status(self) -> Any:
        from crawler.distributed import redis_client
        from enrich.distributed import job_status

        client = redis_client(self.redis)
        return lambda: job_status(client, self.job)

    def check(self, urls: Sequence[str]) -> dict[str, Any]:
        """PostgreSQL against the input: rows, distinct URLs, missing, extra, error types."""
        import psycopg

        with psycopg.connect(self.dsn) as db:
            rows = db.execute("SELECT url, error_type FROM records").fetchall()
        got, wanted = {u for u, _ in rows}, set(urls)
        errors: dict[str, int] = {}
        for _, kind in rows:
            errors[kind or "ok"] = errors.get(kind or "ok", 0) + 1
        missing, extra = sorted(wanted - got), sorted(got - wanted)
        return {"input": len(urls), "rows": len(rows), "distinct": len(got), "missing": len(missing),
                "extra": len(extra), "missing_sample": missing[:5], "extra_sample": extra[:5],
                "exactly_once": len(rows) == len(wanted) == len(urls) and not missing and not extra,
                "by_error_type": dict(sorted(errors.items(), key=lambda kv: -kv[1]))}  # fmt: skip


def wait_all(ctx: Context, workers: list[Worker], timeout_s: float) -> str:
    """Wait for every worker to exit: "finished"; on timeout or when the job's count of finished URLs has not
    moved for ``--stall-s`` while workers live, kill them all and say which ("timeout", "stalled")."""
    status, deadline = ctx.live_status(), time.monotonic() + timeout_s
    last, moved, t0 = -1, time.monotonic(), min(w.started for w in workers)
    outcome = "finished"
    while not all(w.poll() for w in workers):
        s = status()
        ctx.sample(s, t0)
        if (count := s.done + s.failed + s.dead_lettered) != last:
            last, moved = count, time.monotonic()
        if time.monotonic() > deadline or time.monotonic() - moved > ctx.args.stall_s:
            outcome = "timeout" if time.monotonic() > deadline else "stalled"
            ctx.stalled = {"outcome": outcome, "status": s.to_dict()}
            for w in workers:
                if not w.poll():
                    w.kill()
            break
        time.sleep(POLL_S)
    return outcome


def listener_cpu(port: int) -> float:
    """CPU seconds of the process listening on ``port``, its live children and its reaped ones."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return tree_cpu(conn.pid)
    return 0.0


def tree_cpu(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return total
    except psutil.Error:
        return 0.0


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@contextlib.contextmanager
def servers(args: argparse.Namespace, specs: Sequence[msw.SiteSpec], tag: str) -> Iterator[tuple[Context, WebProcess]]:
    workdir = args.workdir / tag
    workdir.mkdir(parents=True, exist_ok=True)
    with redis_server() as redis, postgres_server() as dsn, WebProcess(specs, workdir, "web") as web:
        yield Context(redis, dsn, workdir, args), web


# --------------------------------------------------------------------------------------------------------------
# webs


def mixed_specs(n: int) -> list[msw.SiteSpec]:
    """Eight normal sites (5..150 ms) with most URLs, a Crawl-delay site, a throttled one, a refused and an
    unresolvable one; 3% 404s and 2% redirects across sites (one into the Crawl-delay site's disallowed /private/)."""
    dead = max(3, n // 200)
    delayed, throttled = min(max(5, n // 100), 50), min(max(10, n // 100), 150)
    rest = n - delayed - throttled - 2 * dead
    lat = [5, 10, 20, 30, 50, 80, 120, 150]
    specs = [msw.SiteSpec(f"site-{i}", f"127.0.0.{10 + i}", rest // 8 + (i < rest % 8), lat[i]) for i in range(8)]
    return [*specs,
            msw.SiteSpec("delayed", "127.0.0.20", delayed, 30, crawl_delay_s=0.2),
            msw.SiteSpec("throttled", "127.0.0.21", throttled, 20, "throttled", max_rps=10, retry_after_s=1.0,
                         redirect_rate=0),
            msw.SiteSpec("refused", "127.0.0.22", dead, 0, "refused"),
            msw.SiteSpec("unresolvable", "dead.invalid", dead, 0, "unresolvable")]  # fmt: skip


def latency_specs(n: int, sites: int, latency_ms: float) -> list[msw.SiteSpec]:
    return [msw.SiteSpec(f"lat-{i:02d}", f"127.0.1.{10 + i}", n // sites + (i < n % sites), latency_ms,
                         not_found_rate=0, redirect_rate=0) for i in range(sites)]  # fmt: skip


def politeness(web: WebProcess, specs: Sequence[msw.SiteSpec], cap: int) -> dict[str, Any]:
    log = web.log()
    report = msw.politeness_report(log, specs, cap)
    sites = {n: {k: getattr(r, k) for k in ("requests", "peak_in_flight", "min_gap_s", "served_429", "statuses")}
             for n, r in report.sites.items() if r.requests}  # fmt: skip
    close: list[str] = []  # the requests behind a Crawl-delay breach, to say which ones they were
    for spec in (s for s in specs if s.crawl_delay_s > 0):
        starts = sorted((e for e in log if e.site == spec.name and not e.robots), key=lambda e: e.start)
        for a, b in itertools.pairwise(starts):
            if b.start - a.start < spec.crawl_delay_s - 0.02:
                close.append(f"{spec.name}: {a.path} ({a.status}) then {b.path} ({b.status}) {b.start - a.start:.3f} s")
    return {"cap": cap, "breaches": report.breaches, "close_starts": close[:20], "sites": sites}


# --------------------------------------------------------------------------------------------------------------
# scenarios


def exactly_once(args: argparse.Namespace) -> dict[str, Any]:
    specs = mixed_specs(args.urls)
    with servers(args, specs, "exactly-once") as (ctx, web):
        urls = msw.urls(specs, web.port, "shuffled", args.seed)
        enqueue_s = ctx.new_job("exactly-once", urls, max_workers=args.max_workers, nlp=args.nlp)
        web.reset()
        workers: list[Worker] = []
        try:
            t0 = time.monotonic()
            workers = [Worker(ctx, f"w{i + 1}-{e}", e) for i, e in enumerate(("async", "scrapy", "async", "scrapy"))]
            finished = wait_all(ctx, workers, args.timeout_s)
            elapsed = max(w.ended or t0 for w in workers) - t0
        finally:
            for w in workers:
                if not w.poll():
                    w.kill()
        result: dict[str, Any] = {
            "enqueue_s": round(enqueue_s, 2),
            "elapsed_s": round(elapsed, 2),
            "finished": finished,
        }
        result |= {
            "check": ctx.check(urls),
            "status": ctx.status(),
            "politeness": politeness(web, specs, args.per_domain),
            "stalled": ctx.stalled,
            "timeline": ctx.timeline,
        }
        result["records_per_s"] = round(len(urls) / elapsed, 1)
        result["workers"] = [w.summary(t0) for w in workers]
    result["ok"] = (finished == "finished" and result["check"]["exactly_once"] and not result["politeness"]["breaches"]
                    and all(w["exit_code"] == 0 for w in result["workers"]))  # fmt: skip
    return result | {"specs": [asdict(s) for s in specs]}


def kill(args: argparse.Namespace) -> dict[str, Any]:
    specs = mixed_specs(args.urls)
    lease = ["--lease-timeout", str(args.lease_timeout)]
    with servers(args, specs, "kill") as (ctx, web):
        urls = msw.urls(specs, web.port, "shuffled", args.seed)
        ctx.new_job("kill", urls, max_workers=args.max_workers, nlp=args.nlp)
        web.reset()
        status = ctx.live_status()
        workers: list[Worker] = []
        t_kill: float | None = None
        done_at_kill = held_at_kill = 0
        try:
            t0 = time.monotonic()
            workers = [Worker(ctx, "a-async", "async", lease), Worker(ctx, "b-scrapy", "scrapy", lease)]
            victim = next(w for w in workers if w.engine == args.kill_engine)
            deadline = t0 + args.timeout_s
            while t_kill is None and time.monotonic() < deadline and not all(w.poll() for w in workers):
                s = status()
                ctx.sample(s, t0)
                held_at_kill = next((w.leased for w in s.workers if w.name == victim.name), 0)
                # killed holding leases (so they must be reclaimed), once --kill-at of the URLs are done
                if s.done + s.failed + s.dead_lettered >= args.kill_at * len(urls) and held_at_kill:
                    done_at_kill = s.done + s.failed + s.dead_lettered
                    victim.kill()
                    t_kill = time.monotonic()
                    workers.append(Worker(ctx, f"c-{args.kill_engine}-replacement", args.kill_engine, lease))
                time.sleep(0.2)
            finished = wait_all(ctx, workers, max(60.0, deadline - time.monotonic())) if t_kill else "not killed"
            t_end = max(w.ended or t0 for w in workers)
        finally:
            for w in workers:
                if not w.poll():
                    w.kill()
        result: dict[str, Any] = {"killed": victim.name, "finished": finished, "elapsed_s": round(t_end - t0, 2)}
        result |= {"lease_timeout_s": args.lease_timeout, "done_at_kill": done_at_kill, "leased_by_victim_at_kill":
                   held_at_kill, "kill_to_end_s": round(t_end - t_kill, 2) if t_kill else None}  # fmt: skip
        result |= {
            "check": ctx.check(urls),
            "status": ctx.status(),
            "politeness": politeness(web, specs, args.per_domain),
            "stalled": ctx.stalled,
            "timeline": ctx.timeline,
        }
        result["workers"] = [w.summary(t0) for w in workers]
    live = [w for w in result["workers"] if not w["killed"]]
    result["reclaimed"] = {w["name"]: {"stats": (w["queue"] or {}).get("reclaimed"), "log": w["reclaimed_in_log"]}
                           for w in live}  # fmt: skip
    result["ok"] = finished == "finished" and result["check"]["exactly_once"] and all(w["exit_code"] == 0 for w in live)
    return result


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    n_urls = args.scaling_urls or args.urls
    specs = latency_specs(n_urls, args.scaling_sites, args.scaling_latency_ms)
    runs: list[dict[str, Any]] = []
    with servers(args, specs, "scaling") as (ctx, web):
        urls = msw.urls(specs, web.port, "shuffled", args.seed)
        for n in args.scaling_workers:
            ctx.new_job(f"scale-{n}", urls, max_workers=args.scaling_max_workers, nlp=args.nlp)
            web.reset()
            aux: dict[str, Callable[[], float]] = {
                "web": lambda: tree_cpu(web.proc.pid),
                "redis": lambda: listener_cpu(_port(ctx.redis)),
                "postgres": lambda: listener_cpu(_port(ctx.dsn)),
            }
            before = {k: f() for k, f in aux.items()}
            machine = psutil.cpu_times()
            workers: list[Worker] = []
            try:
                t0 = time.monotonic()
                workers = [Worker(ctx, f"w{i + 1}", "async") for i in range(n)]
                finished = wait_all(ctx, workers, args.timeout_s)
                elapsed = max(w.ended or t0 for w in workers) - t0
            finally:
                for w in workers:
                    if not w.poll():
                        w.kill()
            after, m2 = {k: f() for k, f in aux.items()}, psutil.cpu_times()
            busy = sum(getattr(m2, f) - getattr(machine, f) for f in ("user", "system", "nice", "irq", "softirq"))
            check, summaries = ctx.check(urls), [w.summary(t0) for w in workers]
            cpu = {"workers": round(sum(w.cpu_s or 0 for w in workers), 2)}
            cpu |= {k: round(after[k] - before[k], 2) for k in aux}
            own, ours, cpus = sum(w["records_per_s"] or 0 for w in summaries), sum(cpu.values()), os.cpu_count() or 1
            cpu["ours"] = round(ours, 2)  # workers, web, Redis, PostgreSQL: the rest of the machine is not ours
            runs.append({"workers": n, "finished": finished, "elapsed_s": round(elapsed, 2),
                         "records_per_s": round(len(urls) / elapsed, 2), "own_records_per_s": round(own, 2),
                         "cpu_s": cpu | {"machine_busy": round(busy, 2)},
                         "cpu_per_record_ms": round(1000 * ours / len(urls), 3),
                         "cpu_bound_records_per_s": round(cpus * len(urls) / ours, 1) if ours else None,
                         "our_cpu_use": round(ours / (elapsed * cpus), 3),
                         "machine_cpu_use": round(busy / (elapsed * cpus), 3),
                         "records_by_worker": [w["processed"] for w in summaries],
                         "gate_waits": sum((w["queue"] or {}).get("gate_waits", 0) for w in summaries),
                         "check": check, "per_worker": summaries, "stalled": ctx.stalled})  # fmt: skip
            _say(args, f"scaling N={n}: {runs[-1]['records_per_s']} records/s, CPU {cpu}")
        pol = politeness(web, specs, args.per_domain)
    one = next((r for r in runs if r["workers"] == 1), None)
    for r in runs:
        if one:
            r["efficiency"] = round(r["records_per_s"] / (r["workers"] * one["records_per_s"]), 3)
            r["own_efficiency"] = round(r["own_records_per_s"] / (r["workers"] * one["own_records_per_s"]), 3)
    ceiling = min((r["cpu_bound_records_per_s"] or 0 for r in runs), default=0)
    latency_bound = args.scaling_max_workers / (args.scaling_latency_ms / 1000)
    return {"urls": len(urls), "sites": args.scaling_sites, "latency_ms": args.scaling_latency_ms,
            "max_workers_per_worker": args.scaling_max_workers, "one_worker_latency_bound_per_s": latency_bound,
            "cpu_bound_records_per_s": round(ceiling, 1) if ceiling else None,
            "cpu_limit_workers": round(ceiling / latency_bound, 2) if ceiling else None, "runs": runs,
            "politeness_breaches": pol["breaches"],
            "ok": all(r["finished"] == "finished" and r["check"]["exactly_once"] for r in runs)}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# output


def _workers_table(workers: list[dict[str, Any]]) -> list[str]:
    lines = [f"  {'worker':<22} {'engine':<7} {'exit':>4} {'start s':>7} {'end s':>7} {'records':>7} {'rec/s':>7} "
             f"{'CPU s':>6} {'reclaimed':>9}"]  # fmt: skip
    for w in workers:
        rec = (w["queue"] or {}).get("reclaimed", "-")
        lines.append(
            f"  {w['name']:<22} {w['engine']:<7} {'KILL' if w['killed'] else w['exit_code']:>4} {w['start_s']:>7} "
            f"{w['end_s']:>7} {w['processed'] if w['processed'] is not None else '-':>7} "
            f"{w['records_per_s'] or '-':>7} {w['cpu_s'] if w['cpu_s'] is not None else '-':>6} {rec:>9}"
        )
        lines += [f"    ! {line}" for line in w["tail"].splitlines()[-6:]]
    return lines


def _check_line(c: dict[str, Any]) -> str:
    return (f"  PostgreSQL: {c['rows']} rows for {c['input']} input URLs, missing {c['missing']}, extra {c['extra']}:"
            f" {'exactly once' if c['exactly_once'] else 'NOT exactly once'}; {c['by_error_type']}")  # fmt: skip


def _verdict(r: dict[str, Any]) -> str:
    return ("PASS" if r["ok"] else "FAIL") + (
        f" ({r['finished']})" if r.get("finished", "finished") != "finished" else ""
    )


def _stall(r: dict[str, Any]) -> list[str]:
    if not (x := r.get("stalled")):
        return []
    held = {w["name"]: w["leased"] for w in x["status"]["workers"] if w["leased"]}
    st = x["status"]
    return [f"  ! workers killed ({x['outcome']}): queued {st['queued']}, leased {st['leased']} {held}, "
            f"done {st['done'] + st['failed'] + st['dead_lettered']} of {st['enqueued']}"]  # fmt: skip


def render(report: dict[str, Any]) -> str:
    lines = [
        f"commit {report['commit']}; {report['cpus']} CPUs, load {report['load_avg']:.2f}; "
        f"per-site cap {report['per_domain']}; NLP {'on' if report['nlp'] else 'off'}"
    ]
    if r := report.get("exactly-once"):
        lines += [
            "",
            f"exactly-once: {r['check']['input']} URLs, 4 workers: {r['elapsed_s']} s, "
            f"{r['records_per_s']} records/s (enqueue {r['enqueue_s']} s): {_verdict(r)}",
        ]
        lines += [*_stall(r), _check_line(r["check"]), *_workers_table(r["workers"])]
        status = r["status"]
        lines.append(f"  status: done {status['done']}, failed {status['failed']}, dead {status['dead_lettered']}; "
                     + ", ".join(f"{w['name']} {w['records']}" for w in status["workers"]))  # fmt: skip
        lines.append(f"  politeness at the server: {len(r['politeness']['breaches'])} breaches")
        lines += [f"    ! {b}" for b in r["politeness"]["breaches"] + r["politeness"]["close_starts"]]
    if r := report.get("kill"):
        lines += ["", f"kill: {r['killed']} SIGKILLed at {r['done_at_kill']} done (holding "
                  f"{r['leased_by_victim_at_kill']} leases, timeout {r['lease_timeout_s']} s); kill to end "
                  f"{r['kill_to_end_s']} s, total {r['elapsed_s']} s: {_verdict(r)}"]  # fmt: skip
        lines += [*_stall(r), _check_line(r["check"]), *_workers_table(r["workers"])]
        lines.append(f"  reclaimed (stats / log warnings): {r['reclaimed']}")
        lines.append(f"  politeness at the server: {len(r['politeness']['breaches'])} breaches")
        lines += [f"    ! {b}" for b in r["politeness"]["breaches"] + r["politeness"]["close_starts"]]
    if r := report.get("scaling"):
        lines += ["", f"scaling: {r['urls']} URLs on {r['sites']} sites of {r['latency_ms']:g} ms, "
                  f"{r['max_workers_per_worker']} fetches per worker (latency bound "
                  f"{r['one_worker_latency_bound_per_s']:.0f}/s per worker): "
                  f"{_verdict(r)}"]  # fmt: skip
        head = (f"  {'N':>2} {'wall s':>6} {'rec/s':>6} {'eff':>5} {'own r/s':>7} {'own eff':>7} {'CPU s: wrk':>10} "
                f"{'web':>4} {'redis':>5} {'pg':>4} {'ms/rec':>6} {'our use':>7} {'machine':>7} {'gate waits':>10}  "
                f"records by worker")  # fmt: skip
        lines.append(head)
        for x in r["runs"]:
            c = x["cpu_s"]
            lines.append(
                f"  {x['workers']:>2} {x['elapsed_s']:>6.1f} {x['records_per_s']:>6.1f} {x.get('efficiency', 0):>5.0%} "
                f"{x['own_records_per_s']:>7.1f} {x.get('own_efficiency', 0):>7.0%} {c['workers']:>10.1f} "
                f"{c['web']:>4.1f} {c['redis']:>5.1f} {c['postgres']:>4.1f} {x['cpu_per_record_ms']:>6.2f} "
                f"{x['our_cpu_use']:>7.0%} {x['machine_cpu_use']:>7.0%} {x['gate_waits']:>10}  {x['records_by_worker']}"
            )
            lines += _stall(x)
        lines.append(f"  CPU ceiling: {report['cpus']} CPUs / CPU per record of our processes (workers, web, Redis, "
                     f"PostgreSQL; worst run) = {r['cpu_bound_records_per_s']} records/s = "
                     f"{r['cpu_limit_workers']} latency-bound workers ('machine': all the machine's CPU)")  # fmt: skip
        lines += [f"  ! not exactly once: N={x['workers']}" for x in r["runs"] if not x["check"]["exactly_once"]]
        lines += [f"    ! {b}" for b in r["politeness_breaches"]]
    return "\n".join(lines)


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("exactly-once", "kill", "scaling", "all"), default="all")
    parser.add_argument("--urls", type=int, default=20000, help="URLs per scenario (default 20000)")
    parser.add_argument("--nlp", action="store_true", help="run the NLP stage in the workers (default: off)")
    parser.add_argument(
        "--max-workers", type=int, default=32, help="concurrent fetches per worker (exactly-once, kill)"
    )
    parser.add_argument("--per-domain", type=int, default=8, help="per-site cap over all workers (default 8)")
    parser.add_argument("--lease-timeout", type=float, default=5.0, help="kill: workers' --lease-timeout (default 5)")
    parser.add_argument("--kill-at", type=float, default=0.3, help="kill: share of URLs done at the kill (0.3)")
    parser.add_argument("--kill-engine", choices=("async", "scrapy"), default="scrapy", help="kill: which worker")
    parser.add_argument("--scaling-urls", type=int, default=0, help="scaling: URLs per run (default: --urls)")
    parser.add_argument("--scaling-workers", default="1,2,3,4", help="scaling: worker counts (default 1,2,3,4)")
    parser.add_argument("--scaling-sites", type=int, default=16, help="scaling: sites (default 16)")
    parser.add_argument("--scaling-latency-ms", type=float, default=200.0, help="scaling: latency (default 200)")
    parser.add_argument("--scaling-max-workers", type=int, default=16, help="scaling: fetches per worker (16)")
    parser.add_argument("--batch-size", type=int, help="workers' --batch-size (records per commit; default: config's)")
    parser.add_argument(
        "--stall-s", type=float, default=120, help="kill the workers when no URL finished for this long"
    )
    parser.add_argument("--seed", type=int, default=1, help="URL order")
    parser.add_argument("--timeout-s", type=float, default=1800, help="limit on each wait for workers (1800)")
    parser.add_argument("--workdir", type=Path, help="keep logs, stats and configs here (default: a temp folder)")
    parser.add_argument("--report", type=Path, help="write the full report as JSON")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    args.scaling_workers = [int(n) for n in args.scaling_workers.split(",") if n]
    if 1 not in args.scaling_workers:
        parser.error("--scaling-workers must include 1 (the baseline)")
    chosen = ("exactly-once", "kill", "scaling") if args.scenario == "all" else (args.scenario,)
    report: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg": os.getloadavg()[0], "per_domain": args.per_domain,
                              "urls": args.urls, "nlp": args.nlp}  # fmt: skip
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run([*git, "status", "--porcelain", "-uno"], capture_output=True, text=True, check=False)
    report["commit"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    runners = {"exactly-once": exactly_once, "kill": kill, "scaling": scaling}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        args.workdir = (args.workdir or Path(tmp)).resolve()
        try:
            for name in chosen:
                _say(args, f"{name}...")
                report[name] = runners[name](args)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            if args.report is not None:
                args.report.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    print(render(report))
    return 0 if all(report[name]["ok"] for name in chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
