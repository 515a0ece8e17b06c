"""Tests for robots.txt fetching, caching and the X-Robots-Tag header."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from crawler.fetch import Fetcher, Response, create_session
from crawler.guard import AddressGuard, parse_networks
from crawler.options import CrawlOptions
from crawler.robots import (
    ROBOTS_MAX_BYTES,
    RobotsCache,
    RobotsRules,
    parse_x_robots_tag,
)

USER_AGENT = "crawler-service/0.1"

RULES = """\
User-agent: otherbot
Disallow: /

User-agent: *
Disallow: /private/
Allow: /private/open$
Disallow: /*.pdf$
Disallow: /same
Allow: /same
Crawl-delay: 2.5
Sitemap: {origin}/sitemap.xml
Sitemap: {origin}/news-sitemap.xml
"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RobotsSite:
    """A test server whose /robots.txt handler each test chooses."""

    def __init__(self) -> None:
        self.origin = ""
        self.hits: Counter[str] = Counter()
        self.robots: Handler = self.not_found

    @staticmethod
    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404)

    def url(self, path: str) -> str:
        return self.origin + path


@pytest.fixture
async def robots_site(aiohttp_server: AiohttpServer) -> RobotsSite:
    site = RobotsSite()

    async def robots(request: web.Request) -> web.StreamResponse:
        site.hits[request.path] += 1
        return await site.robots(request)

    async def hop(request: web.Request) -> web.StreamResponse:
        site.hits[request.path] += 1
        return await site.robots(request)

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/hop/{n}", hop)
    server = await aiohttp_server(app, host="127.0.0.1")
    site.origin = str(server.make_url("")).rstrip("/")
    return site


@pytest.fixture
async def cache() -> AsyncIterator[RobotsCache]:
    guard = AddressGuard(parse_networks("127.0.0.0/8", option="allow_network"))
    options = CrawlOptions(seeds=("http://placeholder.invalid/",))
    async with create_session(guard) as session:
        fetcher = Fetcher(session, options)

        async def fetch(url: str, max_bytes: int) -> Response:
            return await fetcher.fetch(url, max_body_bytes=max_bytes, truncate=True)

        robots_cache = RobotsCache(fetch)
        yield robots_cache
        await robots_cache.close()


def serve_text(text: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/plain")

    return handler


def serve_status(status: int) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text="error")

    return handler


def serve_redirects(hops: int, final_text: str) -> Handler:
    """Redirect /robots.txt to /hop/1, ..., /hop/N, which serves ``final_text``."""

    async def handler(request: web.Request) -> web.Response:
        current = int(request.match_info.get("n", "0"))
        if current < hops:
            return web.Response(status=301, headers={"Location": f"/hop/{current + 1}"})
        return web.Response(text=final_text, content_type="text/plain")

    return handler


async def load_rules(
    cache: RobotsCache, site: RobotsSite, handler: Handler
) -> RobotsRules:
    site.robots = handler
    return await cache.rules_for(site.url("/index.html"))


# Successful fetches


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/", True),
        ("/public/page", True),
        ("/private/secret", False),
        ("/private/open", True),
        ("/private/open/deeper", False),
        ("/private/opener", False),
        ("/files/report.pdf", False),
        ("/files/report.pdf?download=1", True),
        ("/files/report.pdfx", True),
        ("/same", True),
    ],
)
async def test_robots_rules_applied(
    cache: RobotsCache, robots_site: RobotsSite, path: str, allowed: bool
) -> None:
    text = RULES.format(origin=robots_site.origin)
    rules = await load_rules(cache, robots_site, serve_text(text))

    assert rules.can_fetch(robots_site.url(path), USER_AGENT) is allowed


async def test_robots_group_for_other_bot(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    text = RULES.format(origin=robots_site.origin)
    rules = await load_rules(cache, robots_site, serve_text(text))

    assert not rules.can_fetch(robots_site.url("/public/page"), "otherbot/1.0")


async def test_robots_crawl_delay_and_sitemaps(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    text = RULES.format(origin=robots_site.origin)
    rules = await load_rules(cache, robots_site, serve_text(text))

    assert rules.status == 200
    assert rules.origin == robots_site.origin
    assert rules.crawl_delay(USER_AGENT) == 2.5
    assert rules.sitemaps == (
        robots_site.url("/sitemap.xml"),
        robots_site.url("/news-sitemap.xml"),
    )


async def test_robots_explain_names_origin(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    text = RULES.format(origin=robots_site.origin)
    rules = await load_rules(cache, robots_site, serve_text(text))

    explanation = rules.explain(robots_site.url("/private/secret"))

    assert explanation == f"disallowed by {robots_site.origin}/robots.txt"


async def test_robots_only_first_500_kib_parsed(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    padding = "# padding\n" * (ROBOTS_MAX_BYTES // 10 + 10_000)
    text = "User-agent: *\nDisallow: /early\n" + padding + "Disallow: /late\n"
    rules = await load_rules(cache, robots_site, serve_text(text))

    assert len(text) > ROBOTS_MAX_BYTES + 50_000
    assert not rules.can_fetch(robots_site.url("/early"), USER_AGENT)
    assert rules.can_fetch(robots_site.url("/late"), USER_AGENT)


# Failures


@pytest.mark.parametrize("status", [404, 401, 403, 410])
async def test_robots_client_error_allows_all(
    cache: RobotsCache, robots_site: RobotsSite, status: int
) -> None:
    rules = await load_rules(cache, robots_site, serve_status(status))

    assert rules.status == status
    assert rules.disallow_all is False
    assert rules.can_fetch(robots_site.url("/anything"), USER_AGENT)
    assert rules.crawl_delay(USER_AGENT) is None


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_robots_unavailable_disallows_all(
    cache: RobotsCache, robots_site: RobotsSite, status: int
) -> None:
    rules = await load_rules(cache, robots_site, serve_status(status))

    assert rules.status == status
    assert rules.disallow_all is True
    assert rules.fetch_error is None
    assert not rules.can_fetch(robots_site.url("/"), USER_AGENT)
    assert "unavailable" in rules.explain(robots_site.url("/"))


async def test_robots_unreachable_disallows_all(cache: RobotsCache) -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        origin = f"http://127.0.0.1:{bound.getsockname()[1]}"
        rules = await cache.rules_for(origin + "/page")

    assert rules.status is None
    assert rules.disallow_all is True
    assert rules.fetch_error == "connect"
    assert rules.note.startswith("connect:")
    assert not rules.can_fetch(origin + "/page", USER_AGENT)


async def test_robots_blocked_address_disallows_all(
    robots_site: RobotsSite,
) -> None:
    options = CrawlOptions(seeds=("http://placeholder.invalid/",))
    async with create_session(AddressGuard()) as session:
        fetcher = Fetcher(session, options)

        async def fetch(url: str, max_bytes: int) -> Response:
            return await fetcher.fetch(url, max_body_bytes=max_bytes, truncate=True)

        rules = await RobotsCache(fetch).rules_for(robots_site.url("/"))

    assert rules.disallow_all is True
    assert rules.fetch_error == "blocked_address"
    assert rules.note.startswith("blocked_address:")
    assert robots_site.hits == Counter()


# Redirects


async def test_robots_redirect_followed(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    handler = serve_redirects(1, "User-agent: *\nDisallow: /moved\n")
    rules = await load_rules(cache, robots_site, handler)

    assert not rules.can_fetch(robots_site.url("/moved"), USER_AGENT)
    assert rules.can_fetch(robots_site.url("/other"), USER_AGENT)
    assert rules.origin == robots_site.origin
    assert robots_site.hits == Counter({"/robots.txt": 1, "/hop/1": 1})


async def test_robots_five_redirects_followed(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    handler = serve_redirects(5, "User-agent: *\nDisallow: /\n")
    rules = await load_rules(cache, robots_site, handler)

    assert rules.status == 200
    assert not rules.can_fetch(robots_site.url("/page"), USER_AGENT)


async def test_robots_six_redirects_give_up(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    handler = serve_redirects(6, "User-agent: *\nDisallow: /\n")
    rules = await load_rules(cache, robots_site, handler)

    assert rules.can_fetch(robots_site.url("/page"), USER_AGENT)
    assert "more than 5 redirects" in rules.note
    assert robots_site.hits["/hop/6"] == 0
    assert sum(robots_site.hits.values()) == 6


# Caching


async def test_robots_fetched_once_for_concurrent_callers(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    robots_site.robots = serve_text("User-agent: *\nDisallow: /private/\n")
    urls = [robots_site.url(f"/page/{n}") for n in range(20)]

    results = await asyncio.gather(*(cache.rules_for(url) for url in urls))

    assert robots_site.hits == Counter({"/robots.txt": 1})
    assert all(rules is results[0] for rules in results)


async def test_robots_fetched_once_per_origin(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    robots_site.robots = serve_text("User-agent: *\nDisallow:\n")
    by_name = robots_site.origin.replace("127.0.0.1", "localhost")

    await cache.rules_for(robots_site.url("/a"))
    await cache.rules_for(robots_site.url("/b"))
    await cache.rules_for(by_name + "/a")

    assert robots_site.hits == Counter({"/robots.txt": 2})
    assert sorted(rules.origin for rules in cache.cached()) == sorted(
        [robots_site.origin, by_name]
    )


async def test_robots_cancelled_caller_keeps_shared_fetch(
    cache: RobotsCache, robots_site: RobotsSite
) -> None:
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def slow_robots(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="User-agent: *\nDisallow: /x\n")

    robots_site.robots = slow_robots
    first = asyncio.create_task(cache.rules_for(robots_site.url("/1")))
    second = asyncio.create_task(cache.rules_for(robots_site.url("/2")))
    async with asyncio.timeout(5):
        await arrived.wait()

    first.cancel()
    release.set()
    rules = await second

    assert first.cancelled()
    assert not rules.can_fetch(robots_site.url("/x"), USER_AGENT)
    assert robots_site.hits == Counter({"/robots.txt": 1})


# X-Robots-Tag


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], set()),
        (["noindex"], {"noindex"}),
        (["NoIndex, NoFollow"], {"noindex", "nofollow"}),
        (["none"], {"noindex", "nofollow"}),
        (["noarchive", "nofollow"], {"noarchive", "nofollow"}),
        (["otherbot: noindex"], set()),
        (["otherbot: noindex", "nofollow"], {"nofollow"}),
        (["crawler-service: noindex"], {"noindex"}),
        (["Crawler-Service: none"], {"noindex", "nofollow"}),
        (["unavailable_after: 25 Jun 2030 15:00:00 PST"], {"unavailable_after"}),
        (["max-snippet: 20, noindex"], {"max-snippet", "noindex"}),
        (["otherbot: unavailable_after: 25 Jun 2030"], set()),
    ],
)
def test_parse_x_robots_tag(values: list[str], expected: set[str]) -> None:
    assert parse_x_robots_tag(values, USER_AGENT) == frozenset(expected)


def test_rules_without_parser_allow_all() -> None:
    rules = RobotsRules("http://example.org", 404)

    assert rules.can_fetch("http://example.org/x", USER_AGENT)
    assert rules.crawl_delay(USER_AGENT) is None


def test_robots_rules_ignore_leading_bom() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    from crawler.robots import _rules_from_response

    body = "\ufeffUser-agent: *\nDisallow: /\n".encode()
    response = Response(
        url="http://example.org/robots.txt",
        status=200,
        headers=CIMultiDictProxy(CIMultiDict()),
        body=body,
        elapsed_ms=1,
    )

    rules = _rules_from_response("http://example.org", response)

    assert rules.can_fetch("http://example.org/page", "crawler-service/0.1") is False
