"""Scrapy settings of Scrapy mode, and the only place our own ``ENRICH_*`` setting names are defined.

Three groups, in this order:

* **Scrapy itself**: project, reactor, logging and HTTP error handling. The fetch knobs (concurrency, timeouts,
  retries, size cap, robots.txt...) are *not* written here by hand: they come from the typed
  :class:`~enrich.config.EnrichConfig` through :func:`scrapy_settings_for`, which the spider applies when it
  starts, so both engines read the same numbers from the same config.
* **ENRICH_***: what a run is about (input, output, config file, overrides, stats). Spider arguments
  (``-a input=...``) write these; ``-s ENRICH_...=...`` on the command line works too.
* **Item pipelines**: the adapters onto the enrich stages, as class objects.

How to add an ``ENRICH_*`` setting:

1. Add ``ENRICH_<NAME> = <default>`` to the ``ENRICH_*`` group below, with an attribute docstring under it.
2. Read it in :func:`run_options_from_settings` (run options) or :func:`enrich_config_from_settings` (anything
   that belongs in :class:`EnrichConfig`; prefer a field there, so the async engine gets it too), and write it in
   :func:`store_run`.
3. If users should set it with ``-a``, add the argument to ``ARGUMENTS`` in
   :mod:`crawler.scrapy_mode.spiders.enrich`. Nothing else may spell the setting name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from crawler.scrapy_mode.bodies import CappedHttpCompressionMiddleware, SizeCapMiddleware
from crawler.scrapy_mode.contacts import ContactPipeline
from crawler.scrapy_mode.middlewares import BackoffRetryMiddleware, PolicyMiddleware
from crawler.scrapy_mode.pipelines import ExtractPipeline, NLPPipeline, SinkPipeline
from crawler.scrapy_mode.scheduler import FrontierScheduler
from crawler.scrapy_mode.warc import WarcMiddleware
from enrich.config import EnrichConfig, load_config
from enrich.errors import ConfigError
from enrich.policy.robots import user_agent_token
from enrich.urls import InputFormat

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

__all__ = [
    "RunOptions",
    "enrich_config_from_settings",
    "run_options_from_settings",
    "scrapy_settings_for",
    "store_run",
]

# --- Scrapy itself -------------------------------------------------------------------------------------------------

BOT_NAME = "webenrich"
SPIDER_MODULES = ["crawler.scrapy_mode.spiders"]
NEWSPIDER_MODULE = "crawler.scrapy_mode.spiders"
COMMANDS_MODULE = "crawler.scrapy_mode.commands"
"""Our ``crawl`` command: Scrapy's, exiting non-zero when the output failed (see its module)."""

TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
"""The stages are asyncio code (``asyncio.get_running_loop()``, executors, queues): they need the asyncio reactor."""

LOG_LEVEL = "INFO"
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
"""Scrapy >= 2.19's remote-control extension writes job files and listens for commands; a batch run needs neither."""

CONCURRENT_ITEMS = 1
"""Items processed in parallel *per response*. Our spider yields one item per response, and Scrapy starts this many
worker tasks for every response whatever it yields: at the default of 100 that was a fifth of the engine's CPU
(py-spy, fetch profile, 3,000 URLs) for nothing. Responses are still processed concurrently with one another."""

HTTPERROR_ALLOW_ALL = True
"""Every response reaches the spider's callback, which turns a status >= 300 into an ``HTTPError`` record: one
record per input URL, like the async engine, instead of a response dropped by ``HttpErrorMiddleware``."""

RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
RETRY_GIVE_UP_LOG_LEVEL = "WARNING"
"""A URL that fails for good is an outcome (it gets an error record), not an error of the run."""
DOWNLOADER_MIDDLEWARES = {
    # robots.txt is obeyed by PolicyMiddleware through enrich.policy.robots (the async engine's rules and wording,
    # an unreachable robots.txt disallowing the site for a while); Scrapy's own middleware would allow everything
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    # same place as Scrapy's; cuts a decompressed body at the size cap instead of dropping the response
    "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware": None,
    CappedHttpCompressionMiddleware: 590,
    # same place as Scrapy's; its retries, with the async engine's backoff instead of retrying at once
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    BackoffRetryMiddleware: 550,
    # after the redirect (600) and retry (550) middlewares on the way in, before them on the way out: it sees every
    # attempt's answer or exception (reported to the frontier: the site's backoff, cap and circuit) and every hop
    PolicyMiddleware: 650,
    # WARC output (only when warc.dir is set): between the size cap (700) and everything that changes or replaces
    # an answer on its way back (policy 650, redirect 600, decompression 590, retry 550), so it archives each
    # attempt and redirect hop with the body as received, cut at the cap
    WarcMiddleware: 675,
    SizeCapMiddleware: 700,
}

