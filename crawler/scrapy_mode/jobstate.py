"""The crawl state of a Scrapy-mode run: opened once per crawler from ``ENRICH_STATE``, shared by the spider (which
asks it what to fetch) and the pipelines (which reuse, cache and commit through it), closed when the spider closes.

A distributed worker's queue is kept here too (``ENRICH_REDIS_URL``, set by ``python -m crawler worker``): the
spider reads its input from it, the sink pipeline acknowledges what it wrote, the Redis scheduler gates each site.

Scrapy builds the spider and each pipeline separately from the crawler, so the state is kept per crawler here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from scrapy import signals

from crawler.scrapy_mode.config import run_of
from enrich.distributed import QueueFeed, RedisSiteGate, join_job, worker_name
from enrich.state import CrawlState, InputAdmission

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

    from enrich.extract.stage import ExtractStage
    from enrich.nlp import NLPStage
    from enrich.stages import Stage

__all__ = ["CrawlJob", "job_of"]


@dataclass
class CrawlJob:
    """A crawler's state (``None`` without ``ENRICH_STATE``), how its input is admitted, the stages its pipelines
    run (for the stats) and, for a distributed worker, its queue and site gate (``None`` otherwise)."""

    state: CrawlState | None
    admission: InputAdmission
    stages: list[Stage] = field(default_factory=list)
    enrichment: tuple[ExtractStage, NLPStage] | None = None
    """Its extraction and NLP stages, built together (they may share worker processes)."""
    feed: QueueFeed | None = None
    gate: RedisSiteGate | None = None
    jsonl: bool = True
    """Whether the sinks include the JSONL output (a worker writes to PostgreSQL and JSONL only if asked)."""


_JOBS: WeakKeyDictionary[Crawler, CrawlJob] = WeakKeyDictionary()


def job_of(crawler: Crawler) -> CrawlJob:
    """The crawler's job, opening its state on first use.

    Raises:
        SinkError: the state file cannot be opened.
    """
    job = _JOBS.get(crawler)
    if job is not None:
        return job
    options = run_of(crawler).options
    state = None
    if options.state is not None:
        state = CrawlState.open(options.state, recrawl=options.recrawl, max_age_s=options.max_age_s)
    job = _JOBS[crawler] = CrawlJob(state, InputAdmission(state))
    if crawler.settings.get("ENRICH_REDIS_URL"):
        _join_queue(crawler, job)
    if state is not None:

        def closed(spider: Spider, reason: str) -> None:
            state.close(complete=reason == "finished")

        crawler.signals.connect(closed, signal=signals.spider_closed, weak=False)
    return job


def _join_queue(crawler: Crawler, job: CrawlJob) -> None:
    """Make ``job`` a distributed worker's: its queue feed and site gate, from the ``ENRICH_REDIS_*`` settings."""
    import redis

    settings = crawler.settings
    client = redis.Redis.from_url(settings.get("ENRICH_REDIS_URL"), socket_connect_timeout=10)
    job.feed, job.gate = join_job(
        client,
        settings.get("ENRICH_REDIS_JOB"),
        run_of(crawler).config,
        worker=settings.get("ENRICH_WORKER_NAME") or worker_name(),
        lease_timeout_s=settings.getfloat("ENRICH_LEASE_TIMEOUT_S", 300.0),
        max_deliveries=settings.getint("ENRICH_MAX_DELIVERIES", 3),
        wait=settings.getbool("ENRICH_WORKER_WAIT"),
    )
    job.jsonl = settings.getbool("ENRICH_WORKER_JSONL", False)
