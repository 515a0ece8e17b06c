"""A concurrent web crawler: the engine, its stores and the ``crawler`` command.

This package never imports ``aiohttp.web``; the service lives in ``web``.
"""

from crawler.engine import Crawler, CrawlStats
from crawler.errors import CrawlerError, FetchError, InvalidOptionError, InvalidUrlError
from crawler.frontier import CrawlRequest, CrawlStore, MemoryStore
from crawler.options import CrawlOptions, Selector
from crawler.records import PageRecord

__all__ = [
    "CrawlOptions",
    "CrawlRequest",
    "CrawlStats",
    "CrawlStore",
    "Crawler",
    "CrawlerError",
    "FetchError",
    "InvalidOptionError",
    "InvalidUrlError",
    "MemoryStore",
    "PageRecord",
    "Selector",
]
