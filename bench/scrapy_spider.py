"""A plain link-following Scrapy spider, the baseline of the crawler benchmark.

It does what a typical Scrapy user writes for a whole-site crawl and nothing
more: fetch a page, record its title and links, follow every in-site link with
``response.follow``. Scrapy's defaults do the rest: the duplicate filter drops
URLs whose canonical form (fragment removed, query parameters sorted) was seen,
the offsite filter drops hosts outside ``allowed_domains`` and robots.txt is
obeyed. The settings below turn off everything that would slow Scrapy down on
purpose (AutoThrottle, download delay) so the comparison is of crawl speed.

It is run by bench/run.py with the Python of a separate virtualenv, so Scrapy
never enters the project's own environment::

    /tmp/bench-scrapy-venv/bin/python -m scrapy runspider bench/scrapy_spider.py \\
        -a start_url=http://127.0.0.1:PORT/ \\
        -s CONCURRENT_REQUESTS=16 -s CONCURRENT_REQUESTS_PER_DOMAIN=16 \\
        -O /tmp/out.jsonl:jsonlines

Settings given with ``-s`` override ``custom_settings``, so the runner sets the
concurrency per run while the rest stays fixed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response, TextResponse

# The same limit as the crawler's --max-depth in bench/run.py.
MAX_DEPTH = 100
FOLLOWED_SCHEMES = ("http", "https")


class SiteSpider(scrapy.Spider):
    """Crawl one loopback site from ``start_url``, yielding title and links."""

    name = "bench_site"
    custom_settings: ClassVar[dict[str, Any]] = {
        "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
        "ROBOTSTXT_OBEY": True,
        "AUTOTHROTTLE_ENABLED": False,
        "DOWNLOAD_DELAY": 0,
        "DEPTH_LIMIT": MAX_DEPTH,
        "LOG_LEVEL": "INFO",
        "USER_AGENT": "bench-scrapy (loopback benchmark)",
        # The benchmark talks to nginx on 127.0.0.1 only, so a proxy named in
        # the environment must not be used. The telnet console and the remote
        # control server (on by default in Scrapy 2.19) open listening
        # ports and do work the crawler under comparison does not, so both
        # are off.
        "HTTPPROXY_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,
        "FEED_EXPORT_ENCODING": "utf-8",
    }

    def __init__(self, start_url: str = "", *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        host = urlsplit(start_url).hostname or ""
        if not host.startswith("127."):
            raise ValueError(
                f"start_url {start_url!r} is not on a 127.x.x.x loopback address; "
                "pass -a start_url=http://127.0.0.1:PORT/"
            )
        self.start_urls = [start_url]
        # Scrapy's offsite filter compares host names without the port, so the
        # loopback address is the whole scope. Only one site is served at once.
        self.allowed_domains = [host]

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        """Yield the page's record, then a request for every in-site link."""
        if not isinstance(response, TextResponse):
            yield record(response, title=None, links=[])
            return

        hrefs = response.css("a::attr(href)").getall()
        links = [response.urljoin(href.strip()) for href in hrefs]
        yield record(response, response.css("title::text").get(), links)
        for link in links:
            if urlsplit(link).scheme in FOLLOWED_SCHEMES:
                yield response.follow(link, callback=self.parse)


def record(response: Response, title: str | None, links: list[str]) -> dict[str, Any]:
    """Build the output line of one page, with the keys the crawler writes."""
    return {
        "url": response.request.url if response.request else response.url,
        "final_url": response.url,
        "status": response.status,
        "title": title,
        "links": links,
    }
