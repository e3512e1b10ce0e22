"""Benchmarks of the crawl state: a recrawl against its first crawl, and a crawl killed at random moments.

Both scenarios serve a folder of pages with Python's own static file server (``python -m http.server``, in its own
process): ``Last-Modified`` from the file time, ``304`` to ``If-Modified-Since``, no ETag, as many real sites. Each
engine runs as a real process through the command line (``python -m crawler``), or ``scrapy crawl enrich`` itself
where it is killed (the orchestrator runs Scrapy in a process of its own, which a kill of the orchestrator would
not reach).

``recrawl``: a first crawl, a recrawl of the unchanged site, then a recrawl after a share of the pages changed
(their text, and their time). Reports each run's time and the first crawl's time over it, and checks that the
unchanged recrawl's records equal the first crawl's but for fetch times.

``crash``: an uninterrupted reference run, then the same job killed with SIGKILL at random moments and run again
each time until it finishes. Checks that the output holds one record per input URL, equal to the reference's but for
timings, and reports what the kills cost (total time of the interrupted runs over the reference).

Usage::

    python tools/benchmark_recrawl.py recrawl --pages 1000 --changed 0.3 --engines async,scrapy
    python tools/benchmark_recrawl.py crash --pages 5000 --kills 5 --engines async,scrapy
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

TIMINGS = {"fetched_at", "enriched_at", "fetch_duration_ms", "process_duration_ms", "engine", "revisit", "timings"}

_WORDS = [
    "harbour",
    "lighthouse",
    "market",
    "railway",
    "library",
    "bridge",
    "museum",
    "orchard",
    "mill",
    "canal",
    "council",
    "river",
    "festival",
    "school",
    "garden",
    "tower",
    "archive",
    "ferry",
    "station",
    "island",
    "valley",
    "forest",
    "castle",
    "church",
    "square",
    "theatre",
    "factory",
    "winter",
    "summer",
]
_PEOPLE = ["Anders Holm", "Ingrid Solberg", "Maria Costa", "John Miller", "Aiko Tanaka", "Pierre Dubois"]
_PLACES = ["Bergen", "Lisbon", "Oslo", "Boston", "Kyoto", "Lyon", "Dublin", "Porto"]


def page_html(n: int, revision: int = 0) -> bytes:
    """A page of about 2 KB of English prose, the same for the same ``(n, revision)``."""
    rng = random.Random(n * 1000 + revision)
    sentences = []
    for _ in range(18):
        words = rng.sample(_WORDS, 6)
        who, where, year = rng.choice(_PEOPLE), rng.choice(_PLACES), rng.randint(1850, 2020)
        sentences.append(
            f"The {words[0]} of {where} was opened by {who} in {year}, "
            f"and its {words[1]} and {words[2]} still draw visitors to the {words[3]}."
        )
    if revision:
        sentences.append(f"Revision {revision}: the {rng.choice(_WORDS)} reopened after repairs this year.")
    body = "".join(f"<p>{s}</p>" for s in sentences)
    title = f"{rng.choice(_WORDS).title()} notes {n}"
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><article><h1>{title}</h1>{body}</article></body></html>"
    ).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_SERVE = """
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # http.server's default backlog of 5 refuses connections at concurrency 16
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
Server(("127.0.0.1", int(sys.argv[2])), handler).serve_forever()
"""
"""``python -m http.server``, with a listen backlog that does not refuse a crawler's concurrent connections."""


