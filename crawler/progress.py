"""What the command line shows while a run goes and when it ends: a live bar, plain lines, a summary table.

On a terminal, :class:`ProgressReporter` redraws one bar on stderr with rich (done / total, rate, success rate,
concurrency, ETA; fitted to the terminal's width) a few times a second; otherwise (a log file, CI) it writes a plain
line every ``interval`` seconds. It never owns a thread or a task: the engine driver calls
:meth:`ProgressReporter.tick` from its own loop.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from enrich.timing import LABELS, UTILIZATION_NAMES

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from enrich.stats import RunStats

__all__ = ["BAR_INTERVAL_S", "JsonlTail", "ProgressReporter", "format_duration", "format_summary", "stage_rows"]

BAR_INTERVAL_S = 0.25
"""Redraw period of the terminal bar: smooth to the eye, negligible cost."""

BAR_MIN_WIDTH = 10
"""The bar's narrowest width; it takes what the status text leaves of the line."""


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class ProgressReporter:
    """Reports a run's :class:`~enrich.stats.RunStats` while it goes.

    On a terminal the bar is drawn with rich (fitted to the terminal's width, redrawn in place, the cursor hidden
    meanwhile); rich's own refresh thread is off, so the bar changes only when :meth:`tick` is called.

    Args:
        stats: a callable returning the live stats (the engine may create them only once it starts).
        stream: where to write (stderr).
        tty: draw a redrawn bar (True) or write plain lines (False).
        interval: seconds between two plain lines.
        clock: injectable for tests.
        width: the bar's line width; default: the terminal's.
    """

    def __init__(
        self,
        *,
        stats: Callable[[], RunStats | None],
        stream: TextIO,
        tty: bool,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self._stats = stats
        self._stream = stream
        self._interval = BAR_INTERVAL_S if tty else interval
        self._clock = clock
        self._last = clock()
        self._live: Live | None = None
        if tty:
            console = Console(file=stream, force_terminal=True, width=width, highlight=False)
            # Records may go to standard output (-o -): rich must not take it over.
            self._live = Live(
                console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False, transient=False
            )

    @property
    def period(self) -> float:
        """How often :meth:`tick` is worth calling."""
        return min(self._interval, 1.0)

    def tick(self, *, force: bool = False) -> None:
        """Draw the bar or write a line if the interval has passed (or ``force``)."""
        now = self._clock()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        stats = self._stats()
        if stats is None:
            return
        if self._live is not None:
            if not self._live.is_started:
                self._live.start()
            self._live.update(self.render(stats), refresh=True)
        else:
            self._stream.write(stats.progress_line() + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the bar's line, so what follows starts on a clean line."""
        if self._live is not None:
            self.tick(force=True)
            if self._live.is_started:
                self._live.stop()

    @classmethod
    def render(cls, stats: RunStats) -> Table:
        """The bar (as wide as the line allows) and :meth:`status` beside it."""
        total = stats.expected  # the input's entries less the skipped ones (repeats, done before)
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1, min_width=BAR_MIN_WIDTH)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_row(ProgressBar(total=total or None, completed=stats.processed), cls.status(stats))
        return grid

    @staticmethod
    def status(stats: RunStats) -> str:
        """``120/500  24% | 35.2 URLs/s | ok 98.3% | conc 20 | ETA 0:00:11``."""
        total = stats.expected
        rate = stats.throughput
        if total:
            fraction = min(stats.processed / total, 1.0)
            head = f"{stats.processed}/{total} {fraction:4.0%}"
            remaining = max(total - stats.processed, 0)
            eta = format_duration(remaining / rate) if rate > 0 else "?"
        else:
            head = f"{stats.processed} done"
            eta = "?"
        parts = [head, f"{rate:.1f} URLs/s", f"ok {stats.success_rate:.1%}"]
        if stats.concurrency is not None:
            parts.append(f"conc {stats.concurrency()}")
        parts.append(f"ETA {eta}" if total else f"elapsed {format_duration(stats.elapsed_s)}")
        return " | ".join(parts)


class JsonlTail:
    """Counts records as another process appends them to a JSONL file (Scrapy mode's live progress).

    Only complete lines are read; a partial last line waits for the next :meth:`poll`.
    """

    def __init__(self, path: Path, stats: RunStats) -> None:
        self._path = path
        self._stats = stats
        self._offset = 0
        self._partial = b""

    def poll(self) -> None:
        try:
            with self._path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return  # not created yet
        self._offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            self._stats.processed += 1
            try:
                failed = json.loads(line).get("error") is not None
            except (ValueError, AttributeError):
                failed = True
            if failed:
                self._stats.failed += 1
            else:
                self._stats.success += 1


def format_summary(figures: dict[str, Any], *, title: str = "Summary", extra: dict[str, Any] | None = None) -> str:
    """A two-column table of a run's figures (:meth:`RunStats.to_dict` or Scrapy mode's stats file)."""
    rows: list[tuple[str, str]] = []

    def add(label: str, key: str, fmt: str = "{}") -> None:
        if figures.get(key) is not None:
            rows.append((label, fmt.format(figures[key])))

    add("Engine", "engine")
    add("Processed", "processed")
    add("Succeeded", "success")
    add("Failed", "failed")
    add("Skipped input", "skipped_input")
    add("Success rate", "success_rate", "{:.1%}")
    add("Elapsed", "elapsed_s", "{:.1f} s")
    add("Throughput", "throughput_urls_per_s", "{:.1f} URLs/s")
    add("Avg fetch", "avg_fetch_ms", "{:.0f} ms")
    add("Avg process", "avg_process_ms", "{:.0f} ms")
    add("Bytes fetched", "bytes_fetched", "{:,}")
    add("Peak in flight", "peak_in_flight")

    def count(label: str, key: str) -> None:  # shown only when something happened
        if figures.get(key):
            rows.append((label, f"{figures[key]:,}"))

    count("Already done (resumed)", "already_done")
    count("Resumed (redone)", "resumed_urls")
    count("Duplicates skipped", "duplicates_skipped")
    count("Not started", "not_started")
    count("Revisited", "revisited")
    count("Not modified (304)", "not_modified")
    count("Unchanged body", "unchanged")
    count("Changed", "changed")
    count("Fresh (not fetched)", "fresh_skipped")
    count("NLP reused (cache)", "nlp_cache_hits")
    if figures.get("nlp_cache_hits"):
        add("NLP cache hit ratio", "nlp_cache_hit_ratio", "{:.1%}")
    count("NLP worker restarts", "nlp_worker_restarts")
    for name, count in (figures.get("errors_by_type") or {}).items():
        rows.append((f"Error {name}", str(count)))
    rows += stage_rows(figures)
    for label, value in (extra or {}).items():
        rows.append((label, str(value)))
    width = max([len(label) for label, _ in rows] + [len(title)])
    value_width = max([len(value) for _, value in rows] + [1])
    rule = f"+-{'-' * width}-+-{'-' * value_width}-+"
    lines = [rule, f"| {title.ljust(width + value_width + 3)} |", rule]
    lines += [f"| {label.ljust(width)} | {value.rjust(value_width)} |" for label, value in rows]
    lines.append(rule)
    return "\n".join(lines)


def stage_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary's per-stage rows: mean time per record and share of the run's time in each step, how busy each
    part of the engine was, and the bottleneck (:mod:`enrich.timing`)."""
    rows: list[tuple[str, str]] = []
    times: dict[str, dict[str, float]] = figures.get("stage_times") or {}
    spent = sum(v["total_s"] for v in times.values())
    for stage, value in times.items():
        share = value["total_s"] / spent if spent else 0.0
        rows.append((f"Time in {LABELS.get(stage, stage)}", f"{value['mean_ms']:.1f} ms/record, {share:5.1%}"))
    for name, busy in (figures.get("utilization") or {}).items():
        rows.append((f"Busy {UTILIZATION_NAMES.get(name, name)}", f"{busy:.0%}"))
    if figures.get("bottleneck"):
        rows.append(("Bottleneck", str(figures["bottleneck"])))
    return rows
