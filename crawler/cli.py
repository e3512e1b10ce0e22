"""The orchestrator: ``python -m crawler`` (or ``webenrich``) runs discover, prepare and enrich.

::

    python -m crawler --env development --stage 3 --async-enrichment     # enrich stage 2's list, async engine
    python -m crawler --stage all --seeds https://example.org/            # discover, prepare, enrich
    python -m crawler demo                                               # the embedded demo site, end to end

Each stage reads the previous one's output under ``data_dir`` (``data/<env>/`` by default; see
:data:`crawler.env_config.DEFAULT_LAYOUT`) unless ``--input`` says otherwise. Exit status: 0 for a finished run
(failed URLs are counted, not fatal), 1 when ``--max-error-rate`` is exceeded or an engine fails, 2 for a usage or
configuration error (reported before anything is fetched), 130 after Ctrl-C (what was done is flushed first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from crawler.env_config import load_env_settings
from crawler.jobs import add_job_group, job_summary, open_job
from crawler.observe import (
    add_observe_group,
    check_observe_args,
    finish_metrics,
    scrapy_settings_args,
    start_async_metrics,
    write_report,
)
from crawler.progress import JsonlTail, ProgressReporter, format_summary
from enrich.errors import ConfigError, EnrichError
from enrich.prepare import URLPreparer
from enrich.stats import RunStats
from enrich.urls import InputFormat, iter_input_lines, read_urls

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType

    from crawler.env_config import EnvSettings
    from enrich.config import EnrichConfig
    from enrich.state import CrawlState
    from enrich.urls import InputURL

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

logger = logging.getLogger("crawler.cli")

EXIT_OK = 0
EXIT_FAILED = 1
"""``--max-error-rate`` exceeded, or an engine stopped on an error of its own (a sink that cannot write)."""
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what shells report for a command stopped by Ctrl-C."""

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Where ``scrapy.cfg`` and the shipped ``config/`` folder live in a source checkout."""

DEMO_OUTPUT = Path("data/demo/enrichment_output.jsonl")

FLAG_KEYS: dict[str, str] = {
    "max_workers": "stages.enrichment.max_workers",
    "timeout": "stages.enrichment.timeout",
    "retries": "stages.enrichment.retries",
    "per_host_limit": "stages.enrichment.per_host_limit",
    "respect_robots": "stages.enrichment.respect_robots",
    "user_agent": "stages.enrichment.user_agent",
    "adaptive": "stages.enrichment.adaptive.enabled",
    "extract_backend": "stages.enrichment.extract_backend",
    "extract_executor": "stages.enrichment.extract_executor",
    "nlp": "stages.enrichment.nlp_enabled",
    "nlp_backend": "stages.enrichment.nlp_backend",
    "nlp_model": "stages.enrichment.nlp_model",
    "nlp_device": "stages.enrichment.nlp_device",
    "nlp_executor": "stages.enrichment.nlp_executor",
    "nlp_workers": "stages.enrichment.nlp_workers",
    "nlp_batch_size": "stages.enrichment.nlp_batch_size",
    "max_text_chars": "stages.enrichment.max_text_chars",
    "batch_size": "stages.enrichment.batch_size",
    "output": "stages.enrichment.output",
    "sqlite": "stages.enrichment.sqlite_path",
    "postgres": "stages.enrichment.postgres_dsn",
    "warc": "stages.enrichment.warc_dir",
    "contacts": "stages.enrichment.contacts.enabled",
    "max_depth": "stages.discover.max_depth",
    "max_pages": "stages.discover.max_pages",
    "data_dir": "data_dir",
}
"""Command-line flag (argparse ``dest``) -> the YAML key it overrides. Flags win over every file."""


class _Interrupt:
    """Ctrl-C policy: the first one asks the engine to stop taking URLs, the second one aborts."""

    def __init__(self) -> None:
        self.count = 0
        self.on_first: Callable[[], object] = lambda: None
        self.on_second: Callable[[], object] = lambda: None

    def __call__(self, signum: int = signal.SIGINT, frame: FrameType | None = None) -> None:
        self.count += 1
        if self.count == 1:
            print(
                "\ninterrupted: finishing URLs in flight and flushing output (Ctrl-C again to abort)",
                file=sys.stderr,
                flush=True,
            )
            self.on_first()
        else:
            self.on_second()

    @property
    def interrupted(self) -> bool:
        return self.count > 0

    @contextlib.contextmanager
    def handling(self, stop: Callable[[], object], task: asyncio.Task[Any]) -> Iterator[None]:
        """Within the block, SIGINT and SIGTERM (kill, systemd, docker stop) call ``stop`` the first time and cancel
        ``task`` the second; the block runs in the task's loop."""
        self.on_first, self.on_second = stop, task.cancel
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self)
        try:
            yield
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


