"""How pages are fetched: the asyncio engine, the Scrapy mode, the command line, the local demo site."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawler.async_engine import AsyncEnrichmentProcessor, run_async_enrichment

__all__ = ["AsyncEnrichmentProcessor", "run_async_enrichment"]


def __getattr__(name: str) -> Any:
    # Imported on first use: Scrapy mode imports this package too, and should not pay for aiohttp's import.
    if name in __all__:
        from crawler import async_engine

        return getattr(async_engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
