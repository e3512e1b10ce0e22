"""Scrapy mode's Prometheus metrics (:mod:`enrich.metrics`): served on ``ENRICH_METRICS_PORT`` while the spider
runs, written to ``ENRICH_METRICS_TEXTFILE`` when it closes. The sink pipeline, which keeps the run's
:class:`~enrich.stats.RunStats`, drives it (:meth:`ScrapyMetrics.from_crawler`, :meth:`start`, :meth:`finish`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from crawler.scrapy_mode.jobstate import job_of
from enrich.metrics import RunMetrics
from enrich.pipeline import run_figures

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

    from enrich.stats import RunStats

__all__ = ["ScrapyMetrics"]

logger = logging.getLogger(__name__)


class ScrapyMetrics:
    """The metrics of one Scrapy-mode run (see the module docstring).

    Args:
        metrics: the run's metrics, fed by ``stats``.
        port: where to serve ``/metrics``; ``None``: not served.
        address: the address to listen on.
        textfile: where to write them at the end; ``None``: not written.
    """

    def __init__(self, *, metrics: RunMetrics, port: int | None, address: str, textfile: str | None) -> None:
        self.metrics = metrics
        self.port = port
        self.address = address
        self.textfile = textfile

    @classmethod
    def from_crawler(cls, crawler: Crawler, stats: RunStats) -> ScrapyMetrics | None:
        """The metrics the settings ask for (``ENRICH_METRICS_PORT``, ``ENRICH_METRICS_TEXTFILE``), fed by
        ``stats``; ``None`` when neither is set."""
        settings = crawler.settings
        port = settings.get("ENRICH_METRICS_PORT")
        textfile = settings.get("ENRICH_METRICS_TEXTFILE")
        if port in (None, "") and not textfile:
            return None
        metrics = RunMetrics(
            engine=stats.engine, stats=lambda: stats, figures=lambda: run_figures(job_of(crawler).stages, None)
        )
        stats.listeners.append(metrics.observe)
        return cls(
            metrics=metrics,
            port=int(port) if port not in (None, "") else None,
            address=settings.get("ENRICH_METRICS_ADDRESS") or "127.0.0.1",
            textfile=textfile or None,
        )

    def start(self) -> None:
        """Serve ``/metrics`` (when a port is set).

        Raises:
            OSError: the port cannot be bound.
        """
        if self.port is not None:
            self.metrics.serve(self.port, address=self.address)

    def finish(self) -> None:
        """Write the text file (when set) and stop serving."""
        try:
            if self.textfile is not None:
                self.metrics.write_textfile(self.textfile)
        except OSError as exc:
            logger.error("could not write the metrics file %s: %s", self.textfile, exc)
        finally:
            self.metrics.close()
