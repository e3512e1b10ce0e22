"""The crawl state of a Scrapy-mode run: opened once per crawler from ``ENRICH_STATE``, shared by the spider (which
asks it what to fetch) and the pipelines (which reuse, cache and commit through it), closed when the spider closes.

Scrapy builds the spider and each pipeline separately from the crawler, so the state is kept per crawler here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from scrapy import signals

from crawler.scrapy_mode.config import run_of
from enrich.state import CrawlState, InputAdmission

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

    from enrich.stages import Stage

__all__ = ["CrawlJob", "job_of"]


@dataclass
class CrawlJob:
    """A crawler's state (``None`` without ``ENRICH_STATE``), how its input is admitted, and the stages its
    pipelines run (for the stats)."""

    state: CrawlState | None
    admission: InputAdmission
    stages: list[Stage] = field(default_factory=list)


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
    if state is not None:

        def closed(spider: Spider, reason: str) -> None:
            state.close(complete=reason == "finished")

        crawler.signals.connect(closed, signal=signals.spider_closed, weak=False)
    return job
