"""Measure the core stages on this machine over real corpus pages: extraction time, NLP throughput, naive baseline.

Run from the repository root::

    .venv/bin/python tools/measure_stages.py --json /tmp/stages.json

What it measures, all in one process and one run:

1. Per-page extraction time of :func:`enrich.extract.extract_page` (mean, p50, p95 in ms; HTML and PDF apart).
2. NLP throughput in words per second of :class:`enrich.nlp.NLPStage` with ``executor`` thread and process and
   ``workers`` 1 and 2, over the same extracted texts. Configurations alternate within each round (so a slow
   spell of the shared machine hits every configuration alike) and the median of the rounds is reported. Model
   loading (``open``) is timed apart and not counted in the throughput.
3. The naive baseline: ``spacy.load`` of the full default pipeline, one thread, one ``nlp(text)`` call per page,
   over the same texts capped at the same ``max_chars``.

Words are counted the way the NLP stage counts them: whitespace-separated words of the capped text.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from enrich.config import DEFAULT_MODEL, NLPConfig  # noqa: E402
from enrich.extract import extract_page  # noqa: E402
from enrich.nlp import NLPStage, resolve_model  # noqa: E402
from enrich.record import FetchedPage, Record  # noqa: E402
from enrich.stages import WorkItem  # noqa: E402

NLP_CONFIGS = (("thread", 1), ("thread", 2), ("process", 1), ("process", 2))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): a value that was really observed."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize_ms(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"pages": 0}
    return {
        "pages": len(values),
        "mean_ms": round(statistics.fmean(values), 2),
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 95), 2),
        "max_ms": round(max(values), 2),
    }


def load_pages(args: argparse.Namespace) -> list[tuple[str, FetchedPage]]:
    corpus: Path = args.corpus
    if not (corpus / "README.md").is_file():
        sys.exit(f"corpus not found at {corpus}; pass --corpus")
    files: list[tuple[str, Path, str]] = []
    files += [("html", p, "text/html") for p in sorted((corpus / "pages" / "python").glob("*.html"))[: args.python]]
    postgres = sorted((corpus / "sites" / "postgresql").glob("*.html"))
    files += [("html", p, "text/html") for p in postgres[: args.postgres]]
    files += [("pdf", p, "application/pdf") for p in sorted((corpus / "pdf").glob("*.pdf"))[: args.pdfs]]
    pages = []
    for kind, path, content_type in files:
        body = path.read_bytes()
        url = f"http://127.0.0.1:8000/{path.parent.name}/{path.name}"
        pages.append(
            (
                kind,
                FetchedPage(
                    url=url,
                    final_url=url,
                    status=200,
                    headers={"content-type": content_type},
                    body=body,
                    fetched_at="2024-06-01T12:00:00.000Z",
                    fetch_duration_ms=0.0,
                ),
            )
        )
    return pages


def measure_extraction(pages: list[tuple[str, FetchedPage]]) -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
    times: dict[str, list[float]] = {"html": [], "pdf": []}
    errors: dict[str, int] = {"html": 0, "pdf": 0}
    texts: list[tuple[str, str | None]] = []
    extract_page(pages[0][1])  # first call imports and warms trafilatura/pypdf; not a page's cost
    for kind, page in pages:
        started = time.perf_counter()
        result = extract_page(page)
        times[kind].append((time.perf_counter() - started) * 1000)
        if result.error is not None:
            errors[kind] += 1
        if result.text:
            texts.append((result.text, result.language))
    report = {kind: {**summarize_ms(values), "errors": errors[kind]} for kind, values in times.items()}
    return report, texts


async def _stage_round(config: NLPConfig, texts: list[tuple[str, str | None]]) -> tuple[float, float, int]:
    stage = NLPStage(config=config)
    started = time.perf_counter()
    await stage.open()
    open_s = time.perf_counter() - started
    try:
        items = [WorkItem(record=Record(url=f"t{i}", text=text, language=lang)) for i, (text, lang) in enumerate(texts)]
        started = time.perf_counter()
        done = await asyncio.gather(*(stage.process(item) for item in items))
        elapsed = time.perf_counter() - started
    finally:
        await stage.close()
    failed = sum(1 for item in done if item.record.error is not None)
    if failed:
        raise RuntimeError(f"{failed} NLP failures during measurement")
    return stage.words / elapsed, open_s, stage.words


def measure_nlp(texts: list[tuple[str, str | None]], args: argparse.Namespace) -> dict[str, Any]:
    rates: dict[str, list[float]] = {f"{e}/{w}": [] for e, w in NLP_CONFIGS}
    opens: dict[str, list[float]] = {key: [] for key in rates}
    words = 0
    for round_no in range(args.rounds):
        order = NLP_CONFIGS if round_no % 2 == 0 else tuple(reversed(NLP_CONFIGS))
        for executor, workers in order:
            key = f"{executor}/{workers}"
            config = NLPConfig(executor=executor, workers=workers, max_chars=args.max_chars)  # type: ignore[arg-type]
            gc.collect()
            rate, open_s, words = asyncio.run(_stage_round(config, texts))
            rates[key].append(rate)
            opens[key].append(open_s)
            print(f"  round {round_no + 1} {key:<10} {rate:10.0f} words/s (open {open_s:.1f}s)", flush=True)
    return {
        key: {
            "words_per_s_median": round(statistics.median(values)),
            "words_per_s_rounds": [round(v) for v in values],
            "open_s_median": round(statistics.median(opens[key]), 2),
            "words": words,
        }
        for key, values in rates.items()
    }


def measure_baseline(texts: list[tuple[str, str | None]], args: argparse.Namespace) -> dict[str, Any]:
    import spacy

    started = time.perf_counter()
    nlp = spacy.load(resolve_model(DEFAULT_MODEL))
    load_s = time.perf_counter() - started
    nlp.max_length = max(nlp.max_length, 2_000_000)
    capped = [text[: args.max_chars] for text, _ in texts]
    words = sum(len(t.split()) for t in capped)
    nlp(capped[0])  # warm-up, as the stage's open() warms its workers
    rates = []
    for round_no in range(args.rounds):
        gc.collect()
        started = time.perf_counter()
        for text in capped:
            nlp(text)
        rates.append(words / (time.perf_counter() - started))
        print(f"  round {round_no + 1} baseline   {rates[-1]:10.0f} words/s", flush=True)
    return {
        "pipeline": list(nlp.pipe_names),
        "words_per_s_median": round(statistics.median(rates)),
        "words_per_s_rounds": [round(v) for v in rates],
        "load_s": round(load_s, 2),
        "words": words,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT.parent / "shared" / "corpus")
    parser.add_argument("--python", type=int, default=40, help="pages/python pages to use (default 40)")
    parser.add_argument("--postgres", type=int, default=100, help="sites/postgresql pages, sorted by name (100)")
    parser.add_argument("--pdfs", type=int, default=4, help="PDFs to use (default 4)")
    parser.add_argument("--nlp-texts", type=int, default=0, help="use N evenly spaced extracted texts for NLP (0: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-chars", type=int, default=NLPConfig().max_chars)
    parser.add_argument("--skip-nlp", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)

    pages = load_pages(args)
    print(f"{len(pages)} pages loaded from {args.corpus}", flush=True)
    extraction, texts = measure_extraction(pages)
    if args.nlp_texts and args.nlp_texts < len(texts):
        # evenly spaced, so the sample keeps the corpus mix of large, small and PDF texts
        texts = [texts[i * len(texts) // args.nlp_texts] for i in range(args.nlp_texts)]
    words = sum(len(text[: args.max_chars].split()) for text, _ in texts)
    print(f"extraction done; {len(texts)} texts, {words} words (max_chars {args.max_chars}) for NLP", flush=True)
    nlp = baseline = None
    if not args.skip_nlp:
        nlp = measure_nlp(texts, args)
        baseline = measure_baseline(texts, args)

    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "args": {k: str(v) for k, v in vars(args).items()},
        "extraction": extraction,
        "nlp_texts": len(texts),
        "nlp_words": words,
        "nlp_stage": nlp,
        "baseline_full_pipeline": baseline,
    }

    print()
    print(f"{'extraction':<22}{'pages':>7}{'errors':>8}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for kind, row in extraction.items():
        if row["pages"]:
            print(
                f"{kind:<22}{row['pages']:>7}{row['errors']:>8}{row['mean_ms']:>10.1f}{row['p50_ms']:>10.1f}"
                f"{row['p95_ms']:>10.1f}"
            )
    if nlp is not None and baseline is not None:
        print()
        print(f"{'NLP (' + str(len(texts)) + ' texts, ' + str(words) + ' words)':<34}{'words/s':>10}{'vs base':>9}")
        base = baseline["words_per_s_median"]
        for key, row in nlp.items():
            print(f"{'NLPStage ' + key:<34}{row['words_per_s_median']:>10}{row['words_per_s_median'] / base:>8.2f}x")
        print(f"{'baseline spacy.load full, 1 thread':<34}{base:>10}{1:>8.2f}x   ({', '.join(baseline['pipeline'])})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
