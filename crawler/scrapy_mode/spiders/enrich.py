"""The ``enrich`` spider: one request per input URL, one :class:`~enrich.stages.WorkItem` per request.

The spider only translates. Its arguments become the typed :class:`~enrich.config.EnrichConfig` (checked before
the crawl starts); each Scrapy response becomes an :class:`~enrich.record.FetchedPage`, each Scrapy failure an
error record with the same wording as the async engine's; the item pipelines run the enrich stages on them.

Usage, from the repository root::

    scrapy crawl enrich -a input=urls.txt -a output=out.jsonl [-a nlp=off] [-a concurrency=32] ...

Every input URL ends as exactly one record: invalid URLs without a request, blocked, failed and non-2xx fetches
as error records; a repeated line is skipped (``duplicates_skipped``), as in the async engine
(:class:`enrich.state.InputAdmission`). With a crawl state (``-a state=job.sqlite``), a URL already in the job's
output is skipped too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import ValidationError
from scrapy import Request, Spider
from scrapy.spidermiddlewares.httperror import HttpError

from crawler.jobs import parse_age
from crawler.scrapy_mode.config import (
    ENGINE,
    RunOptions,
    enrich_config_from_settings,
    output_configured,
    remember_run,
    run_options_from_settings,
    store_run,
)
from crawler.scrapy_mode.failures import FetchAborted, failure_reason, fetch_error
from crawler.scrapy_mode.jobstate import job_of
from crawler.scrapy_mode.logs import install_url_redaction
from crawler.scrapy_mode.middlewares import HTTP_NOTE_META, INPUT_URL_META
from crawler.scrapy_mode.responses import STARTED_META, attempts_of, fetch_duration_ms, response_item
from crawler.scrapy_mode.scheduler import release_request, scheduler_of
from crawler.scrapy_mode.timing import with_fetch_times
from enrich.config import EnrichConfig, config_error_message
from enrich.errors import ConfigError, FetchError
from enrich.policy import basic_authorization, http_error
from enrich.record import utc_now_iso
from enrich.stages import WorkItem
from enrich.state import Admission, fresh_item
from enrich.urls import iter_input_lines, read_urls, redact_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings
    from twisted.python.failure import Failure

    from enrich.state import StoredRow
    from enrich.urls import InputURL

__all__ = ["ARGUMENTS", "INPUT_URL_META", "EnrichSpider", "failure_reason", "fetch_error", "parse_arguments"]

CONDITIONAL_META = "enrich_conditional"
"""Request meta key set when the request carries a recrawl's validators: a 304 to it is a page."""

# --- Arguments ------------------------------------------------------------------------------------------------------


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"on", "true", "yes", "1"}:
        return True
    if lowered in {"off", "false", "no", "0"}:
        return False
    raise ValueError("must be on or off (also true/false, yes/no, 1/0)")


def _parse_int(value: str) -> int:
    try:
        return int(value.strip().replace("_", ""))
    except ValueError:
        raise ValueError("must be a whole number") from None


