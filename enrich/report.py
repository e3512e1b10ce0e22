"""The HTML run report (``--report FILE.html``): one self-contained file, plots drawn as inline SVG.

It is rendered from a run's figures (:meth:`RunStats.to_dict <enrich.stats.RunStats.to_dict>`, or Scrapy mode's
stats file, which holds the same), so both engines and the benchmark tool write the same report: throughput and
requests in flight over time, where the time of a record goes (:mod:`enrich.timing`), how busy each part was and
the bottleneck, errors by type and by site, the slowest sites. No script, no style sheet or font from the
network: it opens offline, from a mail attachment or a CI artifact, as it was written.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

from enrich.timing import LABELS, UTILIZATION_NAMES

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["render_report", "render_reports"]

WIDTH, HEIGHT = 720, 220
"""Size of a time plot in CSS pixels (the SVG scales with the page below that width)."""

MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP, MARGIN_RIGHT = 56, 30, 12, 12

CSP = "default-src 'none'; style-src 'unsafe-inline'"
"""Nothing may load from anywhere (the page has no script and needs nothing): a report that tried would show it
as a console error, and a hostile page title quoted in it could not run or fetch anything."""

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:980px;
padding:0 16px;color:#222}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.bottleneck{font-size:16px;font-weight:600;color:#a33}
svg.plot{max-width:100%;height:auto;display:block;margin:8px 0}svg text{font:11px sans-serif;fill:#444}
.muted{color:#777}section{page-break-inside:avoid}
"""


def render_report(figures: dict[str, Any], *, title: str = "Run report") -> str:
    """The report of one run as a complete HTML document.

    Args:
        figures: the run's figures (see the module docstring); missing parts are left out of the report.
        title: the page's heading.
    """
    return _document(title, [_run_sections(figures)])


def render_reports(runs: Sequence[tuple[str, dict[str, Any]]], *, title: str) -> str:
    """Several runs (the benchmark's) in one document, each under its own heading."""
    parts = [f"<h2 style='font-size:20px'>{escape(name)}</h2>{_run_sections(figures)}" for name, figures in runs]
    return _document(title, parts)


