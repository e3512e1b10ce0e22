"""The command line's view inside a run: Prometheus metrics (``--metrics-port``, ``--metrics-textfile``) and the
HTML run report (``--report``), for both engines.

The async engine runs in this process, so its metrics are served from here (:func:`start_async_metrics`). Scrapy mode
runs in a child process: the flags become Scrapy settings of that child (:func:`scrapy_settings_args`), where
:mod:`crawler.scrapy_mode.metrics` serves and writes them. The report is written here for both, from the run's
figures (:func:`write_report`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrich.errors import ConfigError

if TYPE_CHECKING:
    import argparse

    from crawler.async_engine import AsyncEnrichmentProcessor
    from enrich.metrics import RunMetrics

__all__ = [
    "add_observe_group",
    "check_observe_args",
    "finish_metrics",
    "scrapy_settings_args",
    "start_async_metrics",
    "write_report",
]

logger = logging.getLogger(__name__)


def add_observe_group(parser: argparse.ArgumentParser) -> None:
    """The options that look inside a run."""
    group = parser.add_argument_group("observing a run")
    group.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics while the run goes",
    )
    group.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDR",
        help="address --metrics-port listens on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    group.add_argument(
        "--metrics-textfile",
        metavar="FILE",
        help="at the end, write the run's metrics to FILE (node_exporter textfile collector, name it *.prom)",
    )
    group.add_argument(
        "--report", metavar="FILE.html", help="at the end, write a self-contained HTML report of the run"
    )


def check_observe_args(args: argparse.Namespace) -> None:
    """Refuse bad values before anything is fetched.

    Raises:
        ConfigError: a port out of range, or a file whose folder does not exist.
    """
    port = getattr(args, "metrics_port", None)
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port must be between 0 and 65535 (got {port})")
    for flag, value in (
        ("--metrics-textfile", getattr(args, "metrics_textfile", None)),
        ("--report", getattr(args, "report", None)),
    ):
        if value is not None and not Path(value).resolve().parent.is_dir():
            raise ConfigError(f"{flag} {value}: folder {Path(value).resolve().parent} does not exist")


def scrapy_settings_args(args: argparse.Namespace) -> list[str]:
    """``-s NAME=VALUE`` arguments that hand the metrics flags to the Scrapy child process."""
    out: list[str] = []
    port = getattr(args, "metrics_port", None)
    if port is not None:
        out += ["-s", f"ENRICH_METRICS_PORT={port}", "-s", f"ENRICH_METRICS_ADDRESS={args.metrics_address}"]
    textfile = getattr(args, "metrics_textfile", None)
    if textfile is not None:
        out += ["-s", f"ENRICH_METRICS_TEXTFILE={Path(textfile).resolve()}"]
    return out


def start_async_metrics(args: argparse.Namespace, processor: AsyncEnrichmentProcessor) -> RunMetrics | None:
    """The metrics of an async-engine run, served on ``--metrics-port`` from now on; ``None`` when no metrics
    flag is given. End them with :func:`finish_metrics`.

    Raises:
        ConfigError: the port cannot be listened on (in use, not allowed).
    """
    port = getattr(args, "metrics_port", None)
    if port is None and getattr(args, "metrics_textfile", None) is None:
        return None
    from enrich.metrics import RunMetrics
    from enrich.pipeline import run_figures

    metrics = RunMetrics(
        engine=processor.engine,
        stats=lambda: processor.stats,
        figures=lambda: run_figures(processor.chain.stages, None),
    )
    processor.listeners.append(metrics.observe)
    if port is not None:
        try:
            metrics.serve(port, address=args.metrics_address)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen on {args.metrics_address}: {exc}") from exc
    return metrics


def finish_metrics(args: argparse.Namespace, metrics: RunMetrics | None) -> None:
    """Write ``--metrics-textfile`` (also after a failure or an interrupt: the figures are what was done) and
    stop serving."""
    if metrics is None:
        return
    try:
        textfile = getattr(args, "metrics_textfile", None)
        if textfile is not None:
            metrics.write_textfile(textfile)
    except OSError as exc:
        logger.error("could not write the metrics file %s: %s", textfile, exc)
    finally:
        metrics.close()


def write_report(args: argparse.Namespace, figures: dict[str, Any], *, title: str) -> None:
    """Write ``--report`` from the run's figures, if asked (a failure to write is logged, not raised: the run
    itself is done and its output written)."""
    path = getattr(args, "report", None)
    if path is None:
        return
    from enrich.report import render_report

    try:
        Path(path).write_text(render_report(figures, title=title), encoding="utf-8")
    except OSError as exc:
        logger.error("could not write the report %s: %s", path, exc)
