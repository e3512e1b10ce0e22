"""The run of a Scrapy-mode crawler: its :class:`~enrich.config.EnrichConfig` and run options, read from the
``ENRICH_*`` settings once per crawler.

The setting names and their defaults are declared in :mod:`crawler.scrapy_mode.settings`; this module is the one
that reads and writes them. It imports no other module of Scrapy mode, so the spider, the middlewares, the
scheduler and the pipelines all import it at the top (``settings`` imports them, to list them as class objects).

:func:`run_of` is what a component's ``from_crawler`` calls: the enrich spider resolves its arguments and
:func:`remember_run` keeps the result for its crawler; any other spider (the add-on) gets the run built from the
settings on first use. Either way the config is validated once per crawler, not once per component.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from weakref import WeakKeyDictionary

from enrich.config import EnrichConfig, load_config
from enrich.errors import ConfigError
from enrich.policy.robots import user_agent_token
from enrich.urls import InputFormat

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

__all__ = [
    "ENGINE",
    "RunOptions",
    "ScrapyRun",
    "enrich_config_from_settings",
    "output_configured",
    "remember_run",
    "run_of",
    "run_options_from_settings",
    "scrapy_settings_for",
    "store_run",
]

ENGINE = "scrapy"
"""The ``engine`` value of Scrapy mode's records and stats."""

_INPUT_FORMATS: tuple[str, ...] = get_args(InputFormat)

ResponseSelection = Literal["all", "marked"]
_RESPONSE_SELECTIONS: tuple[str, ...] = get_args(ResponseSelection)

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
    responses: ResponseSelection = "all"
    """With the add-on: which responses of a spider become records, ``all`` or ``marked`` (requests whose meta
    has ``enrich: True``)."""
    write_output: bool = False
    """Write the JSONL output (``output.path``). Only when one was asked for (``-a output=``, ``ENRICH_OUTPUT``,
    ``output.path`` in ``ENRICH_CONFIG`` or the config file): a run with feed exports alone (``-O out.csv``)
    writes nothing else."""

    def __post_init__(self) -> None:
        if self.input_format not in _INPUT_FORMATS:
            raise ConfigError(f"input_format must be one of {', '.join(_INPUT_FORMATS)}, got {self.input_format!r}")
        if not self.input_column or not self.input_field:
            raise ConfigError("input_column and input_field must not be empty")
        if self.progress_interval_s < 0:
            raise ConfigError(f"progress interval must be >= 0 seconds, got {self.progress_interval_s}")
        if self.max_age_s is not None and self.max_age_s < 0:
            raise ConfigError(f"max_age must be >= 0 seconds, got {self.max_age_s}")
        if self.responses not in _RESPONSE_SELECTIONS:
            raise ConfigError(
                f"ENRICH_RESPONSES must be one of {', '.join(_RESPONSE_SELECTIONS)}, got {self.responses!r}"
            )


@dataclass(frozen=True, slots=True)
class ScrapyRun:
    """A crawler's resolved run: the validated config and the run options."""

    config: EnrichConfig
    options: RunOptions


_RUNS: WeakKeyDictionary[Crawler, ScrapyRun] = WeakKeyDictionary()


def run_of(crawler: Crawler) -> ScrapyRun:
    """The crawler's run: the one :func:`remember_run` kept, else read from its settings now (once).

    Raises:
        ConfigError: a setting is invalid.
    """
    run = _RUNS.get(crawler)
    if run is None:
        settings = crawler.settings
        run = _RUNS[crawler] = ScrapyRun(enrich_config_from_settings(settings), run_options_from_settings(settings))
    return run


def remember_run(crawler: Crawler, config: EnrichConfig, options: RunOptions) -> None:
    """Keep the run a spider resolved (from its arguments) as the crawler's: every component builds from it."""
    _RUNS[crawler] = ScrapyRun(config, options)


def enrich_config_from_settings(
    settings: BaseSettings, *, overrides: dict[str, dict[str, Any]] | None = None
) -> EnrichConfig:
    """The run's :class:`EnrichConfig`: ``ENRICH_CONFIG_FILE`` (or defaults), then ``ENRICH_CONFIG``, then
    ``ENRICH_OUTPUT``, then ``overrides``.

    Raises:
        ConfigError: the file cannot be read, or a value is invalid (the message names the key).
    """
    config = _config_file(settings)
    sections: dict[str, dict[str, Any]] = {}
    for layer in (settings.getdict("ENRICH_CONFIG"), _output_layer(settings), overrides or {}):
        for section, values in layer.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config section {section!r} must be a mapping of keys, got {values!r}")
            sections.setdefault(section, {}).update(values)
    return config.replace(**sections) if sections else config


def _config_file(settings: BaseSettings) -> EnrichConfig:
    path = settings.get("ENRICH_CONFIG_FILE")
    return load_config(Path(path)) if path else EnrichConfig()


def _output_layer(settings: BaseSettings) -> dict[str, dict[str, Any]]:
    output = settings.get("ENRICH_OUTPUT")
    return {"output": {"path": output}} if output else {}


def output_configured(settings: BaseSettings, *, overrides: dict[str, dict[str, Any]] | None = None) -> bool:
    """Whether the settings (or ``overrides``) name a JSONL output: ``ENRICH_OUTPUT``, or ``output.path`` in
    ``ENRICH_CONFIG``, in ``overrides`` or in the config file. The config's default path does not count.

    Raises:
        ConfigError: the config file cannot be read.
    """
    if settings.get("ENRICH_OUTPUT"):
        return True
    for layer in (settings.getdict("ENRICH_CONFIG"), overrides or {}):
        output = layer.get("output")
        if isinstance(output, dict) and output.get("path"):
            return True
    # a section loaded from a file knows which of its fields the file set
    return bool(settings.get("ENRICH_CONFIG_FILE")) and "path" in _config_file(settings).output.model_fields_set


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
        responses=settings.get("ENRICH_RESPONSES") or "all",
        write_output=output_configured(settings),
    )


def store_run(settings: BaseSettings, config: EnrichConfig, options: RunOptions) -> None:
    """Write a resolved run into ``settings``: the ``ENRICH_*`` values and the Scrapy settings the config maps onto.

    ``ENRICH_*`` are stored at ``cmdline`` priority (they come from spider arguments); Scrapy's own settings at
    ``spider`` priority, so an explicit ``-s CONCURRENT_REQUESTS=...`` still wins over the config. Without an
    output (``options.write_output`` false) the config is stored without ``output.path``, so reading the settings
    back says the same.
    """
    stored = config.model_dump(mode="json")
    if not options.write_output:
        del stored["output"]["path"]
    settings.setdict(
        {
            "ENRICH_CONFIG": stored,
            "ENRICH_OUTPUT": str(config.output.path) if options.write_output else None,
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
