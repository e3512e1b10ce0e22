"""How pages are fetched: the asyncio engine, the Scrapy mode, the command line, the local demo site."""

from __future__ import annotations

from crawler.async_engine import AsyncEnrichmentProcessor, run_async_enrichment

__all__ = ["AsyncEnrichmentProcessor", "run_async_enrichment"]
