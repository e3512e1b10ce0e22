"""Main-text quality and speed of the HTML extraction backends, on a public ground truth.

The ground truth is the Zyte (Scrapinghub) article extraction benchmark (MIT licence): 181 news and blog pages
fetched with JavaScript off, ``html/<id>.html.gz``, and a human-checked ``articleBody`` per page in
``ground-truth.json``. It is not shipped with this project; get it once and pass its folder::

    git clone https://github.com/scrapinghub/article-extraction-benchmark /tmp/aeb
    .venv/bin/python tools/extraction_eval.py --data /tmp/aeb [--json FILE]

Each page goes through :func:`enrich.extract.extract_page` exactly as in a crawl (decoding included), once per
backend, one thread. Scores are the benchmark's own (its ``evaluate.py``): ``\\w+`` tokens, 4-token shingles
counted with multiplicity, per-page precision and recall normalized so long pages do not weigh more, then the
mean precision and mean recall over pages and F1 of those two means; ``±`` is the standard deviation of 1,000
bootstrap resamples of the pages. The per-page F1's mean and median, and the same with single tokens
(``--ngram 1``, a bag of words) are printed as well. Speed is pages per second of extraction alone, over all
pages, best of ``--rounds`` rounds with the backends alternating (a slow spell of a shared machine hits both).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import random
import re
import statistics
import sys
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from enrich.config import ExtractConfig  # noqa: E402
from enrich.extract import extract_page  # noqa: E402
from enrich.record import FetchedPage  # noqa: E402

BACKENDS = ("trafilatura", "resiliparse")
_TOKEN = re.compile(r"\w+")
BOOTSTRAP = 1000

Counts = tuple[float, float, float]
"""(true positives, false positives, false negatives) of one page, normalized to sum to 1."""


def shingles(text: str, n: int) -> Counter[tuple[str, ...]]:
    """The benchmark's shingles: ``\\w+`` tokens in runs of ``n`` (one short run when the text has fewer)."""
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n])


def match(true: str, pred: str, n: int) -> Counts:
    """Shingle overlap of one page, normalized so that a long page weighs as much as a short one."""
    expected, found = shingles(true, n), shingles(pred, n)
    tp = sum((expected & found).values())
    fp = sum((found - expected).values())
    fn = sum((expected - found).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fp == 0 else tp / (tp + fp)


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fn == 0 else tp / (tp + fn)


def scores(counts: list[Counts]) -> dict[str, float]:
    """Mean precision and mean recall over pages (pages with nothing to score left out, as the benchmark does),
    and F1 of the two means."""
    precision = statistics.fmean([_precision(*c) for c in counts if c[0] + c[1] > 0] or [0.0])
    recall = statistics.fmean([_recall(*c) for c in counts if c[0] + c[2] > 0] or [0.0])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def page_f1(c: Counts) -> float:
    p, r = _precision(*c), _recall(*c)
    return 2 * p * r / (p + r) if p + r else 0.0


def evaluate(truth: dict[str, str], texts: dict[str, str], n: int, rng: random.Random) -> dict[str, float]:
    """The benchmark's figures with bootstrap deviations, plus the per-page F1's mean and median."""
    keys = sorted(truth)
    counts = [match(truth[k], texts[k], n) for k in keys]
    result = scores(counts)
    resampled = [scores([counts[rng.randrange(len(counts))] for _ in counts]) for _ in range(BOOTSTRAP)]
    for name in ("precision", "recall", "f1"):
        result[f"{name}_std"] = statistics.stdev(r[name] for r in resampled)
    per_page = [page_f1(c) for c in counts]
    result["page_f1_mean"] = statistics.fmean(per_page)
    result["page_f1_median"] = statistics.median(per_page)
    return {key: round(value, 4) for key, value in result.items()}


def load(data: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """Ground truth and page bodies by item id; both must name the same pages."""
    truth_file = data / "ground-truth.json"
    if not truth_file.is_file():
        raise SystemExit(f"{truth_file} not found: --data must be the benchmark's folder (see this tool's doc)")
    truth = {key: item.get("articleBody") or "" for key, item in json.loads(truth_file.read_text("utf-8")).items()}
    bodies = {path.name.split(".")[0]: gzip.decompress(path.read_bytes()) for path in (data / "html").glob("*.gz")}
    if set(bodies) != set(truth):
        raise SystemExit(f"{len(bodies)} pages and {len(truth)} ground-truth items do not match")
    return truth, bodies


def extract_all(bodies: dict[str, bytes], config: ExtractConfig) -> tuple[dict[str, str], float, int]:
    """Every page through ``extract_page``: texts, seconds of extraction, pages that came out with an error."""
    pages = {
        key: FetchedPage(
            url=f"https://bench.invalid/{key}",
            final_url=f"https://bench.invalid/{key}",
            status=200,
            headers={"content-type": "text/html; charset=utf-8"},  # the benchmark stores every page as UTF-8
            body=body,
            fetched_at="",
            fetch_duration_ms=0.0,
        )
        for key, body in bodies.items()
    }
    texts: dict[str, str] = {}
    errors = 0
    started = time.perf_counter()
    for key, page in pages.items():
        result = extract_page(page, config)
        texts[key] = result.text or ""
        errors += result.error is not None
    return texts, time.perf_counter() - started, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the benchmark's folder (ground-truth.json, html/)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default both)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds over all pages per backend (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="bootstrap seed")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    truth, bodies = load(args.data)
    configs = {backend: ExtractConfig(backend=backend) for backend in backends}
    for config in configs.values():  # warm up: first-use imports and caches are not extraction time
        extract_all(dict(list(bodies.items())[:3]), config)
    seconds: dict[str, list[float]] = {backend: [] for backend in backends}
    texts: dict[str, dict[str, str]] = {}
    errors: dict[str, int] = {}
    for _ in range(args.rounds):
        for backend, config in configs.items():
            texts[backend], elapsed, errors[backend] = extract_all(bodies, config)
            seconds[backend].append(elapsed)
    report: dict[str, Any] = {
        "data": str(args.data),
        "pages": len(truth),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": {name: version(name) for name in backends},
        "backends": {},
    }
    print(
        f"{'backend':<12} {'pages/s':>8} {'F1 (4-gram)':>16} {'precision':>16} {'recall':>16} "
        f"{'page F1 mean/median':>20} {'F1 (tokens)':>12} {'errors':>6}"
    )
    for backend in backends:
        best = min(seconds[backend])
        shingle = evaluate(truth, texts[backend], 4, random.Random(args.seed))
        tokens = evaluate(truth, texts[backend], 1, random.Random(args.seed))
        report["backends"][backend] = {
            "pages_per_s": round(len(bodies) / best, 1),
            "seconds": [round(s, 3) for s in seconds[backend]],
            "errors": errors[backend],
            "shingles_4": shingle,
            "tokens": tokens,
        }
        print(
            f"{backend:<12} {len(bodies) / best:>8.1f} "
            f"{shingle['f1']:>8.3f} ± {shingle['f1_std']:.3f} "
            f"{shingle['precision']:>8.3f} ± {shingle['precision_std']:.3f} "
            f"{shingle['recall']:>8.3f} ± {shingle['recall_std']:.3f} "
            f"{shingle['page_f1_mean']:>12.3f} / {shingle['page_f1_median']:.3f} "
            f"{tokens['f1']:>12.3f} {errors[backend]:>6}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
