"""The asyncio/aiohttp engine: :class:`AsyncEnrichmentProcessor` over :class:`AiohttpFetcher`."""

from __future__ import annotations

from crawler.async_engine.fetcher import AiohttpFetcher, Fetcher
from crawler.async_engine.processor import AsyncEnrichmentProcessor, iter_inputs, run_async_enrichment

__all__ = ["AiohttpFetcher", "AsyncEnrichmentProcessor", "Fetcher", "iter_inputs", "run_async_enrichment"]
