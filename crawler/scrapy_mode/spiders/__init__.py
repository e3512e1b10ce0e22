"""Scrapy mode's spiders (``SPIDER_MODULES``): just :class:`~crawler.scrapy_mode.spiders.enrich.EnrichSpider`."""