DOWNLOAD_DELAY_JITTER = 0.0
"""PolicyMiddleware sets a download slot's ``delay`` to the robots.txt Crawl-delay: a minimum, not to be jittered."""

SCHEDULER = FrontierScheduler
"""The shared frontier (:mod:`enrich.frontier`) decides which request is downloaded next, as in the async engine:
per-site queues, in-flight caps with congestion control (the ``aimd`` section), ``Crawl-delay``, backoff and
circuit breaker. Redirect hops and retries come back through it, each under its own site's rules."""

REDIRECT_PRIORITY_ADJUST = 0
RETRY_PRIORITY_ADJUST = 0
"""A redirect hop or a retry keeps its input URL's priority, as in the async engine (Scrapy adjusts them by +2/-1)."""

AUTOTHROTTLE_ENABLED = False
"""Off: congestion control is the frontier's, per site (the ``aimd`` section: each site's in-flight cap grows while
it answers well and shrinks on 429/503, timeouts and rising latency). AutoThrottle adapts a per-slot *delay* to
latency instead, and would only add to it."""

# --- ENRICH_*: what the run is about --------------------------------------------------------------------------------

ENRICH_CONFIG_FILE: str | None = None
"""YAML file holding an :class:`EnrichConfig` (``-a config=path.yml``); defaults apply without one."""

ENRICH_CONFIG: dict[str, dict[str, Any]] = {}
"""Config overrides by section, e.g. ``{"fetch": {"timeout_s": 5}}``, applied over ``ENRICH_CONFIG_FILE``. The
spider stores the fully resolved config here, so the pipelines read exactly what the spider validated."""

ENRICH_INPUT: str | None = None
"""The input file (``-a input=urls.txt``; ``-`` is standard input). Required."""

ENRICH_INPUT_FORMAT: str = "auto"
"""``auto`` (by suffix), ``text``, ``csv`` or ``jsonl``."""

ENRICH_INPUT_COLUMN: str = "url"
"""The CSV column holding the URL."""

ENRICH_INPUT_FIELD: str = "url"
"""The JSONL key holding the URL."""

ENRICH_OUTPUT: str | None = None
"""The JSONL output file (``-a output=out.jsonl``); overrides ``output.path`` of the config."""

ENRICH_STATS_FILE: str | None = None
"""Where to write the run's statistics as JSON at the end (``-a stats_file=stats.json``); none by default."""

ENRICH_PROGRESS_INTERVAL_S: float = 30.0
"""Seconds between two progress lines in the log; 0 turns them off."""

ENRICH_STATE: str | None = None
"""The job's crawl state, an SQLite file (``-a state=job.sqlite``): the crawl resumes where a killed run stopped,
and a finished one fetches only new URLs (:mod:`enrich.state`). None by default."""

ENRICH_MAX_AGE_S: float | None = None
"""With a state in a recrawl: URLs fetched less than this many seconds ago keep their record (``-a max_age=2d``)."""

ENRICH_RECRAWL: bool = False
"""With a state: revisit every URL done (conditional requests) once the last crawl finished (``-a recrawl=on``)."""

ENRICH_METRICS_PORT: int | None = None
"""Serve Prometheus metrics on this port while the spider runs (``-s ENRICH_METRICS_PORT=9100``; the CLI's
``--metrics-port``); none by default. Read by :mod:`crawler.scrapy_mode.metrics`."""

ENRICH_METRICS_ADDRESS: str = "127.0.0.1"
"""The address ``ENRICH_METRICS_PORT`` listens on."""

