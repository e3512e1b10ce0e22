"""Downloader middlewares of Scrapy mode: fixes for Scrapy's own, kept as small subclasses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.robotstxt import RobotParser

__all__ = ["SharedRobotsTxtMiddleware"]


class SharedRobotsTxtMiddleware(RobotsTxtMiddleware):
    """Scrapy's robots.txt middleware, with every request that waits for a site's robots.txt getting its parser.

    Scrapy (2.19, asyncio reactor) lets all requests that arrive while a robots.txt is downloading await the same
    ``Deferred``; ``Deferred.asFuture`` passes ``None`` down the callback chain, so every waiter after the first
    got ``None`` ("no robots.txt") and was let through. Here each waiter gets a ``Deferred`` of its own, fed by a
    pass-through callback on the shared one.
    """

    async def robot_parser(self, request: Request) -> RobotParser | None:
        pending = self._parsers.get(urlparse_cached(request).netloc)
        if not isinstance(pending, Deferred):
            return await super().robot_parser(request)
        waiter: Deferred[RobotParser | None] = Deferred()

        def relay(result: Any) -> Any:
            waiter.callback(result)
            return result

        pending.addBoth(relay)
        return await maybe_deferred_to_future(waiter)