# --- parsing --------------------------------------------------------------------------------------------------------


def _add_engine_groups(parser: argparse.ArgumentParser) -> None:
    """Options shared by the main command and ``demo``: engine, fetching, NLP, output."""
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--async-enrichment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="async engine (aiohttp, default) or, with --no-async-enrichment, Scrapy mode (scrapy crawl enrich)",
    )
    engine.add_argument(
        "--engine", choices=("async", "scrapy"), help="the engine by name: --engine scrapy is --no-async-enrichment"
    )
    engine.add_argument("--max-workers", type=int, metavar="N", help="maximum concurrent fetches (max_workers)")
    engine.add_argument(
        "--adaptive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-site congestion control (AIMD on 429/503/timeouts/slow answers); --no-adaptive pins each site "
        "at its per-domain limit",
    )

    fetching = parser.add_argument_group("fetching")
    fetching.add_argument("--timeout", type=float, metavar="S", help="seconds per fetch attempt")
    fetching.add_argument("--retries", type=int, metavar="N", help="retries after the first attempt")
    fetching.add_argument("--per-host-limit", type=int, metavar="N", help="connections per host (0: no limit)")
    fetching.add_argument(
        "--respect-robots", action=argparse.BooleanOptionalAction, default=None, help="honour robots.txt"
    )
    fetching.add_argument("--user-agent", metavar="UA", help="User-Agent header")

    extraction = parser.add_argument_group("extraction")
    extraction.add_argument(
        "--extract-backend",
        choices=("trafilatura", "resiliparse"),
        help="HTML main-text extractor: trafilatura (default, more precise) or resiliparse (faster; "
        "pip install 'webenrich[fast]')",
    )
    extraction.add_argument(
        "--extract-executor",
        choices=("thread", "process"),
        help="where pages are extracted: threads of the engine's process (default), or processes (the NLP "
        "stage's workers when it runs in processes, else a pool of their own)",
    )

    nlp = parser.add_argument_group("NLP")
    nlp.add_argument("--nlp", action=argparse.BooleanOptionalAction, default=None, help="run the NLP stage")
    nlp.add_argument(
        "--nlp-backend",
        choices=("spacy", "transformers"),
        help="where entities come from: a spaCy model (default) or a Hugging Face token-classification model "
        "(pip install 'webenrich[transformers]')",
    )
    nlp.add_argument(
        "--nlp-model",
        metavar="NAME",
        help="spaCy: model package or path; transformers: Hugging Face hub id or local folder (default "
        "dslim/bert-base-NER)",
    )
    nlp.add_argument(
        "--nlp-device", choices=("auto", "cpu", "cuda"), help="transformers backend: CUDA if present (auto), or force"
    )
    nlp.add_argument("--nlp-executor", choices=("thread", "process"), help="where the model runs")
    nlp.add_argument("--nlp-workers", type=int, metavar="N", help="NLP worker threads or processes")
    nlp.add_argument("--nlp-batch-size", type=int, metavar="N", help="texts per batch (nlp.pipe call, forward pass)")
    nlp.add_argument("--max-text-chars", type=int, metavar="N", help="characters of a text sent to the model")
    nlp.add_argument(
        "--contacts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="find emails, phone numbers and social profiles on each page and its site's contact/about/team pages",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--output", "-o", metavar="FILE", help="JSONL records ('-' for stdout)")
    output.add_argument("--batch-size", type=int, metavar="N", help="records per output flush")
    output.add_argument("--sqlite", metavar="FILE", help="also write records to this SQLite database")
    output.add_argument(
        "--postgres", metavar="DSN", help="also upsert records into PostgreSQL (postgresql://user@host/db)"
    )
    output.add_argument(
        "--warc",
        metavar="DIR",
        help="also archive every request and response (robots.txt and redirect hops too) as WARC files in DIR",
    )
    output.add_argument("--stats-file", metavar="FILE", help="write the run's figures as JSON")
    output.add_argument(
        "--max-error-rate",
        type=float,
        metavar="R",
        help="exit 1 if more than this fraction (0..1) of URLs failed (default: never)",
    )
    output.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "off"),
        default="auto",
        help="live bar on a terminal, plain lines otherwise (auto, default)",
    )
    output.add_argument(
        "--progress-interval", type=float, default=5.0, metavar="S", help="seconds between plain progress lines"
    )
    output.add_argument("--log-level", default="WARNING", help="logging level (DEBUG, INFO, WARNING...)")