ENRICH_METRICS_TEXTFILE: str | None = None
"""Write the run's Prometheus metrics to this file when the spider closes (node_exporter's textfile collector;
the CLI's ``--metrics-textfile``); none by default."""

# --- Item pipelines -------------------------------------------------------------------------------------------------

ITEM_PIPELINES = {ContactPipeline: 50, ExtractPipeline: 100, NLPPipeline: 200, SinkPipeline: 300}

# --- Reading and writing the ENRICH_* settings ---------------------------------------------------------------------

_INPUT_FORMATS: tuple[str, ...] = get_args(InputFormat)

_UNLIMITED_PER_DOMAIN = 10_000
"""``per_host_limit: 0`` means no per-host limit; Scrapy wants a number, and this one is the config's own ceiling
of ``max_concurrency``."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What a Scrapy-mode run reads and reports, beside the :class:`EnrichConfig`."""

    input: str | None = None
    input_format: InputFormat = "auto"
    input_column: str = "url"
    input_field: str = "url"
    stats_file: Path | None = None
    progress_interval_s: float = 30.0
    state: Path | None = None
    """The job's crawl state file (resume, recrawl); ``None`` keeps none."""
    max_age_s: float | None = None
    """In a recrawl, URLs fetched less than this long ago keep their stored record, unfetched."""
    recrawl: bool = False
    """Revisit what the state holds as done, once its last crawl finished (an unfinished one is resumed first)."""

    def __post_init__(self) -> None:
        if self.input_format not in _INPUT_FORMATS:
            raise ConfigError(f"input_format must be one of {', '.join(_INPUT_FORMATS)}, got {self.input_format!r}")
        if not self.input_column or not self.input_field:
            raise ConfigError("input_column and input_field must not be empty")
        if self.progress_interval_s < 0:
            raise ConfigError(f"progress interval must be >= 0 seconds, got {self.progress_interval_s}")
        if self.max_age_s is not None and self.max_age_s < 0:
            raise ConfigError(f"max_age must be >= 0 seconds, got {self.max_age_s}")


def enrich_config_from_settings(
    settings: BaseSettings, *, overrides: dict[str, dict[str, Any]] | None = None
) -> EnrichConfig:
    """The run's :class:`EnrichConfig`: ``ENRICH_CONFIG_FILE`` (or defaults), then ``ENRICH_CONFIG``, then
    ``ENRICH_OUTPUT``, then ``overrides``.

    Raises:
        ConfigError: the file cannot be read, or a value is invalid (the message names the key).
    """
    path = settings.get("ENRICH_CONFIG_FILE")
    config = load_config(Path(path)) if path else EnrichConfig()
    sections: dict[str, dict[str, Any]] = {}
    for layer in (settings.getdict("ENRICH_CONFIG"), _output_layer(settings), overrides or {}):
        for section, values in layer.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config section {section!r} must be a mapping of keys, got {values!r}")
            sections.setdefault(section, {}).update(values)
    return config.replace(**sections) if sections else config


def _output_layer(settings: BaseSettings) -> dict[str, dict[str, Any]]:
    output = settings.get("ENRICH_OUTPUT")
    return {"output": {"path": output}} if output else {}


def run_options_from_settings(settings: BaseSettings) -> RunOptions:
    """The run options held in the ``ENRICH_*`` settings.

    Raises:
        ConfigError: a value is invalid.
    """
    stats_file = settings.get("ENRICH_STATS_FILE")
    state = settings.get("ENRICH_STATE")
    try:
        interval = settings.getfloat("ENRICH_PROGRESS_INTERVAL_S", 30.0)
        max_age = settings.get("ENRICH_MAX_AGE_S")
        max_age_s = float(max_age) if max_age not in (None, "") else None
    except ValueError as exc:
        raise ConfigError(f"ENRICH_PROGRESS_INTERVAL_S and ENRICH_MAX_AGE_S must be numbers of seconds: {exc}") from exc
    return RunOptions(
        input=settings.get("ENRICH_INPUT") or None,
        input_format=settings.get("ENRICH_INPUT_FORMAT") or "auto",
        input_column=settings.get("ENRICH_INPUT_COLUMN") or "url",
        input_field=settings.get("ENRICH_INPUT_FIELD") or "url",
        stats_file=Path(stats_file) if stats_file else None,
        progress_interval_s=interval,
        state=Path(state) if state else None,
        max_age_s=max_age_s,
        recrawl=settings.getbool("ENRICH_RECRAWL"),
    )


