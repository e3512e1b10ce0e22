"""``scrapy crawl``, exiting non-zero when the run lost its output.

Scrapy's own command exits 0 whenever the crawler started, however the crawl ended. A run whose sink failed (disk
full, output path unwritable) has records it could not write: its exit status must say so, so that a script or the
orchestrator running it does not take the output for complete. The item pipelines record such a failure in the
crawl's stats under :data:`RUN_FAILED_STAT`; this command turns it into exit status :data:`EXIT_OUTPUT_FAILED`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

if TYPE_CHECKING:
    import argparse

__all__ = ["EXIT_OUTPUT_FAILED", "RUN_FAILED_STAT", "Command"]

RUN_FAILED_STAT = "enrich/run_failed"
"""Stats key holding why a run failed after it started (for now: the sink error); absent when it did not."""

EXIT_OUTPUT_FAILED = 2
"""Exit status of a run whose output failed; 1 stays Scrapy's "the crawl could not start"."""


class Command(ScrapyCrawlCommand):
    """Scrapy's ``crawl``, plus the exit status of a run that failed after starting."""

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1 or self.crawler_process is None:
            super().run(args, opts)  # usage errors, worded by Scrapy
            return
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
        elif crawler.stats is not None and crawler.stats.get_value(RUN_FAILED_STAT):
            self.exitcode = EXIT_OUTPUT_FAILED