def _add_config_group(parser: argparse.ArgumentParser) -> None:
    config = parser.add_argument_group("configuration")
    config.add_argument(
        "--env", default="development", help="environment: reads config/<ENV>.yml, data under data/<ENV>/"
    )
    config.add_argument(
        "--config",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="extra YAML merged over config/<ENV>.yml (repeatable; later files win)",
    )
    config.add_argument("--data-dir", metavar="DIR", help="folder of the stage files (default: data/<ENV>)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the main command (``demo`` has its own, see :func:`build_demo_parser`)."""
    parser = argparse.ArgumentParser(
        prog="webenrich",
        description="Discover, prepare and enrich web pages: one JSONL record per URL.",
        epilog=(
            "Demo: 'python -m crawler demo [--no-async-enrichment] [--output FILE]' serves the embedded demo "
            "site on loopback and enriches it (see 'python -m crawler demo --help'). Exit status: 0 finished, "
            "1 error rate above --max-error-rate or engine failure, 2 usage/config error, 130 interrupted."
        ),
    )
    _add_config_group(parser)

    stages = parser.add_argument_group("stages")
    stages.add_argument(
        "--stage",
        choices=("1", "2", "3", "all"),
        default="3",
        help="1 discover, 2 prepare, 3 enrich (default), all: 1 then 2 then 3",
    )
    stages.add_argument("--max-depth", type=int, metavar="N", help="discover: link hops followed from a seed")
    stages.add_argument("--max-pages", type=int, metavar="N", help="discover: stop after this many URLs")

    inputs = parser.add_argument_group("input")
    inputs.add_argument(
        "urls",
        nargs="*",
        metavar="URL",
        help="URLs: seeds for stage 1 and 'all', the input of stage 2 or 3 (instead of --input)",
    )
    inputs.add_argument(
        "--input",
        "-i",
        metavar="FILE",
        help="URL list (text, .csv, .jsonl; '-' for stdin); default: the previous stage's output",
    )
    inputs.add_argument(
        "--input-format", choices=("auto", "text", "csv", "jsonl"), default="auto", help="default: by file suffix"
    )
    inputs.add_argument("--input-column", default="url", metavar="NAME", help="CSV column holding the URL")
    inputs.add_argument("--input-field", default="url", metavar="NAME", help="JSONL key holding the URL")
    inputs.add_argument(
        "--seeds",
        action="append",
        default=[],
        metavar="URL_OR_FILE",
        help="stage 1 seeds: a URL, or a file of URLs (repeatable); added to stages.discover.seeds",
    )

    _add_engine_groups(parser)
    add_job_group(parser)
    add_observe_group(parser)
    return parser


def build_demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webenrich demo",
        description=(
            "Serve the embedded demo site (HTML pages, a PDF, an image, a missing page) on 127.0.0.1, enrich every "
            f"URL on it, print the summary and write the records (default {DEMO_OUTPUT})."
        ),
    )
    _add_config_group(parser)
    _add_engine_groups(parser)
    return parser