def store_run(settings: BaseSettings, config: EnrichConfig, options: RunOptions) -> None:
    """Write a resolved run into ``settings``: the ``ENRICH_*`` values and the Scrapy settings the config maps onto.

    ``ENRICH_*`` are stored at ``cmdline`` priority (they come from spider arguments); Scrapy's own settings at
    ``spider`` priority, so an explicit ``-s CONCURRENT_REQUESTS=...`` still wins over the config.
    """
    settings.setdict(
        {
            "ENRICH_CONFIG": config.model_dump(mode="json"),
            "ENRICH_OUTPUT": str(config.output.path),
            "ENRICH_INPUT": options.input,
            "ENRICH_INPUT_FORMAT": options.input_format,
            "ENRICH_INPUT_COLUMN": options.input_column,
            "ENRICH_INPUT_FIELD": options.input_field,
            "ENRICH_STATS_FILE": str(options.stats_file) if options.stats_file else None,
            "ENRICH_PROGRESS_INTERVAL_S": options.progress_interval_s,
            "ENRICH_STATE": str(options.state) if options.state else None,
            "ENRICH_MAX_AGE_S": options.max_age_s,
            "ENRICH_RECRAWL": options.recrawl,
        },
        priority="cmdline",
    )
    settings.setdict(scrapy_settings_for(config), priority="spider")


def scrapy_settings_for(config: EnrichConfig) -> dict[str, Any]:
    """Scrapy's own settings for an :class:`EnrichConfig`.

    ``CONCURRENT_REQUESTS_PER_DOMAIN`` is the smaller of ``politeness.per_domain_concurrency`` and
    ``fetch.per_host_limit`` (when set): the frontier's largest per-site cap (a site's cap adapts below it), kept
    as Scrapy's upper bound too. Scrapy's download slots are keyed by host name, which is the frontier's site.

    ``DOWNLOAD_MAXSIZE`` is 0: :class:`~crawler.scrapy_mode.bodies.SizeCapMiddleware` and
    :class:`~crawler.scrapy_mode.bodies.CappedHttpCompressionMiddleware` cut bodies at
    ``max_response_bytes`` and keep them (flagged ``truncated``), where Scrapy's cap would drop them.

    Retries wait like the async engine's (backoff from ``backoff_base_s``, ``Retry-After`` honoured) in the
    frontier, through :class:`~crawler.scrapy_mode.middlewares.BackoffRetryMiddleware`; Scrapy alone would retry
    at once. Per-site congestion control (``aimd``) and the look-ahead bound (``frontier``) are the frontier's
    (:class:`~crawler.scrapy_mode.scheduler.FrontierScheduler`), not Scrapy settings.

    Scrapy has no equivalent for ``dns_ttl_s`` (its DNS cache has no TTL).
    """
    fetch = config.fetch
    per_host = fetch.per_host_limit or _UNLIMITED_PER_DOMAIN
    return {
        "CONCURRENT_REQUESTS": fetch.max_concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": min(config.politeness.per_domain_concurrency, per_host),
        "DOWNLOAD_TIMEOUT": fetch.timeout_s,
        "DNS_TIMEOUT": fetch.connect_timeout_s,
        "DNSCACHE_ENABLED": fetch.dns_ttl_s > 0,
        "DOWNLOAD_MAXSIZE": 0,
        "DOWNLOAD_WARNSIZE": 0,
        "RETRY_ENABLED": fetch.retries > 0,
        "RETRY_TIMES": fetch.retries,
        "REDIRECT_ENABLED": True,
        "REDIRECT_MAX_TIMES": fetch.max_redirects,
        "USER_AGENT": fetch.full_user_agent,
        "ROBOTSTXT_OBEY": config.politeness.respect_robots,
        # the product token, as the async engine matches robots.txt groups (``webenrich``, not the whole string)
        "ROBOTSTXT_USER_AGENT": user_agent_token(fetch.full_user_agent),
    }
