"""A Scrapy spider that knows nothing of the enrichment; the enrich add-on turns each page it visits into a record.

Run it from anywhere the project is installed (``pip install -e .``)::

    scrapy runspider examples/enrich_addon_spider.py -a start=http://127.0.0.1:8765/ -O records.jsonl

``records.jsonl`` then holds the spider's own items (``{"kind": "link", ...}``) and one record per page (text,
title, links, entities...: the record schema). See docs/scrapy.md for the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy import Request, Spider
from scrapy.http import TextResponse

from crawler.scrapy_mode.addon import EnrichAddon

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from scrapy.http import Response


class SiteSpider(Spider):
    """Follows the links of one site, yielding one small item per link found."""

    name = "site"
    custom_settings = {  # noqa: RUF012 (Scrapy's own class attribute)
        "ADDONS": {EnrichAddon: 0},
        "ENRICH_CONFIG": {"nlp": {"enabled": True}, "fetch": {"max_response_bytes": 5_000_000}},
        # "ENRICH_OUTPUT": "records.jsonl",  # also write the records with the project's JSONL sink
        # "ENRICH_RESPONSES": "marked",      # only responses to requests with meta={"enrich": True}
        "DEPTH_LIMIT": 2,
        "ROBOTSTXT_OBEY": True,
    }

    def __init__(self, start: str = "http://127.0.0.1:8765/", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_url = start
        self.allowed_domains = [start.split("/")[2].split(":")[0]]

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.start_url, callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        if not isinstance(response, TextResponse):  # a PDF or an image: enriched, nothing to follow
            return
        for href in response.css("a::attr(href)").getall():
            yield {"kind": "link", "page": response.url, "href": response.urljoin(href)}
            yield response.follow(href, callback=self.parse)