def _parse_float(value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ValueError("must be a number") from None


def _parse_age(value: str) -> float:
    try:
        return parse_age(value)
    except ConfigError as exc:
        raise ValueError("must be seconds, or a number with s, m, h, d or w") from exc


def _parse_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


@dataclass(frozen=True, slots=True)
class Argument:
    """A spider argument: what it sets (a config key ``section.field`` or a run option) and how it is parsed."""

    target: str
    parse: Callable[[str], Any]
    help: str

    @property
    def config_key(self) -> tuple[str, str] | None:
        section, _, name = self.target.partition(".")
        return (section, name) if name else None


ARGUMENTS: dict[str, Argument] = {
    # what to read and write
    "input": Argument("input", _parse_text, "input file of URLs (text, CSV or JSONL; - for stdin); required"),
    "output": Argument("output.path", _parse_text, "JSONL output file"),
    "config": Argument("config", _parse_text, "YAML config file (sections fetch, nlp, output...)"),
    "stats_file": Argument("stats_file", _parse_text, "write the run's statistics as JSON to this file"),
    "input_format": Argument("input_format", _parse_text, "auto, text, csv or jsonl"),
    "input_column": Argument("input_column", _parse_text, "CSV column holding the URL"),
    "input_field": Argument("input_field", _parse_text, "JSONL key holding the URL"),
    "sqlite": Argument("output.sqlite_path", _parse_text, "also write records to this SQLite database"),
    "postgres": Argument("output.postgres_dsn", _parse_text, "also upsert records into PostgreSQL (a DSN)"),
    "batch_size": Argument("output.batch_size", _parse_int, "records per output flush"),
    "warc": Argument("warc.dir", _parse_text, "also write every request and response as WARC files in this folder"),
    # fetching
    "concurrency": Argument("fetch.max_concurrency", _parse_int, "requests in flight, 1 or more"),
    "per_host": Argument("fetch.per_host_limit", _parse_int, "requests in flight per host; 0 for no limit"),
    "timeout": Argument("fetch.timeout_s", _parse_float, "seconds allowed for one attempt, body included"),
    "retries": Argument("fetch.retries", _parse_int, "retries after the first attempt, 0 to 20"),
    "max_bytes": Argument("fetch.max_response_bytes", _parse_int, "largest response body, 1024 or more"),
    "max_redirects": Argument("fetch.max_redirects", _parse_int, "redirects followed, 0 to 100"),
    "robots": Argument("politeness.respect_robots", _parse_bool, "obey robots.txt: on or off"),
    "contact": Argument("fetch.contact", _parse_text, "contact added to the User-Agent"),
    # NLP
    "nlp": Argument("nlp.enabled", _parse_bool, "run the NLP stage: on or off"),
    "nlp_batch_size": Argument("nlp.batch_size", _parse_int, "texts per spaCy batch"),
    "nlp_workers": Argument("nlp.workers", _parse_int, "NLP worker threads"),
    "model": Argument("nlp.model", _parse_text, "spaCy model package or path"),
    # the job
    "state": Argument("state", _parse_text, "crawl state file: resume after a crash, fetch only new URLs after"),
    "max_age": Argument("max_age", _parse_age, "in a recrawl, reuse records fetched less than this ago (30m, 2d)"),
    "recrawl": Argument("recrawl", _parse_bool, "with a state: revisit every URL done, conditionally: on or off"),
}
"""Every ``-a name=value`` the spider accepts. An unknown name is an error, not silently ignored."""


def _usage() -> str:
    return "\n".join(f"  -a {name}=...  {arg.help}" for name, arg in ARGUMENTS.items())


def parse_arguments(arguments: dict[str, Any], settings: BaseSettings) -> tuple[EnrichConfig, RunOptions]:
    """Turn spider arguments (over the ``ENRICH_*`` settings) into the run's config and options.

    Raises:
        ConfigError: an unknown argument, a value of the wrong kind or out of range, an unreadable config file or
            a missing input; the message names the argument and what is allowed.
    """
    unknown = sorted(set(arguments) - set(ARGUMENTS))
    if unknown:
        raise ConfigError(
            f"unknown spider argument(s): {', '.join(unknown)}. Allowed arguments:\n{_usage()}",
        )
    overrides: dict[str, dict[str, Any]] = {}
    run: dict[str, Any] = {}
    for name, raw in arguments.items():
        argument = ARGUMENTS[name]
        try:
            value = argument.parse(str(raw))
        except ValueError as exc:
            raise ConfigError(f"invalid spider argument {name}={raw!r}: {exc} ({argument.help})") from None
        key = argument.config_key
        if key is None:
            run[argument.target] = value
        else:
            overrides.setdefault(key[0], {})[key[1]] = value

    base_settings = settings.copy()
    if "config" in run:
        base_settings.set("ENRICH_CONFIG_FILE", run.pop("config"), priority="cmdline")
    base = enrich_config_from_settings(base_settings)
    try:
        config = base.replace(**overrides) if overrides else base
    except ConfigError as exc:
        raise ConfigError(_argument_error(exc, arguments)) from exc

    defaults = run_options_from_settings(base_settings)
    try:
        options = RunOptions(
            input=run.get("input", defaults.input),
            input_format=run.get("input_format", defaults.input_format),
            input_column=run.get("input_column", defaults.input_column),
            input_field=run.get("input_field", defaults.input_field),
            stats_file=Path(run["stats_file"]) if "stats_file" in run else defaults.stats_file,
            progress_interval_s=defaults.progress_interval_s,
            state=Path(run["state"]) if "state" in run else defaults.state,
            max_age_s=run.get("max_age", defaults.max_age_s),
            recrawl=run.get("recrawl", defaults.recrawl),
            write_output=defaults.write_output or output_configured(base_settings, overrides=overrides),
        )
    except ConfigError as exc:
        raise ConfigError(f"invalid spider argument: {exc}") from None
    if not settings.get("ENRICH_REDIS_URL"):  # a distributed worker reads the job's queue instead
        _check_input(options)
    return config, options


def _argument_error(exc: ConfigError, arguments: dict[str, Any]) -> str:
    """Name the spider argument behind each invalid config key, where there is one."""
    cause = exc.__cause__
    if not isinstance(cause, ValidationError):
        return str(exc)
    by_key = {arg.target: name for name, arg in ARGUMENTS.items() if arg.config_key is not None}
    lines = []
    for err in cause.errors():
        key = ".".join(str(part) for part in err["loc"])
        name = by_key.get(key)
        if name is not None and name in arguments:
            lines.append(f"-a {name}={arguments[name]}: {err['msg']} ({ARGUMENTS[name].help})")
        else:
            lines.append(f"{key}: {err['msg']}")
    if not lines:
        return config_error_message(cause)
    if len(lines) == 1:
        return f"invalid spider argument {lines[0]}"
    return "invalid spider arguments:\n  " + "\n  ".join(lines)


def _check_input(options: RunOptions) -> None:
    if options.input is None:
        raise ConfigError(f"no input: pass -a input=urls.txt (one URL per line; CSV and JSONL too).\n{_usage()}")
    if options.input == "-":
        return
    path = Path(options.input)
    if not path.is_file():
        raise ConfigError(f"input file {path} does not exist or is not a file (-a input=...)")
    # read the first entry now, so a CSV without the URL column stops the run before it starts
    entries = iter_input_lines(path, fmt=options.input_format, column=options.input_column, field=options.input_field)
    try:
        next(entries, None)
    finally:
        close = getattr(entries, "close", None)  # a generator: closing it closes the file
        if close is not None:
            close()


# --- Failures -------------------------------------------------------------------------------------------------------


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without ``user:password@`` and, when there were some, a Basic ``Authorization`` header."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    header = basic_authorization(unquote(parts.username), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])), {"Authorization": header}


# --- The spider -----------------------------------------------------------------------------------------------------


class EnrichSpider(Spider):
    """Fetches every input URL once and yields one :class:`WorkItem` for it, page or error.

    Args:
        config: the validated run config (fetch limits are already in Scrapy's settings).
        options: input file and format, stats file.
    """

    name = "enrich"

    def __init__(self, *, config: EnrichConfig, options: RunOptions) -> None:
        super().__init__()
        self.config = config
        self.options = options

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        """Parse ``-a`` arguments into the typed config and write it into the crawler's settings, which are still
        open at this point: the pipelines and Scrapy's middlewares are built from them right after.

        Raises:
            ConfigError: a bad argument; the crawl does not start.
        """
        if args:
            raise ConfigError(f"the enrich spider takes only name=value arguments, got {args!r}")
        try:
            config, options = parse_arguments(kwargs, crawler.settings)
        except ConfigError as exc:
            # printed plainly too: Scrapy logs the exception with a long traceback that hides the message
            print(f"scrapy crawl enrich: {exc}", file=sys.stderr)
            raise
        store_run(crawler.settings, config, options)
        remember_run(crawler, config, options)
        install_url_redaction()
        spider: Self = super().from_crawler(crawler, config=config, options=options)
        return spider

    async def start(self) -> AsyncIterator[Request | WorkItem]:
        """Stream the input: an error item for an invalid URL, a request for a valid one.

        The input is read ahead of the fetches up to the frontier's look-ahead bound (``frontier.max_pending``
        queued requests, ``frontier.max_pending_mb``), never further: a file of millions of URLs is never held
        whole, and input grouped by site (all URLs of a slow or delayed site first) does not starve the other
        sites, whose requests are read and fetched while the slow site's wait in its own queue.
        """
        # Scrapy reads start() whenever its downloader is full, so the bound is ours to keep: wait while the
        # frontier holds max_pending requests (FrontierScheduler; without it, Scrapy's own scheduler holds all).
        scheduler = scheduler_of(self.crawler)
        job = job_of(self.crawler)
        if job.feed is not None:  # a distributed worker: the job's queue is the input
            async for entry in job.feed.entries():
                if scheduler is not None:
                    await scheduler.wait_for_room()
                yield self._request_or_error(entry)
            return
        assert self.options.input is not None
        lines = iter_input_lines(
            self.options.input,
            fmt=self.options.input_format,
            column=self.options.input_column,
            field=self.options.input_field,
        )
        state = job.state
        for entry in read_urls(lines):
            kind, revisit = job.admission.admit(entry.url, priority=entry.priority)
            if kind is Admission.FRESH and state is not None:
                item = fresh_item(state, entry.url, engine=ENGINE)
                if item is not None:
                    yield item
                    continue
            elif not kind.fetch:
                continue  # counted (duplicates_skipped, already_done in the stats)
            if scheduler is not None:
                await scheduler.wait_for_room()
            yield self._request_or_error(entry, revisit)

    def _request_or_error(self, entry: InputURL, revisit: StoredRow | None = None) -> Request | WorkItem:
        if entry.error is not None or entry.fetch_url is None:
            error = entry.error or ValueError("no URL")
            return WorkItem.from_error(entry.url, error, engine=ENGINE, stage="input")
        url, headers = _split_credentials(entry.fetch_url)
        meta: dict[str, Any] = {INPUT_URL_META: entry.url}
        if revisit is not None and revisit.final_url == entry.url and revisit.conditional_headers():
            # a URL that answered itself last time: ask whether it changed (a redirected one is compared by hash)
            headers.update(revisit.conditional_headers())
            meta[CONDITIONAL_META] = True
        try:
            return Request(
                url,
                callback=self.parse_page,
                errback=self.fetch_failed,
                headers=headers or None,
                dont_filter=True,
                priority=entry.priority,
                meta=meta,
            )
        except ValueError as exc:  # a URL our validator accepts but Scrapy's does not
            return WorkItem.from_error(entry.url, FetchError(f"Invalid URL: {exc}", url=entry.url), engine=ENGINE)

    def parse_page(self, response: Response) -> list[WorkItem]:
        """A response: a page for the stages when its status is a success, an ``HTTPError`` record otherwise.

        Returns a list, not a generator: Scrapy parses a generator callback's source on every response (its cache
        is keyed by the bound method, a new object per request), which cost a tenth of the engine's CPU.
        """
        release_request(self.crawler, response.request)  # a safety net: the middleware has released it
        meta = response.meta
        url: str = meta.get(INPUT_URL_META, response.request.url if response.request else response.url)
        item = response_item(
            response,
            url=url,
            max_bytes=self.config.fetch.max_response_bytes,
            conditional=bool(meta.get(CONDITIONAL_META)),
            note=meta.get(HTTP_NOTE_META),
        )
        return with_fetch_times([item], meta)

    def fetch_failed(self, failure: Failure) -> list[WorkItem]:
        """A request that produced no usable response: one error record, with the attempts it took."""
        request: Request | None = getattr(failure, "request", None)
        release_request(self.crawler, request)  # a safety net: the middleware has released it
        meta: dict[str, Any] = request.meta if request is not None else {}
        url: str = meta.get(INPUT_URL_META, request.url if request is not None else "(unknown)")
        if isinstance(failure.value, FetchAborted) and failure.value.record is not None:
            return [failure.value.record]  # e.g. a retry refused by an open circuit keeps the answer it retried
        if isinstance(failure.value, HttpError):  # only when HTTPERROR_ALLOW_ALL is turned off
            response = failure.value.response
            return [
                WorkItem.from_error(
                    url,
                    http_error(response.status, attempts=attempts_of(meta)),
                    engine=ENGINE,
                    attempts=attempts_of(meta),
                    fetch_duration_ms=fetch_duration_ms(meta),
                    fetched_at=utc_now_iso(),
                    status=response.status,
                    final_url=redact_url(response.url),
                )
            ]
        error = fetch_error(failure, url=url, attempts=attempts_of(meta), config=self.config)
        self.logger.info("%s: %s", url, error, extra={"url": url, "stage": "fetch"})
        elapsed_ms = fetch_duration_ms(meta) if STARTED_META in meta else None
        items = [WorkItem.from_error(url, error, engine=ENGINE, attempts=error.attempts, fetch_duration_ms=elapsed_ms)]
        return with_fetch_times(items, meta)
