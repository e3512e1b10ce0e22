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
2. Read it in :func:`~crawler.scrapy_mode.config.run_options_from_settings` (run options) or
   :func:`~crawler.scrapy_mode.config.enrich_config_from_settings` (anything that belongs in :class:`EnrichConfig`;
   prefer a field there, so the async engine gets it too), and write it in
   :func:`~crawler.scrapy_mode.config.store_run`: :mod:`crawler.scrapy_mode.config` is the one module that reads
   and writes them (it imports none of the components listed here, so they can all import it).
3. If users should set it with ``-a``, add the argument to ``ARGUMENTS`` in
   :mod:`crawler.scrapy_mode.spiders.enrich`. Nothing else may spell the setting name.
"""

from __future__ import annotations

from typing import Any

from crawler.scrapy_mode.bodies import CappedHttpCompressionMiddleware, SizeCapMiddleware
from crawler.scrapy_mode.config import (
    RunOptions,
    enrich_config_from_settings,
    run_options_from_settings,
    scrapy_settings_for,
    store_run,
)
from crawler.scrapy_mode.contacts import ContactPipeline
from crawler.scrapy_mode.exporters import RecordCsvItemExporter, RecordXmlItemExporter
from crawler.scrapy_mode.middlewares import PolicyMiddleware
from crawler.scrapy_mode.pipelines import ExtractPipeline, NLPPipeline, SinkPipeline
from crawler.scrapy_mode.retry import BackoffRetryMiddleware
from crawler.scrapy_mode.scheduler import FrontierScheduler
from crawler.scrapy_mode.warc import WarcMiddleware

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

FEED_EXPORT_ENCODING = "utf-8"
"""Feed exports (``-O out.jsonl``, ``FEEDS``) write text as it is, like the JSONL sink, not as ``\\u`` escapes."""

FEED_EXPORTERS = {"csv": RecordCsvItemExporter, "xml": RecordXmlItemExporter}
"""CSV with nested fields as JSON text and XML with empty elements for missing values (see
:mod:`crawler.scrapy_mode.exporters`); every other format is Scrapy's own. The items are the records."""

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
"""The JSONL output file (``-a output=out.jsonl``); overrides ``output.path`` of the config. Without it (nor an
``output.path`` in the config) the run writes no JSONL file: feed exports (``-O out.jsonl``) get the records."""

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

ENRICH_RESPONSES: str = "all"
"""Read by the add-on (:mod:`crawler.scrapy_mode.addon`) in other projects: which responses of their spiders become
records, ``all`` or ``marked`` (requests with ``meta={"enrich": True}``). The enrich spider ignores it."""

# --- Item pipelines -------------------------------------------------------------------------------------------------

ITEM_PIPELINES = {ContactPipeline: 50, ExtractPipeline: 100, NLPPipeline: 200, SinkPipeline: 300}
