"""``python -m crawler enqueue | worker | status``: one crawl over many workers, on any number of machines.

* ``enqueue --redis URL --job NAME --input FILE``: streams an input (text, CSV, JSONL, ``-``) into the job's queue,
  1,000 URLs per script call, skipping URLs the job has seen; ``--from-redis-key KEY`` reads a Redis list or set
  instead (scrapy-redis's ``<spider>:start_urls``: URLs or JSON objects with ``url``).
* ``worker --redis URL --job NAME --postgres DSN [--no-async-enrichment] [--lease-timeout S] [--wait]``: takes URLs
  from the queue, fetches and enriches them with either engine, upserts the records, acknowledges them. It exits 0
  when the job has nothing queued and nothing leased (``--wait`` keeps it polling for new work).
* ``status --redis URL --job NAME [--json]``: queued, leased, done, failed, dead-lettered, each worker's pace.

The machinery is :mod:`enrich.distributed`; ``docs/distributed.md`` explains the guarantees and their limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from crawler.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    REPO_ROOT,
    _add_config_group,
    _add_engine_groups,
    _check_args,
    _Interrupt,
    _load_settings,
    _setup_logging,
)
from crawler.observe import (
    add_observe_group,
    check_observe_args,
    finish_metrics,
    scrapy_settings_args,
    start_async_metrics,
    write_report,
)
from crawler.progress import format_summary
from enrich.distributed import WorkQueue, job_status, join_job, worker_name
from enrich.distributed.queue import text_of
from enrich.errors import ConfigError, EnrichError
from enrich.urls import iter_input_lines, json_or_plain_lines, read_urls

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import redis

    from enrich.config import EnrichConfig

__all__ = ["COMMANDS", "main", "redis_client"]

logger = logging.getLogger(__name__)

COMMANDS = ("enqueue", "worker", "status")

DEFAULT_LEASE_TIMEOUT_S = 300.0


def redis_client(url: str) -> redis.Redis:
    """A client for ``url`` (``redis://host:port/db``), checked with a PING so a wrong address fails at once.

    Raises:
        ConfigError: the URL is malformed or nothing answers there.
    """
    import redis as redis_lib

    try:
        client = redis_lib.Redis.from_url(url, socket_connect_timeout=10, health_check_interval=30)
        client.ping()
    except ValueError as exc:
        raise ConfigError(f"--redis {url!r}: {exc} (expected redis://host:port/db)") from exc
    except redis_lib.RedisError as exc:
        raise ConfigError(f"--redis {url}: cannot reach Redis ({exc})") from exc
    return client


def _job_name(value: str) -> str:
    name = value.strip()
    if not name or any(c in name for c in "{}\n\r\t "):
        raise argparse.ArgumentTypeError("a job name must be non-empty, without spaces or braces")
    return name


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def _base_parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"webenrich {command}", description=description)
    parser.add_argument("--redis", required=True, metavar="URL", help="the job's Redis (redis://host:6379/0)")
    parser.add_argument("--job", required=True, type=_job_name, metavar="NAME", help="the job's name")
    return parser


def build_enqueue_parser() -> argparse.ArgumentParser:
    parser = _base_parser("enqueue", "Stream an input's URLs into a distributed job's queue (duplicates skipped).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", "-i", metavar="FILE", help="URL list (text, .csv, .jsonl; '-' for stdin)")
    source.add_argument(
        "--from-redis-key",
        metavar="KEY",
        help='a Redis list or set on the same Redis holding URLs or JSON objects with "url" (and "priority"), '
        "as scrapy-redis producers fill <spider>:start_urls; read, not emptied",
    )
    parser.add_argument("--input-format", choices=("auto", "text", "csv", "jsonl"), default="auto")
    parser.add_argument("--input-column", default="url", metavar="NAME", help="CSV column holding the URL")
    parser.add_argument("--input-field", default="url", metavar="NAME", help="JSONL key holding the URL")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def build_status_parser() -> argparse.ArgumentParser:
    parser = _base_parser("status", "Show a distributed job's queue, results and workers.")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def build_worker_parser() -> argparse.ArgumentParser:
    parser = _base_parser("worker", "Fetch and enrich a distributed job's URLs until the job is done.")
    _add_config_group(parser)
    worker = parser.add_argument_group("worker")
    worker.add_argument(
        "--lease-timeout",
        type=_positive,
        default=DEFAULT_LEASE_TIMEOUT_S,
        metavar="S",
        help="seconds after which a dead worker's URLs are taken over (default 300; renewed while it lives)",
    )
    worker.add_argument(
        "--max-deliveries",
        type=int,
        default=3,
        metavar="N",
        help="workers that may die holding one URL before it is dead-lettered (default 3)",
    )
    worker.add_argument("--wait", action="store_true", help="stay and poll for new work when the job is done")
    worker.add_argument("--name", metavar="NAME", help="this worker's name (default: host-pid)")
    worker.add_argument(
        "--prefetch",
        type=int,
        metavar="N",
        help="URLs taken from the queue ahead of the fetches (default: 2 x --max-workers, at least 20)",
    )
    _add_engine_groups(parser)
    add_observe_group(parser)
    return parser


# --- enqueue and status ---------------------------------------------------------------------------------------------


def run_enqueue(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    args = build_enqueue_parser().parse_args(argv)
    _setup_logging(args.log_level)
    if args.input is not None and args.input != "-" and not Path(args.input).is_file():
        raise ConfigError(f"--input {args.input}: no such file")
    client = redis_client(args.redis)
    queue = WorkQueue(client, args.job)
    started = time.monotonic()
    if args.input is not None:
        lines = iter_input_lines(args.input, fmt=args.input_format, column=args.input_column, field=args.input_field)
    else:
        lines = json_or_plain_lines(redis_values(client, args.from_redis_key))
    queued, duplicates = queue.enqueue(read_urls(lines))
    elapsed = time.monotonic() - started
    print(
        f"job {args.job}: {queued} URLs queued, {duplicates} skipped as already seen, in {elapsed:.1f}s",
        file=out,
    )
    return EXIT_OK


def redis_values(client: redis.Redis, key: str, *, batch: int = 1_000) -> Iterator[str]:
    """The members of a Redis list or set, read in batches (not removed: enqueueing again skips what was seen).

    Raises:
        ConfigError: the key holds neither a list nor a set.
    """
    kind_raw: Any = client.type(key)
    kind = text_of(kind_raw)
    if kind == "list":
        start = 0
        while True:
            chunk: Any = client.lrange(key, start, start + batch - 1)
            if not chunk:
                return
            yield from map(text_of, chunk)
            start += len(chunk)
    elif kind == "set":
        members: Any = client.sscan_iter(key, count=batch)
        yield from map(text_of, members)
    elif kind == "none":
        raise ConfigError(f"--from-redis-key {key}: no such key on this Redis")
    else:
        raise ConfigError(f"--from-redis-key {key}: a Redis {kind}, not a list or a set of URLs")


def run_status(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    args = build_status_parser().parse_args(argv)
    _setup_logging(args.log_level)
    status = job_status(redis_client(args.redis), args.job)
    print(json.dumps(status.to_dict(), indent=2) if args.json else status.render(), file=out)
    return EXIT_OK


# --- worker ---------------------------------------------------------------------------------------------------------


def worker_config(config: EnrichConfig, prefetch: int | None) -> EnrichConfig:
    """A worker reads only a little ahead of its fetches, so the job's URLs spread over its workers."""
    ahead = prefetch if prefetch is not None else max(20, 2 * config.fetch.max_concurrency)
    if ahead < 1:
        raise ConfigError(f"--prefetch must be at least 1 (got {ahead})")
    return config.replace(frontier={"max_pending": ahead, "max_site_pending": max(2, ahead)})


def run_worker(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    args = build_worker_parser().parse_args(argv)
    _setup_logging(args.log_level)
    _check_args(args)
    check_observe_args(args)
    if args.postgres is None and args.output is None:
        raise ConfigError("a worker needs somewhere to write: --postgres DSN (and/or --output FILE)")
    if args.max_deliveries < 1:
        raise ConfigError(f"--max-deliveries must be at least 1 (got {args.max_deliveries})")
    settings = _load_settings(args)
    config = worker_config(settings.enrich, args.prefetch)
    name = args.name or worker_name()
    client = redis_client(args.redis)
    print(
        f"worker {name}: job {args.job} on {args.redis}, engine {'async' if args.async_enrichment else 'scrapy'}",
        file=err,
    )
    if args.async_enrichment:
        figures, interrupted = _run_async_worker(config, client, args, name)
    else:
        figures, interrupted = _run_scrapy_worker(config, args, name)
    status = job_status(client, args.job)
    print(format_summary(figures, title=f"Worker {name}"), file=err)
    print(status.render(), file=err)
    write_report(args, figures, title=f"Worker {name}, job {args.job}")
    if args.stats_file:
        path = Path(args.stats_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _run_async_worker(
    config: EnrichConfig, client: redis.Redis, args: argparse.Namespace, name: str
) -> tuple[dict[str, Any], bool]:
    from crawler.async_engine import AsyncEnrichmentProcessor
    from enrich.pipeline import build_sinks

    feed, gate = join_job(
        client,
        args.job,
        config,
        worker=name,
        lease_timeout_s=args.lease_timeout,
        max_deliveries=args.max_deliveries,
        wait=args.wait,
    )
    interrupt = _Interrupt()

    async def go() -> dict[str, Any]:
        feed.queue.register()
        processor = AsyncEnrichmentProcessor.from_config(
            config,
            sinks=build_sinks(config.output, jsonl=args.output is not None),
            acknowledge=feed.acknowledge,
            gate=gate,
            progress_interval_s=30,
        )
        metrics = start_async_metrics(args, processor)

        def stop() -> None:
            feed.stop()
            processor.stop()

        interrupt.on_first = stop
        task = asyncio.create_task(processor.run(feed.entries()))
        interrupt.on_second = task.cancel
        renew = asyncio.create_task(feed.renew_leases())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupt)
        try:
            stats = await task
        except asyncio.CancelledError:
            stats = processor.stats
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            renew.cancel()
            feed.close()
            finish_metrics(args, metrics)
        return {**stats.to_dict(), "worker": {**feed.stats(), "gate_granted": gate.granted, "gate_waits": gate.refused}}

    return asyncio.run(go()), interrupt.interrupted


def _run_scrapy_worker(config: EnrichConfig, args: argparse.Namespace, name: str) -> tuple[dict[str, Any], bool]:
    """Run ``scrapy crawl enrich`` with the Redis scheduler (:mod:`crawler.scrapy_mode.redis_scheduler`)."""
    if not (REPO_ROOT / "scrapy.cfg").is_file():
        raise ConfigError(f"Scrapy mode needs {REPO_ROOT / 'scrapy.cfg'} (a source checkout); use the async engine")
    with tempfile.TemporaryDirectory(prefix="webenrich-worker-") as tmp_name:
        tmp = Path(tmp_name)
        config_file = tmp / "config.yml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        stats_file = tmp / "stats.json"
        settings = {
            "SCHEDULER": "crawler.scrapy_mode.redis_scheduler.RedisFrontierScheduler",
            "ENRICH_REDIS_URL": args.redis,
            "ENRICH_REDIS_JOB": args.job,
            "ENRICH_WORKER_NAME": name,
            "ENRICH_LEASE_TIMEOUT_S": args.lease_timeout,
            "ENRICH_MAX_DELIVERIES": args.max_deliveries,
            "ENRICH_WORKER_WAIT": args.wait,
            "ENRICH_WORKER_JSONL": args.output is not None,
        }
        command = [sys.executable, "-m", "scrapy", "crawl", "enrich"]
        for key, value in settings.items():
            command += ["-s", f"{key}={value}"]
        command += ["-a", f"config={config_file}", "-a", f"stats_file={stats_file}", *scrapy_settings_args(args)]
        command += ["-L", args.log_level.upper()]
        # its own session (our signal handler forwards one SIGINT per signal), and on Linux it gets SIGTERM if this
        # process dies (kill -9), so no Scrapy crawl goes on under this worker's name after it is gone
        process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True, preexec_fn=_die_with_parent)
        interrupt = _Interrupt()
        interrupt.on_first = interrupt.on_second = lambda: process.send_signal(signal.SIGINT)
        previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            process.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        try:
            figures: dict[str, Any] = json.loads(stats_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            if interrupt.interrupted:
                return {}, True
            raise EnrichError(f"the Scrapy-mode worker exited with status {process.returncode}, no stats") from exc
        if process.returncode not in (0, None) and not interrupt.interrupted:
            raise EnrichError(f"the Scrapy-mode worker exited with status {process.returncode}")
        return figures, interrupt.interrupted


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (``PR_SET_PDEATHSIG``)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(command: str, argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run one of :data:`COMMANDS`; errors are reported by :func:`crawler.cli.main`."""
    runners = {"enqueue": run_enqueue, "worker": run_worker, "status": run_status}
    try:
        return runners[command](argv, out, err)
    except EnrichError:
        raise
    except Exception as exc:
        import redis as redis_lib

        if isinstance(exc, redis_lib.RedisError):
            print(f"webenrich {command}: Redis failed: {exc}", file=err)
            return EXIT_FAILED
        raise