def _document(title: str, parts: Iterable[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{''.join(parts)}</body></html>\n"
    )


def _run_sections(f: dict[str, Any]) -> str:
    parts = [_overview(f), _over_time(f), _stages(f), _errors(f), _slowest(f)]
    return "".join(part for part in parts if part)


def _overview(f: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []

    def add(label: str, key: str, fmt: str = "{}") -> None:
        if f.get(key) is not None:
            rows.append((label, fmt.format(f[key])))

    add("Engine", "engine")
    add("Input entries", "total")
    add("Records written", "processed")
    add("Succeeded", "success")
    add("Failed", "failed")
    add("Success rate", "success_rate", "{:.1%}")
    add("Skipped input (repeats, done before)", "skipped_input")
    for label, key in (
        ("Duplicates skipped", "duplicates_skipped"),
        ("Already done (resumed job)", "already_done"),
        ("Not started (stopped)", "not_started"),
        ("Resumed (redone)", "resumed_urls"),
        ("Reused: not modified (304)", "not_modified"),
        ("Reused: unchanged body", "unchanged"),
        ("Reused: fresh, not fetched", "fresh_skipped"),
        ("NLP reused (cache)", "nlp_cache_hits"),
    ):
        if f.get(key):  # shown when it happened
            add(label, key, "{:,}")
    add("Elapsed", "elapsed_s", "{:.1f} s")
    add("Throughput", "throughput_urls_per_s", "{:.2f} URLs/s")
    add("Bytes fetched", "bytes_fetched", "{:,}")
    add("Peak in flight", "peak_in_flight")
    line = f"<p class='bottleneck'>{escape(str(f['bottleneck']))}</p>" if f.get("bottleneck") else ""
    return f"<section><h2>Overview</h2>{line}{_table(('', ''), rows)}</section>"


def _over_time(f: dict[str, Any]) -> str:
    timeline: dict[str, Any] = f.get("timeline") or {}
    done: list[int] = timeline.get("done") or []
    if not done:
        return "<section><h2>Over time</h2><p class='muted'>No record was written.</p></section>"
    step = float(timeline.get("bucket_s") or 1.0)
    failed: list[int] = timeline.get("failed") or [0] * len(done)
    rate = [n / step for n in done]
    failures = [n / step for n in failed]
    concurrency: list[float | None] = timeline.get("concurrency") or []
    slots = (f.get("stage_workers") or {}).get("fetch")
    parts = [
        "<section><h2>Over time</h2>",
        f"<p class='muted'>Buckets of {step:g} s.</p>",
        _line_plot([("records/s", rate), ("failed/s", failures)], step, "records per second"),
    ]
    if any(value is not None for value in concurrency):
        series: list[tuple[str, Sequence[float | None]]] = [("requests in flight", concurrency)]
        if slots:
            series.append((f"request slots ({slots})", [float(slots)] * len(concurrency)))
        parts.append(_line_plot(series, step, "requests in flight (mean when a record finished)"))
    parts.append("</section>")
    return "".join(parts)


def _stages(f: dict[str, Any]) -> str:
    times: dict[str, dict[str, float]] = f.get("stage_times") or {}
    shares: dict[str, float] = f.get("utilization") or {}
    if not times and not shares:
        return ""
    parts = ["<section><h2>Where the time goes</h2>"]
    if times:
        spent = sum(v["total_s"] for v in times.values()) or 1.0
        bars = [(LABELS.get(k, k), v["total_s"], f"{v['mean_ms']:.1f} ms/record") for k, v in times.items()]
        parts.append("<p class='muted'>Seconds spent per step, summed over the records.</p>")
        parts.append(_bar_plot(bars))
        rows = [
            (
                LABELS.get(k, k),
                f"{v['mean_ms']:.1f}",
                f"{v['total_s']:.2f}",
                f"{v['total_s'] / spent:.1%}",
                f"{v['count']:,}",
            )
            for k, v in times.items()
        ]
        parts.append(_table(("step", "mean ms/record", "total s", "share", "records"), rows))
    if shares:
        parts.append("<p class='muted'>How busy each part was over the run (busy time / elapsed / workers).</p>")
        parts.append(_bar_plot([(UTILIZATION_NAMES.get(k, k), v, f"{v:.0%}") for k, v in shares.items()], limit=1.0))
    parts.append("</section>")
    return "".join(parts)


def _errors(f: dict[str, Any]) -> str:
    by_type: dict[str, int] = f.get("errors_by_type") or {}
    by_stage: dict[str, int] = f.get("errors_by_stage") or {}
    sites: list[dict[str, Any]] = (f.get("sites") or {}).get("errors") or []
    if not by_type:
        return "<section><h2>Errors</h2><p class='muted'>No errors.</p></section>"
    parts = ["<section><h2>Errors</h2>", _bar_plot([(k, float(v), f"{v:,}") for k, v in by_type.items()])]
    if by_stage:
        parts.append(_table(("step", "records"), [(k, f"{v:,}") for k, v in by_stage.items()]))
    if sites:
        rows = [
            (s["site"], f"{s['failed']:,}", f"{s['records']:,}", ", ".join(f"{k} {v}" for k, v in s["by_type"].items()))
            for s in sites
        ]
        parts.append("<h3>By site</h3>" + _table(("site", "failed", "records", "errors"), rows))
    parts.append("</section>")
    return "".join(parts)


def _slowest(f: dict[str, Any]) -> str:
    sites: list[dict[str, Any]] = (f.get("sites") or {}).get("slowest") or []
    if not sites:
        return ""
    rows = [(s["site"], f"{s['mean_fetch_ms']:,.0f}", f"{s['records']:,}") for s in sites]
    count = (f.get("sites") or {}).get("count")
    note = f"<p class='muted'>Of {count:,} sites, by mean fetch time.</p>" if count else ""
    return f"<section><h2>Slowest sites</h2>{note}{_table(('site', 'mean fetch ms', 'records'), rows)}</section>"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def cell(tag: str, index: int, value: str) -> str:
        numeric = index > 0 and value[:1].isdigit()
        return f"<{tag}{' class=n' if numeric else ''}>{escape(value)}</{tag}>"

    header = "" if not any(head) else "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{header}{body}</table>"


def _nice_max(value: float) -> float:
    """A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(value))
    return next(factor * base for factor in (1, 2, 5, 10) if factor * base >= value * (1 - 1e-9))


def _line_plot(series: Sequence[tuple[str, Sequence[float | None]]], step: float, y_label: str) -> str:
    """Lines over time (x: seconds since the start), a legend, axes with three ticks each."""
    count = max(len(values) for _, values in series)
    top = _nice_max(max((v for _, values in series for v in values if v is not None), default=0.0))
    inner_w, inner_h = WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(index: int) -> float:
        return MARGIN_LEFT + (index + 0.5) * inner_w / max(count, 1)

    def y(value: float) -> float:
        return MARGIN_TOP + inner_h * (1 - value / top)

    out = [_svg_open(WIDTH, HEIGHT, y_label)]
    for fraction in (0.0, 0.5, 1.0):
        ty = y(top * fraction)
        out.append(
            f"<line x1='{MARGIN_LEFT}' y1='{ty:.1f}' x2='{WIDTH - MARGIN_RIGHT}' y2='{ty:.1f}' stroke='#e5e5e5'/>"
        )
        out.append(f"<text x='{MARGIN_LEFT - 6}' y='{ty + 4:.1f}' text-anchor='end'>{top * fraction:g}</text>")
    for fraction in (0.0, 0.5, 1.0):
        seconds = count * step * fraction
        tx = MARGIN_LEFT + inner_w * fraction
        out.append(f"<text x='{tx:.1f}' y='{HEIGHT - 10}' text-anchor='middle'>{seconds:.0f} s</text>")
    out.append(f"<text x='{MARGIN_LEFT}' y='{MARGIN_TOP - 2}'>{escape(y_label)}</text>")
    for number, (label, values) in enumerate(series):
        color = COLORS[number % len(COLORS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None)
        if points.count(" ") == 0:  # one point: a polyline would not show
            px, py = points.split(",")
            out.append(f"<circle cx='{px}' cy='{py}' r='3' fill='{color}'/>")
        else:
            out.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.8' points='{points}'/>")
        lx = WIDTH - MARGIN_RIGHT - 190
        ly = MARGIN_TOP + 12 + 15 * number
        out.append(f"<rect x='{lx}' y='{ly - 8}' width='12' height='3' fill='{color}'/>")
        out.append(f"<text x='{lx + 18}' y='{ly - 3}'>{escape(label)}</text>")
    out.append("</svg>")
    return "".join(out)


def _bar_plot(bars: Sequence[tuple[str, float, str]], *, limit: float | None = None) -> str:
    """Horizontal bars: a label, a bar scaled to the largest value (or ``limit``), a text after it."""
    row, label_w, text_w = 22, 150, 130
    height = row * len(bars) + 8
    top = limit if limit is not None else max((value for _, value, _ in bars), default=0.0) or 1.0
    inner = WIDTH - label_w - text_w
    out = [_svg_open(WIDTH, height, "bars")]
    for number, (label, value, text) in enumerate(bars):
        top_y = 4 + row * number
        width = max(inner * min(value / top, 1.0), 1.0)
        color = COLORS[number % len(COLORS)]
        out.append(f"<text x='{label_w - 8}' y='{top_y + 14}' text-anchor='end'>{escape(label)}</text>")
        out.append(f"<rect x='{label_w}' y='{top_y + 3}' width='{width:.1f}' height='{row - 8}' fill='{color}'/>")
        out.append(f"<text x='{label_w + width + 6:.1f}' y='{top_y + 14}'>{escape(text)}</text>")
    out.append("</svg>")
    return "".join(out)


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f"<svg class='plot' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(label)}'>"
    )