def _overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The YAML-shaped mapping of the flags given, and which flag set each key (for error messages)."""
    overrides: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest in {"output", "sqlite", "warc", "data_dir"} and value != "-":
            value = str(Path(value).resolve())  # relative to the working directory, not to data_dir
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        flags[key] = "--" + dest.replace("_", "-")
    return overrides, flags


def _load_settings(args: argparse.Namespace) -> EnvSettings:
    overrides, flags = _overrides(args)
    search = tuple(dict.fromkeys((Path.cwd() / "config", REPO_ROOT / "config")))
    try:
        return load_env_settings(args.env, config_files=tuple(args.config), overrides=overrides, search=search)
    except ConfigError as exc:
        message = str(exc)
        for key, flag in flags.items():
            message = message.replace(f"\n  {key}:", f"\n  {key} (from {flag}):")
        raise ConfigError(message) from exc


# --- stages ---------------------------------------------------------------------------------------------------------


def _input_lines(source: str | Path, args: argparse.Namespace) -> Iterator[tuple[int, str]]:
    """The input's entries, checked now: a missing file or CSV column fails here, before any fetch."""
    fmt: InputFormat = args.input_format
    lines = iter_input_lines(source, fmt=fmt, column=args.input_column, field=args.input_field)
    first = next(lines, None)
    return lines if first is None else itertools.chain([first], lines)


def _require_file(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"input {path} does not exist; {hint}")
    return path