class StaticSite:
    """Python's static file server over a folder, in its own process; its request log counts the requests."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StaticSite:
        log = self.log.open("ab")
        command = [sys.executable, "-c", _SERVE, str(self.root), str(self.port)]
        self._process = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("the static server did not start")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    def answered(self) -> dict[str, int]:
        """Requests per status so far (from the server's log), robots.txt left out."""
        counts: dict[str, int] = {}
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"GET ' not in line or "/robots.txt" in line:
                continue
            status = line.rsplit('" ', 1)[-1].split()[0]
            counts[status] = counts.get(status, 0) + 1
        return counts


def write_pages(root: Path, count: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (root / f"p{n}.html").write_bytes(page_html(n))
    return [f"/p{n}.html" for n in range(count)]


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        duplicates += record["url"] in records
        records[record["url"]] = record
    if duplicates:
        raise AssertionError(f"{duplicates} URLs have more than one record in {path}")
    return records


def comparable(records: dict[str, dict[str, Any]], *, ignore: set[str] = TIMINGS) -> dict[str, dict[str, Any]]:
    return {url: {k: v for k, v in r.items() if k not in ignore} for url, r in records.items()}


def cli_command(engine: str, urls: Path, out: Path, data: Path, stats: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "crawler", "--progress", "off", "-i", str(urls), "-o", str(out), "--data-dir",
        str(data), "--stats-file", str(stats), "--async-enrichment" if engine == "async" else "--no-async-enrichment",
        *extra,
    ]  # fmt: skip


def scrapy_command(urls: Path, out: Path, state: Path, stats: Path, extra: list[str]) -> list[str]:
    command = [
        sys.executable, "-m", "scrapy", "crawl", "enrich", "-a", f"input={urls}", "-a", f"output={out}",
        "-a", f"state={state}", "-a", f"stats_file={stats}", "-L", "WARNING",
    ]  # fmt: skip
    for option in extra:
        command += ["-a", option]
    return command


def run(command: list[str], log: Path, timeout_s: float = 7200) -> float:
    started = time.perf_counter()
    with log.open("ab") as out:
        subprocess.run(command, cwd=ROOT, stdout=out, stderr=out, timeout=timeout_s, check=True)
    return time.perf_counter() - started


def stats_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# --- recrawl ----------------------------------------------------------------------------------------------------


def recrawl(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"scenario": "recrawl", "pages": args.pages, "changed_share": args.changed}
    for engine in args.engines:
        report[engine] = _recrawl_engine(args, work, engine)
    return report


def _recrawl_engine(args: argparse.Namespace, work: Path, engine: str) -> dict[str, Any]:
    site = work / f"site-{engine}"
    paths = write_pages(site, args.pages)
    base = work / engine
    base.mkdir()
    urls = base / "urls.txt"
    out, stats, log = base / "out.jsonl", base / "stats.json", base / "engine.log"
    extra = ["--max-workers", str(args.concurrency), "--nlp-workers", str(args.nlp_workers)]
    extra += ["--nlp-executor", args.nlp_executor]
    runs: dict[str, Any] = {}
    with StaticSite(site, base / "server.log") as server:
        urls.write_text("".join(f"{server.url}{p}\n" for p in paths), encoding="utf-8")

        def crawl(name: str, *flags: str) -> None:
            before = server.answered()
            wall = run(cli_command(engine, urls, out, base / "data", stats, [*extra, *flags]), log)
            after = server.answered()
            figures = stats_of(stats)
            entry = {
                "wall_s": round(wall, 2),
                "elapsed_s": figures.get("elapsed_s"),
                "answers": {k: after.get(k, 0) - before.get(k, 0) for k in after},
                **{k: figures.get(k) for k in ("not_modified", "unchanged", "changed", "nlp_cache_hits")},
            }
            runs[name] = entry
            print(f"{engine} {name}: {json.dumps(entry)}", flush=True)

        crawl("first", "--restart")
        first = read_records(out)
        crawl("unchanged")  # a finished job run again: nothing to do (for reference)
        crawl("recrawl_unchanged", "--recrawl")
        unchanged = read_records(out)
        changed = random.Random(7).sample(range(args.pages), int(args.pages * args.changed))
        later = time.time() + 5
        for n in changed:
            path = site / f"p{n}.html"
            path.write_bytes(page_html(n, revision=1))
            os.utime(path, (later, later))
        crawl("recrawl_changed", "--recrawl")
        final = read_records(out)
        changed_urls = {f"{server.url}/p{n}.html" for n in changed}
    others = {u: r for u, r in final.items() if u not in changed_urls}
    first_s = runs["first"]["elapsed_s"] or runs["first"]["wall_s"]
    for name in ("recrawl_unchanged", "recrawl_changed"):
        seconds = runs[name]["elapsed_s"] or runs[name]["wall_s"]
        runs[name]["speedup_vs_first"] = round(first_s / seconds, 1) if seconds else None
    runs["unchanged_records_equal_first"] = comparable(unchanged) == comparable(first)
    runs["changed_run_other_records_equal_first"] = comparable(others) == comparable({u: first[u] for u in others})
    runs["changed_pages"] = len(changed)
    return runs


# --- crash ------------------------------------------------------------------------------------------------------


def crash(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"scenario": "crash", "pages": args.pages, "kills": args.kills}
    site = work / "site"
    paths = write_pages(site, args.pages)
    rng = random.Random(args.seed)
    with StaticSite(site, work / "server.log") as server:
        urls = work / "urls.txt"
        urls.write_text("".join(f"{server.url}{p}\n" for p in paths), encoding="utf-8")
        for engine in args.engines:
            base = work / engine
            base.mkdir()
            log = base / "engine.log"

            def command_for(out: Path, tag: str, engine: str = engine, base: Path = base) -> list[str]:
                """The same command for the reference and the killed runs: the CLI for the async engine,
                ``scrapy crawl`` itself for Scrapy mode (a kill of the orchestrator would not reach it)."""
                if engine == "async":
                    options = ["--max-workers", str(args.concurrency), "--nlp-workers", str(args.nlp_workers)]
                    options += ["--nlp-executor", args.nlp_executor]
                    return cli_command(engine, urls, out, base / tag, base / f"{tag}.json", options)
                config = base / "config.yml"
                nlp = {"executor": args.nlp_executor, "workers": args.nlp_workers}
                config.write_text(json.dumps({"nlp": nlp}), encoding="utf-8")  # JSON is YAML
                spider = [f"concurrency={args.concurrency}", f"config={config}"]
                return scrapy_command(urls, out, base / f"{tag}.sqlite", base / f"{tag}.json", spider)

            reference = base / "reference.jsonl"
            ref_s = run(command_for(reference, "ref"), log)
            print(f"{engine} reference: {ref_s:.1f} s", flush=True)
            out = base / "out.jsonl"
            command = command_for(out, "job")
            moments, total, kills = [], 0.0, 0
            for _ in range(args.kills):
                # a moment within what is left to do (a resumed run is shorter), so that every kill lands
                left = 1 - (sum(1 for _ in out.open(encoding="utf-8")) / len(paths) if out.exists() else 0)
                moment = rng.uniform(0.05, 0.9) * ref_s * max(left, 0.05)
                with log.open("ab") as out_log:
                    started = time.perf_counter()
                    process = subprocess.Popen(
                        command, cwd=ROOT, stdout=out_log, stderr=out_log, start_new_session=True
                    )
                    try:
                        process.wait(moment)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
                        kills += 1
                    total += time.perf_counter() - started
                lines = sum(1 for _ in out.open(encoding="utf-8")) if out.exists() else 0
                moments.append({"after_s": round(moment, 1), "output_lines": lines})
                print(f"{engine} killed after {moment:.1f} s ({lines} lines in the output)", flush=True)
            total += run(command, log)
            got, expected = read_records(out), read_records(reference)
            report[engine] = {
                "reference_s": round(ref_s, 1),
                "kills": kills,
                "moments": moments,
                "interrupted_total_s": round(total, 1),
                "total_over_reference": round(total / ref_s, 2),
                "records": len(got),
                "input_urls": len(paths),
                "equal_to_reference": comparable(got) == comparable(expected),
            }
            print(f"{engine}: {json.dumps(report[engine])}", flush=True)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=("recrawl", "crash"))
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--changed", type=float, default=0.3, help="recrawl: share of pages changed (default 0.3)")
    parser.add_argument("--kills", type=int, default=5, help="crash: SIGKILLs before the run may finish")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engines", default="async,scrapy", type=lambda s: [e for e in s.split(",") if e])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--nlp-workers", type=int, default=2)
    parser.add_argument("--nlp-executor", choices=("thread", "process"), default="process")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--workdir", type=Path, help="keep the run files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    for engine in args.engines:
        if engine not in ("async", "scrapy"):
            parser.error(f"--engines: unknown engine {engine!r} (async, scrapy)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-state-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = recrawl(args, work) if args.scenario == "recrawl" else crash(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
