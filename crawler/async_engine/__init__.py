"""The asyncio/aiohttp engine: :class:`AsyncEnrichmentProcessor` over the frontier and :class:`AiohttpFetcher`."""

from __future__ import annotations

from crawler.async_engine.fetcher import AiohttpFetcher
from crawler.async_engine.processor import AsyncEnrichmentProcessor, iter_inputs, run_async_enrichment

__all__ = ["AiohttpFetcher", "AsyncEnrichmentProcessor", "iter_inputs", "run_async_enrichment"]
