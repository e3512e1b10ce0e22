"""Response bodies in Scrapy mode: the size cap that keeps the cut body, and decompression capped the same way.

* :class:`SizeCapMiddleware`: stops a download once ``fetch.max_response_bytes`` arrived and keeps the cut body,
  flagged, instead of Scrapy's ``DOWNLOAD_MAXSIZE``, which throws the whole response away.
* :class:`CappedHttpCompressionMiddleware`: Scrapy's decompression, cutting the *decompressed* body at the same cap
  (a gzip bomb inflates to the cap, not to 200 MiB) instead of dropping the response. The capped decoders are
  :func:`enrich.codings.decompress_capped`, shared with the async engine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Self

from scrapy import signals
from scrapy.downloadermiddlewares.httpcompression import ACCEPTED_ENCODINGS
from scrapy.exceptions import NotConfigured, StopDownload
from scrapy.http import Request, Response, TextResponse
from scrapy.responsetypes import responsetypes

from crawler.scrapy_mode.config import run_of
from enrich.codings import decompress_capped
from enrich.urls import redact_url

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector


__all__ = [
    "MAX_BYTES_META",
    "TRUNCATED_FLAG",
    "CappedHttpCompressionMiddleware",
    "SizeCapMiddleware",
    "decompress_capped",
]

logger = logging.getLogger(__name__)


MAX_BYTES_META = "enrich_max_bytes"
"""Request meta key overriding the body cap of one request (robots.txt is cut at ``ROBOTS_MAX_BYTES``)."""

RECEIVED_META = "enrich_received"
"""Request meta key counting the body bytes received by the current attempt."""

TRUNCATED_FLAG = "enrich_truncated"
"""Response flag: the body was cut at the size cap (on the wire or after decompression)."""


class SizeCapMiddleware:
    """Stops a download once more than the cap arrived and hands on the body cut at the cap, flagged
    :data:`TRUNCATED_FLAG` (``metadata.truncated`` in the record), as the async engine does.

    Scrapy's ``DOWNLOAD_MAXSIZE`` is left at 0: it cancels a download and drops everything received, so no cut page
    could be kept. The cap is enforced from the ``bytes_received`` signal with ``StopDownload(fail=False)``, so at
    most the cap plus one network read is ever held.

    Args:
        max_bytes: ``fetch.max_response_bytes``; a request's :data:`MAX_BYTES_META` overrides it.
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.truncated = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        middleware = cls(max_bytes=run_of(crawler).config.fetch.max_response_bytes)
        crawler.signals.connect(middleware.bytes_received, signal=signals.bytes_received)
        return middleware

    def _cap(self, request: Request) -> int:
        cap = request.meta.get(MAX_BYTES_META)
        return cap if isinstance(cap, int) and cap > 0 else self.max_bytes

    def process_request(self, request: Request) -> None:
        request.meta[RECEIVED_META] = 0  # retries and redirects copy the meta: each attempt counts afresh

    def bytes_received(self, data: bytes, request: Request, spider: Any) -> None:
        """Count the attempt's body bytes; stop the download, keeping what arrived, once past the cap.

        Raises:
            StopDownload: with ``fail=False``, so the response reaches the callback with the partial body.
        """
        received = request.meta.get(RECEIVED_META, 0) + len(data)
        request.meta[RECEIVED_META] = received
        if received > self._cap(request):
            raise StopDownload(fail=False)

    def process_response(self, request: Request, response: Response) -> Response:
        cap = self._cap(request)
        if "download_stopped" in response.flags and len(response.body) > cap:
            self.truncated += 1
            logger.warning("body of %s cut at %d bytes", redact_url(response.url), cap, extra={"url": response.url})
            return response.replace(body=response.body[:cap], flags=[*response.flags, TRUNCATED_FLAG])
        return response


class CappedHttpCompressionMiddleware:
    """Scrapy's ``HttpCompressionMiddleware`` (same place, same ``Accept-Encoding``, same stats), with a decompressed
    body cut at the size cap and flagged :data:`TRUNCATED_FLAG`, instead of dropped with ``IgnoreRequest``.
    Decompression streams in 64 KiB steps and stops at the cap (:func:`enrich.codings.decompress_capped`), so a gzip
    bomb costs the cap in memory, not what it inflates to. Codings are undone from the last applied; one it does not
    know stays in ``Content-Encoding`` with what is under it.

    Args:
        max_bytes: ``fetch.max_response_bytes``; a request's :data:`MAX_BYTES_META` overrides it.
        stats: the crawler's stats (``httpcompression/response_bytes``, ``httpcompression/response_count``).
    """

    def __init__(self, *, max_bytes: int, stats: StatsCollector | None = None) -> None:
        self.max_bytes = max_bytes
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("COMPRESSION_ENABLED"):
            raise NotConfigured
        return cls(max_bytes=run_of(crawler).config.fetch.max_response_bytes, stats=crawler.stats)

    def process_request(self, request: Request) -> None:
        request.headers.setdefault("Accept-Encoding", b", ".join(ACCEPTED_ENCODINGS))

    def process_response(self, request: Request, response: Response) -> Response:
        values = response.headers.getlist("Content-Encoding")
        codings = [coding.strip().lower() for value in values for coding in value.split(b",")]
        if request.method == "HEAD" or not codings:
            return response
        cap = request.meta.get(MAX_BYTES_META)
        max_size = cap if isinstance(cap, int) and cap > 0 else self.max_bytes
        body, cut = response.body, False
        while codings and codings[-1] in _DECODED:
            body, cut_now = decompress_capped(body, codings.pop(), max_size)
            cut |= cut_now
        if self.stats is not None:
            self.stats.inc_value("httpcompression/response_bytes", len(body))
            self.stats.inc_value("httpcompression/response_count")
        headers = response.headers.copy()
        if codings:
            headers["Content-Encoding"] = b", ".join(codings)
        else:
            del headers["Content-Encoding"]
        cls = responsetypes.from_args(headers=headers, url=response.url, body=body)
        kwargs: dict[str, Any] = {"encoding": None} if issubclass(cls, TextResponse) else {}
        flags = response.flags
        if cut:
            logger.warning("decompressed body of %s cut at %d bytes", redact_url(response.url), max_size)
            flags = [*flags, TRUNCATED_FLAG]
        decoded: Response = response.replace(cls=cls, body=body, headers=headers, flags=flags, **kwargs)
        return decoded


_DECODED = frozenset({*ACCEPTED_ENCODINGS, b"x-gzip"})
"""The codings :func:`~enrich.codings.decompress_capped` undoes (Scrapy's list)."""
