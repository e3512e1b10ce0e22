"""Scrapy mode: the enrichment run driven by Scrapy instead of the aiohttp engine.

Scrapy only fetches. Each response becomes an :class:`enrich.record.FetchedPage`; the item pipelines in
:mod:`crawler.scrapy_mode.pipelines` hand it to the same stages the async engine runs (extract, NLP, sinks), so
both engines write byte-compatible records. Run it from the repository root::

    scrapy crawl enrich -a input=urls.txt -a output=out.jsonl
"""