def _write_lines(path: Path, lines: Iterator[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line + "\n")
            count += 1
    tmp.replace(path)  # readers of the stage file never see half of it
    return count


def _seeds(settings: EnvSettings, args: argparse.Namespace) -> list[str]:
    seeds = list(settings.discover.seeds) + list(args.urls)
    sources = list(args.seeds) + ([args.input] if args.input else [])
    for value in sources:
        if value.startswith(("http://", "https://")):
            seeds.append(value)
        else:
            seeds.extend(raw for _n, raw in _input_lines(value, args))
    if not seeds:
        raise ConfigError("stage 1 needs seed URLs: --seeds URL_OR_FILE, URL arguments or stages.discover.seeds")
    return seeds


def run_discover(settings: EnvSettings, args: argparse.Namespace, err: TextIO) -> tuple[Path, bool]:
    """Stage 1 with the chosen engine: write the discovered URLs; returns the file written and whether Ctrl-C or
    SIGTERM stopped it (what was found by then is written all the same)."""
    seeds = _seeds(settings, args)
    out = settings.discover_output
    if args.async_enrichment is False:
        report, interrupted = _discover_with_scrapy(settings, args, seeds, out)
    else:
        report, interrupted = _discover_async(settings, seeds, out)
    report = {"stage": "discover", "engine": "async" if args.async_enrichment is not False else "scrapy", **report}
    report.update(seeds=len(seeds), output=str(out), interrupted=interrupted)
    (out.parent / "discover_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = {k: v for k, v in report.items() if k not in ("stage", "frontier", "finish_reason")}
    frontier = report.get("frontier") or {}
    politeness = ("backoffs", "cap_decreases", "circuit_opens")
    summary.update({f"frontier {k}": frontier[k] for k in politeness if k in frontier})
    print(format_summary({}, title="Stage 1: discover", extra=summary), file=err)
    return out, interrupted


def _discover_async(settings: EnvSettings, seeds: list[str], out: Path) -> tuple[dict[str, Any], bool]:
    from crawler.discover import Discoverer

    discoverer = Discoverer.from_config(settings.discover, enrich=settings.enrich)
    interrupt = _Interrupt()

    async def go() -> None:
        task = asyncio.create_task(discoverer.run(seeds))
        with interrupt.handling(discoverer.stop, task), contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(go())
    _write_lines(out, iter(discoverer.result.urls))
    return discoverer.result.to_dict(), interrupt.interrupted


def _discover_with_scrapy(
    settings: EnvSettings, args: argparse.Namespace, seeds: list[str], out: Path
) -> tuple[dict[str, Any], bool]:
    """``scrapy crawl discover`` (:mod:`crawler.scrapy_mode.spiders.discover`): the same plan on Scrapy's engine."""
    if not (REPO_ROOT / "scrapy.cfg").is_file():
        raise ConfigError(f"Scrapy mode needs {REPO_ROOT / 'scrapy.cfg'} (a source checkout); use the async engine")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="webenrich-discover-") as tmp_name:
        tmp = Path(tmp_name)
        _write_lines(tmp / "seeds.txt", iter(seeds))
        config_file, stage_file, report_file = tmp / "config.yml", tmp / "discover.json", tmp / "report.json"
        config_file.write_text(yaml.safe_dump(settings.enrich.model_dump(mode="json"), sort_keys=False), "utf-8")
        stage_file.write_text(settings.discover.model_dump_json(), encoding="utf-8")
        command = [sys.executable, "-m", "scrapy", "crawl", "discover"]
        for name, value in (
            ("input", tmp / "seeds.txt"),
            ("config", config_file),
            ("discover", stage_file),
            ("urls_out", out.resolve()),  # the child runs in REPO_ROOT
            ("report", report_file),
        ):
            command += ["-a", f"{name}={value}"]
        command += ["-L", args.log_level.upper()]
        logger.info("running %s", " ".join(command))
        interrupt = _Interrupt()
        process = _run_scrapy_child(command, interrupt, lambda: None)
        try:
            report: dict[str, Any] = json.loads(report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EnrichError(
                f"Scrapy mode's discovery exited with status {process.returncode} and wrote no report"
            ) from exc
    return report, interrupt.interrupted or bool(report.get("interrupted"))


def run_prepare(settings: EnvSettings, args: argparse.Namespace, err: TextIO, source: str | Path | None) -> Path:
    """Stage 2: normalize, filter, de-duplicate; write the list and ``prepare_report.json`` beside it."""
    if source is None:
        source = _require_file(settings.discover_output, "run --stage 1 first, or pass --input FILE")
    preparer = URLPreparer(config=settings.prepare)
    out = settings.prepare_output
    _write_lines(out, preparer.prepare(_input_lines(source, args)))
    report = {"stage": "prepare", "input": str(source), "output": str(out), **preparer.report.to_dict()}
    (out.parent / "prepare_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    extra: dict[str, Any] = {"Read": report["read"], "Kept": report["kept"], "Dropped": report["dropped"]}
    extra.update({f"Dropped: {reason}": n for reason, n in report["dropped_by_reason"].items()})
    extra["Output"] = str(out)
    print(format_summary({}, title="Stage 2: prepare", extra=extra), file=err)
    return out


def _stdin_file(args: argparse.Namespace, tmp: Path) -> Path:
    """Spool standard input to a file, so it can be counted and handed to either engine."""
    path = tmp / "stdin_urls.txt"
    _write_lines(path, (raw for _n, raw in _input_lines("-", args)))
    return path


def _count(source: Path, args: argparse.Namespace) -> int:
    return sum(1 for _ in _input_lines(source, args))


def _reporter(args: argparse.Namespace, stats: Callable[[], RunStats | None], err: TextIO) -> ProgressReporter | None:
    mode = args.progress
    if mode == "off":
        return None
    tty = err.isatty() if mode == "auto" else mode == "bar"
    return ProgressReporter(stats=stats, stream=err, tty=tty, interval=args.progress_interval)


def _run_async_engine(
    config: EnrichConfig,
    inputs: Iterator[InputURL],
    total: int | None,
    args: argparse.Namespace,
    err: TextIO,
    state: CrawlState | None,
) -> tuple[dict[str, Any], bool]:
    from crawler.async_engine import AsyncEnrichmentProcessor

    interrupt = _Interrupt()

    async def go() -> RunStats:
        processor = AsyncEnrichmentProcessor.from_config(config, progress_interval_s=0, state=state)

        def live() -> RunStats:
            if processor.stats.total is None:
                processor.stats.total = total
            return processor.stats

        reporter = _reporter(args, live, err)
        metrics = start_async_metrics(args, processor)
        task = asyncio.create_task(processor.run(inputs))
        # SIGTERM stops the run like Ctrl-C: flush, summary, exit status 130.
        with interrupt.handling(processor.stop, task):
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=reporter.period if reporter else 1.0)
                    if reporter:
                        reporter.tick()
                if reporter:
                    reporter.close()
                return task.result()
            except asyncio.CancelledError:
                if reporter:
                    reporter.close()
                return processor.stats
            finally:
                finish_metrics(args, metrics)

    stats = asyncio.run(go())
    if stats.total is None:
        stats.total = total
    return stats.to_dict(), interrupt.interrupted


def _run_scrapy_child(
    command: list[str], interrupt: _Interrupt, tick: Callable[[], None], *, period_s: float = 1.0
) -> subprocess.Popen[bytes]:
    """Run a ``scrapy crawl`` child from the repository root until it ends, calling ``tick`` every ``period_s``.

    The child has its own session: a terminal's Ctrl-C reaches only us, and we forward exactly one SIGINT per
    Ctrl-C (Scrapy's first SIGINT shuts down gracefully, its second one forces it). SIGTERM (kill, systemd, docker
    stop) stops the child like Ctrl-C: the crawl flushes and ends, and no Scrapy process is left crawling (and
    holding the job) after the orchestrator is gone.
    """
    process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True)
    interrupt.on_first = interrupt.on_second = lambda: process.send_signal(signal.SIGINT)
    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=period_s)
            tick()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return process


