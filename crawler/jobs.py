"""Jobs on the command line: which crawl state a run uses, and the options that resume, restart or recrawl it.

A job is named by ``--job NAME``, or else by its output file (its stem and a hash of its full path), and its state
is ``<data_dir>/state/<NAME>.sqlite``. Running the same command again continues the job; ``--restart`` discards its
state; ``--recrawl`` revisits what it has done (:mod:`enrich.state`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from enrich.errors import ConfigError
from enrich.state import CrawlState

if TYPE_CHECKING:
    import argparse

    from crawler.env_config import EnvSettings

__all__ = ["add_job_group", "job_name", "job_summary", "open_job", "parse_age"]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def add_job_group(parser: argparse.ArgumentParser) -> None:
    """The job options (state, resume, recrawl) of a command."""
    job = parser.add_argument_group("job (resume and recrawl)")
    job.add_argument("--job", metavar="NAME", help="name of the job's state (default: from the output file)")
    job.add_argument("--restart", action="store_true", help="discard the job's state and start over")
    job.add_argument("--recrawl", action="store_true", help="revisit every URL already done (conditional requests)")
    job.add_argument(
        "--max-age",
        metavar="AGE",
        help="with --recrawl: reuse, without fetching, records fetched less than AGE ago (e.g. 3600, 30m, 12h, 2d)",
    )
    job.add_argument(
        "--no-state", action="store_true", help="keep no crawl state: no resume, no recrawl, every input URL fetched"
    )


def parse_age(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit (s, m, h, d, w).

    Raises:
        ConfigError: not such a number.
    """
    match = _AGE.match(text)
    if match is None:
        raise ConfigError(f"--max-age must be a number of seconds or a number with s, m, h, d or w (got {text!r})")
    return float(match.group(1)) * _UNITS[match.group(2)]


def job_name(output: Path | str, job: str | None) -> str:
    """The job's name: ``job`` when given (checked), else the output file's stem and a hash of its full path.

    Raises:
        ConfigError: ``job`` is not a plain name.
    """
    if job is not None:
        if not _NAME.match(job):
            raise ConfigError(f"--job must be letters, digits, '.', '_' or '-' (up to 100), not {job!r}")
        return job
    if str(output) == "-":
        return "stdout"
    path = Path(output).resolve()
    return f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def open_job(settings: EnvSettings, args: argparse.Namespace) -> tuple[str, CrawlState] | None:
    """Open the run's crawl state as the options say; ``None`` with ``--no-state``.

    Raises:
        ConfigError: contradictory options.
        SinkError: the state cannot be opened.
    """
    if args.no_state:
        if args.restart or args.recrawl or args.max_age or args.job:
            raise ConfigError("--no-state keeps no job: it cannot be combined with --job, --restart, --recrawl")
        return None
    max_age = parse_age(args.max_age) if args.max_age is not None else None
    if max_age is not None and not args.recrawl:
        raise ConfigError("--max-age applies to a recrawl: add --recrawl")
    name = job_name(settings.enrich.output.path, args.job)
    path = settings.data_dir / "state" / f"{name}.sqlite"
    state = CrawlState.open(path, restart=args.restart, recrawl=args.recrawl, max_age_s=max_age)
    return name, state


def job_summary(name: str, state: CrawlState) -> str:
    """How the run's first line describes its job: new, resumed (with what is done), or a recrawl."""
    tally = state.tally()
    done = tally["done"] + tally["failed"]
    if state.generation > 1 and not state.resumed:
        return f"job {name}: recrawl {state.generation - 1}, {tally['earlier']:,} URLs to revisit"
    if state.resumed:
        what = "recrawl" if state.generation > 1 else "job"
        return f"resuming {what} {name}: {done:,} URLs already done, {tally['pending']:,} read and not done"
    return f"job {name} (new; state {state.path})"
