"""Scrapy commands of Scrapy mode (``COMMANDS_MODULE``): ``crawl`` with an exit status that tells a failed run."""