def _run_scrapy_engine(
    config: EnrichConfig,
    source: Path,
    total: int | None,
    args: argparse.Namespace,
    err: TextIO,
    tmp: Path,
    state: Path | None,
) -> tuple[dict[str, Any], bool]:
    """Run ``scrapy crawl enrich`` from the repository root, with the merged config in a temporary YAML file."""
    if not (REPO_ROOT / "scrapy.cfg").is_file():
        raise ConfigError(f"Scrapy mode needs {REPO_ROOT / 'scrapy.cfg'} (a source checkout); use the async engine")
    config_file = tmp / "config.yml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    stats_file = tmp / "scrapy_stats.json"
    output = config.output.path
    output = output if str(output) == "-" else output.resolve()
    command = [
        sys.executable,
        "-m",
        "scrapy",
        "crawl",
        "enrich",
        "-a",
        f"input={source.resolve()}",
        "-a",
        f"output={output}",
        "-a",
        f"config={config_file}",
        "-a",
        f"stats_file={stats_file}",
        "-a",
        f"input_format={args.input_format}",
        "-a",
        f"input_column={args.input_column}",
        "-a",
        f"input_field={args.input_field}",
        *(["-a", f"state={state.resolve()}"] if state is not None else []),  # the child runs in REPO_ROOT
        *(["-a", f"max_age={args.max_age}"] if state is not None and args.max_age is not None else []),
        *scrapy_settings_args(args),
        "-L",
        args.log_level.upper(),
    ]
    logger.info("running %s", " ".join(command))
    live = RunStats(engine="scrapy", total=total)
    tail = JsonlTail(Path(output), live) if str(output) != "-" else None
    reporter = _reporter(args, lambda: live, err)

    def tick() -> None:
        if tail:
            tail.poll()
        if reporter:
            reporter.tick()

    interrupt = _Interrupt()
    process = _run_scrapy_child(command, interrupt, tick, period_s=reporter.period if reporter else 1.0)
    if tail:
        tail.poll()
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):  # the bar's total leaves skipped entries out
        live.skipped_input = int(json.loads(stats_file.read_text(encoding="utf-8"))["skipped_input"])
    if reporter:
        reporter.close()
    try:
        figures: dict[str, Any] = json.loads(stats_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if interrupt.interrupted:
            return live.to_dict(), True
        raise EnrichError(f"Scrapy mode exited with status {process.returncode} and wrote no stats") from exc
    if process.returncode not in (0, None) and not interrupt.interrupted:
        from crawler.scrapy_mode.commands.crawl import EXIT_OUTPUT_FAILED  # deferred: imports Scrapy

        if process.returncode == EXIT_OUTPUT_FAILED:  # a sink or the WARC files failed; Scrapy printed why
            raise EnrichError(f"Scrapy mode's output failed (scrapy crawl exited with status {process.returncode})")
        logger.warning("scrapy crawl exited with status %s", process.returncode)
    return figures, interrupt.interrupted


def run_enrich(
    settings: EnvSettings,
    args: argparse.Namespace,
    err: TextIO,
    source: str | Path | None,
    *,
    urls: Sequence[str] = (),
    title: str = "Stage 3: enrich",
) -> int:
    """Stage 3: run the chosen engine over the input; print the summary; return the exit status."""
    config = settings.enrich
    with tempfile.TemporaryDirectory(prefix="webenrich-") as tmp_name:
        tmp = Path(tmp_name)
        if urls:
            path = tmp / "urls.txt"
            _write_lines(path, iter(urls))
        elif source is None:
            path = _require_file(settings.prepare_output, "run --stage 2 first, or pass --input FILE")
        elif str(source) == "-":
            path = _stdin_file(args, tmp)
        else:
            path = Path(source)
        total = _count(path, args)  # also checks the file and the CSV column before anything is fetched
        job = open_job(settings, args)
        print(
            f"{title}: {total} URLs from {path if not urls else 'the command line'}, "
            f"engine {'async' if args.async_enrichment else 'scrapy'}, output {config.output.path}"
            + (f"; {job_summary(*job)}" if job is not None else ""),
            file=err,
        )
        state = job[1] if job is not None else None
        interrupted = True  # until the engine returns: a failed run leaves its generation unfinished
        try:
            if args.async_enrichment:
                inputs = read_urls(_input_lines(path, args))
                figures, interrupted = _run_async_engine(config, inputs, total, args, err, state)
            else:
                if config.nlp.enabled:  # a missing model or extra stops here, clearly, not inside the Scrapy process
                    from enrich.nlp import analyzer_identity

                    analyzer_identity(config.nlp)
                if state is not None:
                    state.close(complete=False)  # the Scrapy process opens it itself
                figures, interrupted = _run_scrapy_engine(
                    config, path, total, args, err, tmp, state.path.resolve() if state is not None else None
                )
        finally:
            if state is not None:
                state.close(complete=not interrupted)
    figures = {**figures, "total": total, "output": str(config.output.path), "interrupted": interrupted}
    figures.setdefault("config_sources", list(settings.sources))
    extra = {"Output": str(config.output.path)}
    if interrupted:
        extra["Interrupted"] = "yes (partial run)"
    print(format_summary(figures, title=title, extra=extra), file=err)
    write_report(args, figures, title=title)
    if args.stats_file:
        stats_path = Path(args.stats_file)
        stats_path.parent.mkdir(parents=True, exist_ok=True)
        stats_path.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    if interrupted:
        return EXIT_INTERRUPTED
    processed = int(figures.get("processed") or 0)
    failed = int(figures.get("failed") or 0)
    rate = failed / processed if processed else 0.0
    if args.max_error_rate is not None and rate > args.max_error_rate:
        print(f"error rate {rate:.1%} is above --max-error-rate {args.max_error_rate:.1%}", file=err)
        return EXIT_FAILED
    return EXIT_OK


# --- entry points ---------------------------------------------------------------------------------------------------


def _check_args(args: argparse.Namespace) -> None:
    if args.engine is not None:
        wanted = args.engine == "async"
        if args.async_enrichment is not None and args.async_enrichment != wanted:
            flag = "--async-enrichment" if args.async_enrichment else "--no-async-enrichment"
            raise ConfigError(f"--engine {args.engine} contradicts {flag}: give one of them")
        args.async_enrichment = wanted
    elif args.async_enrichment is None:
        args.async_enrichment = True
    if args.max_error_rate is not None and not 0 <= args.max_error_rate <= 1:
        raise ConfigError(f"--max-error-rate must be between 0 and 1 (got {args.max_error_rate})")
    if args.progress_interval <= 0:
        raise ConfigError(f"--progress-interval must be positive (got {args.progress_interval})")
    check_observe_args(args)


def _run(argv: Sequence[str], err: TextIO) -> int:
    args = build_parser().parse_args(argv)
    if args.urls[:1] == ["demo"]:  # 'demo' after options: python -m crawler --no-nlp demo
        rest = list(argv)
        rest.remove("demo")
        return _demo(rest, err)
    _setup_logging(args.log_level)
    _check_args(args)
    settings = _load_settings(args)
    stage = args.stage
    if stage == "1":
        return EXIT_INTERRUPTED if run_discover(settings, args, err)[1] else EXIT_OK
    if stage == "2":
        run_prepare(settings, args, err, _stage_input(args, err))
        return EXIT_OK
    if stage == "3":
        return run_enrich(settings, args, err, args.input, urls=args.urls)
    discovered, interrupted = run_discover(settings, args, err)
    if interrupted:
        return EXIT_INTERRUPTED
    prepared = run_prepare(settings, args, err, discovered)
    return run_enrich(settings, args, err, prepared)


def _stage_input(args: argparse.Namespace, err: TextIO) -> str | Path | None:
    if args.urls and args.input:
        raise ConfigError("give URLs as arguments or --input FILE, not both")
    if args.urls:
        tmp = Path(tempfile.mkdtemp(prefix="webenrich-"))
        path = tmp / "urls.txt"
        _write_lines(path, iter(args.urls))
        return path
    return str(args.input) if args.input else None


def _demo(argv: Sequence[str], err: TextIO) -> int:
    from crawler.demo import DEMO_ROOT, demo_pages, demo_urls
    from crawler.localsite import ServerThread, static_app

    args = build_demo_parser().parse_args(argv)
    _setup_logging(args.log_level)
    _check_args(args)
    if args.output is None:
        args.output = str(DEMO_OUTPUT)
    # The demo site's port changes every time: each demo is a new job (its state still makes the run crash-safe).
    args.job, args.restart, args.recrawl, args.max_age, args.no_state = "demo", True, False, None, False
    # Fields the main parser has and the demo does not.
    args.input_format, args.input_column, args.input_field, args.urls = "text", "url", "url", []
    settings = _load_settings(args)
    # The demo site is on loopback: private addresses must be allowed whatever the environment says.
    enrich = settings.enrich.replace(politeness={"allow_private_addresses": True})
    settings = type(settings)(**{**{f: getattr(settings, f) for f in settings.__slots__}, "enrich": enrich})
    with ServerThread(lambda: static_app(DEMO_ROOT, demo_pages())) as server:
        print(f"demo site serving on {server.url}", file=err)
        return run_enrich(settings, args, err, None, urls=demo_urls(server.url), title="Demo")


def _setup_logging(level: str) -> None:
    try:
        logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    except ValueError as exc:
        raise ConfigError(f"--log-level: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script passes it to ``sys.exit``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    err = sys.stderr
    started = time.monotonic()
    try:
        if argv[:1] == ["demo"]:
            return _demo(argv[1:], err)
        if argv[:1] and argv[0] in ("enqueue", "worker", "status"):
            from crawler.distributed import main as distributed_main  # deferred: imports redis

            return distributed_main(argv[0], argv[1:], sys.stdout, err)
        return _run(argv, err)
    except ConfigError as exc:
        print(f"webenrich: error: {exc}", file=err)
        return EXIT_USAGE
    except EnrichError as exc:
        print(f"webenrich: failed: {exc}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"\nwebenrich: interrupted after {time.monotonic() - started:.1f}s", file=err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (| head): not an error of the run; keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
