"""The engine against the hostile test site: one exact page record per case.

Each test crawls one or a few URLs of ``tests/sites/hostile.py`` in this
process, with the real engine, fetcher, parser pool and address guard, and
compares whole records (minus ``fetched_at`` and ``elapsed_ms``, which vary).
The site runs on 127.0.0.2 so that 127.0.0.1 can stand for "an address the
guard must block".
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from crawler.engine import Crawler, CrawlStats
from crawler.errors import StoreError
from crawler.fetch import create_session
from crawler.frontier import CrawlRequest, MemoryStore
from crawler.guard import AddressGuard, parse_networks
from crawler.options import CrawlOptions
from crawler.parse_pool import ParsePool
from crawler.records import PageRecord
from tests.sites.hostile import HOSTILE_ROBOTS, ServedApp

LOOPBACK = "127.0.0.0/8"

# Short timeouts and backoff keep the slow cases quick; max_depth 0 crawls the
# seed only, unless a test asks for more.
FAST_OPTIONS: dict[str, Any] = {
    "max_depth": 0,
    "backoff_base_s": 0.01,
    "read_timeout_s": 1.0,
    "total_timeout_s": 10.0,
    "rate_grace_s": 1.0,
    "max_retries": 1,
}


async def crawl(
    site: ServedApp,
    *paths: str,
    allow: str = LOOPBACK,
    **overrides: Any,
) -> tuple[list[dict[str, Any]], CrawlStats]:
    """Crawl ``paths`` of ``site`` and return the stable part of each record."""
    options = CrawlOptions(
        seeds=tuple(site.url(path) for path in paths), **{**FAST_OPTIONS, **overrides}
    )
    options.validate()
    records: list[PageRecord] = []
    store = MemoryStore(on_record=records.append)
    guard = AddressGuard(parse_networks(allow, option="allow_networks"))
    pool = ParsePool("thread")
    async with create_session(guard) as session:
        stats = await Crawler(options, store, session, pool).run()
    pool.close()
    return [_stable(record) for record in records], stats


def _stable(record: PageRecord) -> dict[str, Any]:
    data = record.to_dict()
    del data["fetched_at"]
    assert isinstance(data.pop("elapsed_ms"), int | None)
    return data


def page(site: ServedApp, path: str, **fields: Any) -> dict[str, Any]:
    """Return the expected record of a fetched HTML page, with ``fields`` changed."""
    expected: dict[str, Any] = {
        "url": site.url(path),
        "final_url": site.url(path),
        "depth": 0,
        "referrer": None,
        "status": 200,
        "content_type": "text/html",
        "size_bytes": None,
        "encoding": "utf-8",
        "title": None,
        "description": None,
        "canonical": None,
        "lang": None,
        "robots": [],
        "links": {"count": 0, "in_scope": []},
        "fields": {},
        "error": None,
    }
    expected.update(fields)
    return expected


def failure(
    site: ServedApp, path: str, kind: str, message: str, **fields: Any
) -> dict[str, Any]:
    """Return the expected record of a URL that failed or was skipped."""
    expected = {"status": None, "content_type": None, "encoding": None}
    expected.update(fields)
    return page(site, path, error={"kind": kind, "message": message}, **expected)


# Redirects -------------------------------------------------------------------


async def test_redirect_chain_recorded_under_final_url(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/redirect/chain/1")

    final = hostile_site.url("/redirect/final")
    assert records == [
        page(
            hostile_site,
            "/redirect/chain/1",
            final_url=final,
            size_bytes=134,
            title="Final",
        )
    ]
    assert hostile_site.fetched_paths()[1:] == [
        "/redirect/chain/1",
        "/redirect/chain/2",
        "/redirect/chain/3",
        "/redirect/final",
    ]


async def test_redirect_relative_location(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/redirect/relative")

    final = hostile_site.url("/redirect/final")
    assert records == [
        page(
            hostile_site,
            "/redirect/relative",
            final_url=final,
            size_bytes=134,
            title="Final",
        )
    ]


async def test_redirect_target_linked_too_is_recorded_once(
    hostile_site: ServedApp,
) -> None:
    records, stats = await crawl(hostile_site, "/redirect/chain/1", "/redirect/final")

    finals = [r["final_url"] for r in records]
    assert finals == [hostile_site.url("/redirect/final")]
    assert hostile_site.fetched_paths().count("/redirect/final") == 1
    assert stats.skipped["duplicate_redirect"] == 1


async def test_redirect_loop(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/redirect/loop/a")

    loop_a, loop_b = (
        hostile_site.url("/redirect/loop/a"),
        hostile_site.url("/redirect/loop/b"),
    )
    assert records == [
        page(
            hostile_site,
            "/redirect/loop/a",
            final_url=loop_b,
            status=302,
            content_type="text/plain",
            size_bytes=32,
            encoding=None,
            error={
                "kind": "redirect_loop",
                "message": f"redirect loop: {loop_b} redirects back to {loop_a}",
            },
        )
    ]


async def test_too_many_redirects(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/redirect/many")

    last = hostile_site.url("/redirect/many?n=10")
    assert records == [
        page(
            hostile_site,
            "/redirect/many",
            final_url=last,
            status=302,
            content_type="text/plain",
            size_bytes=35,
            encoding=None,
            error={
                "kind": "redirect_loop",
                "message": "more than 10 redirects (max_redirects); the last one "
                f"points to {hostile_site.url('/redirect/many?n=11')}",
            },
        )
    ]


async def test_redirect_to_other_host_out_of_scope(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/redirect/offsite")

    target = f"http://127.0.0.3:{hostile_site.port}/"
    assert records == [
        page(
            hostile_site,
            "/redirect/offsite",
            final_url=target,
            status=302,
            content_type="text/plain",
            size_bytes=39,
            encoding=None,
            error={
                "kind": "out_of_scope",
                "message": f"redirect to {target}: host 127.0.0.3:{hostile_site.port} "
                f"is not 127.0.0.2:{hostile_site.port} (scope 'host')",
            },
        )
    ]


async def test_redirect_to_loopback_blocked_by_default_guard(
    hostile_site: ServedApp, loopback_site: ServedApp
) -> None:
    # Both hosts are in scope, but only the hostile site's address is allowed
    # to the guard: 127.0.0.1 keeps the default, blocked.
    path = f"/redirect/loopback?port={loopback_site.port}"
    records, _ = await crawl(
        hostile_site,
        path,
        allow="127.0.0.2/32",
        scope="allowlist",
        allowed_domains=("127.0.0.2", "127.0.0.1"),
    )

    target = f"http://127.0.0.1:{loopback_site.port}/"
    [record] = records
    assert record["final_url"] == target
    assert record["error"]["kind"] == "blocked_address"
    assert "127.0.0.1" in record["error"]["message"]
    assert loopback_site.fetched_paths() == []


async def test_default_guard_blocks_loopback_seed(loopback_site: ServedApp) -> None:
    records, _ = await crawl(loopback_site, "/", allow="")

    [record] = records
    assert record["error"]["kind"] == "blocked_address"
    assert record["status"] is None
    assert loopback_site.fetched_paths() == []


async def test_default_guard_blocks_name_resolving_to_loopback(
    loopback_site: ServedApp,
) -> None:
    options = CrawlOptions(
        seeds=(f"http://localhost:{loopback_site.port}/",), **FAST_OPTIONS
    )
    records: list[PageRecord] = []
    async with create_session(AddressGuard()) as session:
        await Crawler(
            options, MemoryStore(records.append), session, ParsePool("inline")
        ).run()

    assert [r.error.kind if r.error else None for r in records] == ["blocked_address"]
    assert loopback_site.fetched_paths() == []


# Status codes and retries ----------------------------------------------------


async def test_not_found(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/status/404")

    assert records == [
        page(
            hostile_site,
            "/status/404",
            status=404,
            size_bytes=151,
            encoding=None,
            error={"kind": "http_status", "message": "HTTP 404 Not Found"},
        )
    ]
    assert hostile_site.fetched_paths().count("/status/404") == 1


async def test_server_error_retried_then_recorded(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/status/500", max_retries=2)

    assert records == [
        page(
            hostile_site,
            "/status/500",
            status=500,
            size_bytes=151,
            encoding=None,
            error={
                "kind": "http_status",
                "message": "HTTP 500 Internal Server Error (after 3 attempts)",
            },
        )
    ]
    assert hostile_site.fetched_paths().count("/status/500") == 3


async def test_flaky_503_recovers_on_retry(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/status/flaky-503")

    assert records == [
        page(hostile_site, "/status/flaky-503", size_bytes=165, title="Flaky recovered")
    ]


@pytest.mark.parametrize(
    ("path", "size"), [("/status/429", 171), ("/status/429-http-date", 174)]
)
async def test_429_waits_for_retry_after(
    hostile_site: ServedApp, path: str, size: int
) -> None:
    records, _ = await crawl(hostile_site, path)

    assert records == [
        page(hostile_site, path, size_bytes=size, title="Rate limit lifted")
    ]
    first, second = [r.time for r in hostile_site.requests if r.path_qs == path]
    assert second - first >= 0.95


async def test_retry_after_beyond_limit_gives_up(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/status/429", max_retry_after_s=0.5)

    [record] = records
    assert record["status"] == 429
    assert record["error"] == {
        "kind": "http_status",
        "message": "HTTP 429 Too Many Requests",
    }
    assert hostile_site.fetched_paths().count("/status/429") == 1


# Slow servers ----------------------------------------------------------------


async def test_server_that_never_answers_times_out(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/slow/never")

    assert records == [
        failure(
            hostile_site,
            "/slow/never",
            "timeout",
            "read timed out (read_timeout_s) (after 2 attempts)",
        )
    ]


async def test_trickling_server_cut_off(hostile_site: ServedApp) -> None:
    started = time.monotonic()
    records, _ = await crawl(hostile_site, "/slow/trickle", read_timeout_s=5.0)

    [record] = records
    assert record["status"] == 200
    assert record["error"]["kind"] == "timeout"
    assert "slower than min_rate_bytes_s 1024" in record["error"]["message"]
    # The trickle lasts 60 s; the guard must not wait for it.
    assert time.monotonic() - started < 30


async def test_stalled_body_times_out(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/slow/headers-then-stall", max_retries=0)

    assert records == [
        failure(
            hostile_site,
            "/slow/headers-then-stall",
            "timeout",
            "read timed out (read_timeout_s)",
        )
    ]


# Bodies ----------------------------------------------------------------------


async def test_oversized_body_streamed(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/big")

    assert records == [
        failure(
            hostile_site,
            "/big",
            "too_large",
            "body exceeds max_body_bytes 10485760 after decompression",
            status=200,
            content_type="text/html",
        )
    ]


async def test_oversized_content_length_not_read(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/big-with-length")

    assert records == [
        failure(
            hostile_site,
            "/big-with-length",
            "too_large",
            "Content-Length 12582912 exceeds max_body_bytes 10485760",
            status=200,
            content_type="text/html",
        )
    ]


async def test_gzip_bomb_stops_at_limit(hostile_site: ServedApp) -> None:
    # The site builds the bomb on first use, which takes seconds; no retry
    # hides a slow first answer here.
    records, _ = await crawl(
        hostile_site,
        "/gzip-bomb",
        total_timeout_s=60.0,
        read_timeout_s=30.0,
        max_retries=0,
        max_body_bytes=1024 * 1024,
    )

    [record] = records
    assert record["status"] == 200
    assert record["error"] == {
        "kind": "too_large",
        "message": "body exceeds max_body_bytes 1048576 after decompression",
    }


async def test_corrupt_gzip_is_decode_error(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/corrupt-gzip")

    [record] = records
    assert record["status"] == 200
    assert record["error"]["kind"] == "decode"
    assert record["error"]["message"].startswith("invalid gzip body: ")


@pytest.mark.parametrize(
    ("path", "content_type", "size"),
    [("/file.pdf", "application/pdf", 142), ("/image.png", "image/png", 75)],
)
async def test_non_html_recorded_without_parsing(
    hostile_site: ServedApp, path: str, content_type: str, size: int
) -> None:
    records, _ = await crawl(hostile_site, path)

    assert records == [
        page(
            hostile_site,
            path,
            content_type=content_type,
            size_bytes=size,
            encoding=None,
        )
    ]


# robots.txt ------------------------------------------------------------------

ROBOTS_CASES = [
    ("/private/secret", False),
    ("/private/open", True),
    ("/private/open-not", False),
    ("/search?q=x", False),
    ("/search?page=2", True),
    ("/file.pdf", False),
]


@pytest.mark.parametrize("hostile_site", [HOSTILE_ROBOTS], indirect=True)
@pytest.mark.parametrize(("path", "allowed"), ROBOTS_CASES)
async def test_robots_rules(hostile_site: ServedApp, path: str, allowed: bool) -> None:
    records, _ = await crawl(hostile_site, path)

    [record] = records
    if allowed:
        assert record["status"] == 200
        assert record["error"] is None
    else:
        robots_url = hostile_site.url("/robots.txt")
        assert record == failure(
            hostile_site, path, "robots", f"disallowed by {robots_url}"
        )
    assert (path in hostile_site.fetched_paths()) is allowed


@pytest.mark.parametrize("hostile_site", [HOSTILE_ROBOTS], indirect=True)
async def test_robots_crawl_delay_spaces_requests(hostile_site: ServedApp) -> None:
    paths = ("/private/open", "/search?page=2", "/links/good")
    records, _ = await crawl(hostile_site, *paths, per_host_concurrency=4)

    assert sorted(r["status"] for r in records) == [200, 200, 200]
    times = [r.time for r in hostile_site.requests]
    assert hostile_site.fetched_paths().count("/robots.txt") == 1
    # times[0] is robots.txt; the delay applies between the page requests.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[1:])]
    assert min(gaps) >= 0.95


@pytest.mark.parametrize("hostile_site", [500], indirect=True)
async def test_robots_500_disallows_host(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/")

    message = (
        f"robots.txt of {hostile_site.base_url} is unavailable "
        "(HTTP 500 Internal Server Error); the host is treated as disallowed"
    )
    assert records == [failure(hostile_site, "/", "robots", message)]
    assert hostile_site.fetched_paths() == ["/robots.txt"]


async def test_robots_404_allows_everything(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/private/secret")

    assert records == [
        page(hostile_site, "/private/secret", size_bytes=161, title="Private secret")
    ]


# Character encodings ---------------------------------------------------------

CHARSET_CASES = [
    ("/charset/bom-vs-header", "utf-8", "Привет, мир", 695),
    ("/charset/meta-only", "cp1251", "Привет, мир", 462),
    ("/charset/header-vs-meta", "utf-8", "Grüße", 161),
    ("/charset/undeclared", "cp1251", "Привет, мир", 1692),
    ("/charset/bogus", "utf-8", "Grüße", 133),
]


@pytest.mark.parametrize(("path", "encoding", "title", "size"), CHARSET_CASES)
async def test_charset(
    hostile_site: ServedApp, path: str, encoding: str, title: str, size: int
) -> None:
    records, _ = await crawl(hostile_site, path)

    assert records == [
        page(hostile_site, path, encoding=encoding, title=title, size_bytes=size)
    ]


async def test_invalid_bytes_replaced(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/charset/invalid-bytes")

    good = hostile_site.url("/links/good")
    assert records == [
        page(
            hostile_site,
            "/charset/invalid-bytes",
            title="Café \ufffd\ufffd( end",
            size_bytes=177,
            links={"count": 1, "in_scope": [good]},
        )
    ]


# Links -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "title", "size", "target"),
    [
        ("/base/page", "Base absolute", 190, "/base/target/child"),
        ("/base/relative", "Base relative", 179, "/base/sub/leaf"),
        ("/entities", "Entities", 161, "/q?a=1&b=2"),
    ],
)
async def test_link_resolution(
    hostile_site: ServedApp, path: str, title: str, size: int, target: str
) -> None:
    records, _ = await crawl(hostile_site, path, max_depth=1)

    child = hostile_site.url(target)
    assert records[0] == page(
        hostile_site,
        path,
        title=title,
        size_bytes=size,
        links={"count": 1, "in_scope": [child]},
    )
    assert [r["final_url"] for r in records[1:]] == [child]
    assert records[1]["status"] == 200


async def test_rel_nofollow_not_followed(hostile_site: ServedApp) -> None:
    records, stats = await crawl(hostile_site, "/nofollow", max_depth=1)

    ok = hostile_site.url("/nofollow/ok")
    assert records[0] == page(
        hostile_site,
        "/nofollow",
        title="Nofollow",
        size_bytes=233,
        links={"count": 2, "in_scope": [ok]},
    )
    assert [r["url"] for r in records[1:]] == [ok]
    assert "/nofollow/target" not in hostile_site.fetched_paths()
    assert stats.skipped["nofollow"] == 1


async def test_meta_robots_nofollow(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/meta-nofollow", max_depth=1)

    assert records == [
        page(
            hostile_site,
            "/meta-nofollow",
            title="Meta nofollow",
            size_bytes=219,
            robots=["nofollow"],
            links={"count": 1, "in_scope": []},
        )
    ]


async def test_meta_robots_noindex_drops_content(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/meta-noindex", max_depth=1)

    target = hostile_site.url("/meta-noindex/target")
    assert records[0] == page(
        hostile_site,
        "/meta-noindex",
        size_bytes=215,
        robots=["noindex"],
        links={"count": 1, "in_scope": [target]},
    )
    assert [r["url"] for r in records[1:]] == [target]


async def test_x_robots_tag_header(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/x-robots", max_depth=1)

    assert records == [
        page(
            hostile_site,
            "/x-robots",
            size_bytes=172,
            robots=["nofollow", "noindex"],
            links={"count": 1, "in_scope": []},
        )
    ]


async def test_url_variants_fetched_once(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/variants", max_depth=1)

    variant = hostile_site.url("/v?a=1&b=2")
    assert records[0] == page(
        hostile_site,
        "/variants",
        title="Variants",
        size_bytes=374,
        links={"count": 3, "in_scope": [variant]},
    )
    assert [r["url"] for r in records[1:]] == [variant]
    fetched = [p for p in hostile_site.fetched_paths() if p.startswith("/v?")]
    assert fetched == ["/v?a=1&b=2"]


async def test_link_schemes_skipped(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/links/schemes")

    good = hostile_site.url("/links/good")
    assert records == [
        page(
            hostile_site,
            "/links/schemes",
            title="Link schemes",
            size_bytes=544,
            links={"count": 1, "in_scope": [good]},
        )
    ]


async def test_idn_link_out_of_scope(hostile_site: ServedApp) -> None:
    records, stats = await crawl(hostile_site, "/idn", max_depth=1)

    assert records == [
        page(
            hostile_site,
            "/idn",
            title="IDN",
            size_bytes=174,
            links={"count": 1, "in_scope": []},
        )
    ]
    assert stats.skipped["out_of_scope"] == 1


async def test_malformed_html(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/malformed", max_depth=1)

    target, upper = (
        hostile_site.url("/malformed/target"),
        hostile_site.url("/malformed/upper"),
    )
    assert records[0] == page(
        hostile_site,
        "/malformed",
        title="Malformed",
        size_bytes=404,
        links={"count": 2, "in_scope": [target, upper]},
    )
    assert sorted(r["url"] for r in records[1:]) == [target, upper]
    assert "/malformed/in-comment" not in hostile_site.fetched_paths()


# Traps -----------------------------------------------------------------------


async def test_calendar_trap_bounded(hostile_site: ServedApp) -> None:
    records, stats = await crawl(
        hostile_site, "/calendar?month=2024-01", max_depth=1000, max_query_variants=10
    )

    assert len(records) == 10
    assert {r["status"] for r in records} == {200}
    assert stats.skipped["trap"] == 2
    assert stats.finish_reason == "completed"


async def test_repeating_path_trap_bounded(hostile_site: ServedApp) -> None:
    records, stats = await crawl(hostile_site, "/repeat/a/", max_depth=1000)

    assert [r["url"] for r in records] == [
        hostile_site.url("/repeat/a/"),
        hostile_site.url("/repeat/a/a/"),
        hostile_site.url("/repeat/a/a/a/"),
    ]
    assert stats.skipped["trap"] == 1


# Sitemaps and whole-site crawls ------------------------------------------------


async def test_sitemaps_seed_the_crawl(hostile_site: ServedApp) -> None:
    records, stats = await crawl(
        hostile_site,
        sitemaps=(hostile_site.url("/sitemap.xml"), hostile_site.url("/sitemap.txt")),
    )

    pages = sorted((r["url"], r["referrer"]) for r in records)
    xml, text = (
        hostile_site.url("/sitemap-pages.xml.gz"),
        hostile_site.url("/sitemap.txt"),
    )
    assert pages == [
        (hostile_site.url("/sitemap/page-1"), xml),
        (hostile_site.url("/sitemap/page-2"), xml),
        (hostile_site.url("/sitemap/page-3"), xml),
        (hostile_site.url("/sitemap/text-1"), text),
        (hostile_site.url("/sitemap/text-2"), text),
    ]
    assert stats.skipped["out_of_scope"] == 1
    assert "/sitemap/offsite" not in hostile_site.fetched_paths()


async def test_whole_site_each_page_once(hostile_site: ServedApp) -> None:
    # max_retry_after_s below the site's Retry-After: a 429 is recorded instead
    # of raising the host's delay to a second for the rest of the crawl.
    records, stats = await crawl(
        hostile_site,
        "/",
        max_depth=3,
        max_query_variants=5,
        max_body_bytes=1024 * 1024,
        max_retry_after_s=0.5,
        total_timeout_s=30.0,
        concurrency=8,
    )

    keys = [r["final_url"] for r in records]
    assert len(keys) == len(set(keys))
    fetched = [p for p in hostile_site.fetched_paths() if p != "/robots.txt"]
    assert "/malformed/in-comment" not in fetched
    assert "/nofollow/target" not in fetched
    assert stats.finish_reason == "completed"
    assert stats.skipped["internal_error"] == 0


async def test_max_pages_limits_fetches(hostile_site: ServedApp) -> None:
    records, stats = await crawl(hostile_site, "/", max_depth=3, max_pages=5)

    # Redirect hops belong to their page: five records, not five requests.
    assert len(records) == 5
    assert stats.finish_reason == "max_pages"


ROBOTS_WITH_SITEMAPS = (
    "User-agent: *\nAllow: /\n"
    "Sitemap: /sitemap.txt\nSitemap: javascript:alert(1)\nSitemap: http://[::1\n"
)


@pytest.mark.parametrize("hostile_site", [ROBOTS_WITH_SITEMAPS], indirect=True)
async def test_robots_sitemap_lines_resolved_or_skipped(
    hostile_site: ServedApp,
) -> None:
    records, stats = await crawl(hostile_site, "/links/good", robots_sitemaps=True)

    assert sorted(r["url"] for r in records) == [
        hostile_site.url("/links/good"),
        hostile_site.url("/sitemap/text-1"),
        hostile_site.url("/sitemap/text-2"),
    ]
    assert stats.skipped["sitemap_error"] == 2


async def test_unreachable_host_recorded_as_connect_error() -> None:
    # A bound socket that never listens refuses connections.
    with socket.socket() as closed:
        closed.bind(("127.0.0.2", 0))
        port = closed.getsockname()[1]
        options = CrawlOptions(seeds=(f"http://127.0.0.2:{port}/",), **FAST_OPTIONS)
        records: list[PageRecord] = []
        guard = AddressGuard(parse_networks(LOOPBACK, option="allow_networks"))
        async with create_session(guard) as session:
            await Crawler(
                options, MemoryStore(records.append), session, ParsePool("inline")
            ).run()

    [record] = records
    assert record.error is not None
    assert record.error.kind == "connect"
    assert record.error.message.startswith("robots.txt could not be fetched")


async def test_seed_outside_scope_gets_record(hostile_site: ServedApp) -> None:
    records, _ = await crawl(hostile_site, "/links/good", exclude=("good",))

    assert records == [
        failure(
            hostile_site,
            "/links/good",
            "out_of_scope",
            "seed rejected: URL matches exclude pattern 'good'",
        )
    ]
    assert hostile_site.fetched_paths() == []


class _FailingStore(MemoryStore):
    """An in-memory store whose saves fail from the third on, like a lost database."""

    def __init__(self, on_record: Callable[[PageRecord], None]) -> None:
        super().__init__(on_record)
        self.saves = 0
        self.done_keys: list[str] = []

    async def save(self, record: PageRecord) -> None:
        self.saves += 1
        if self.saves >= 3:
            raise StoreError("database is gone")
        await super().save(record)

    async def done(self, request: CrawlRequest) -> None:
        self.done_keys.append(request.key)


async def test_store_failure_stops_crawl_without_losing_requests(
    hostile_site: ServedApp,
) -> None:
    # One request at a time, so the failing save is the last one made.
    overrides = {**FAST_OPTIONS, "max_depth": 1, "concurrency": 1}
    options = CrawlOptions(seeds=(hostile_site.url("/"),), **overrides)
    records: list[PageRecord] = []
    store = _FailingStore(records.append)
    guard = AddressGuard(parse_networks(LOOPBACK, option="allow_networks"))
    async with create_session(guard) as session:
        stats = await Crawler(options, store, session, ParsePool("inline")).run()

    assert stats.finish_reason == "store_error"
    assert len(records) == 2
    assert store.saves == 3
    # Only requests whose record was kept are done; the failed one is not.
    assert store.done_keys == [hostile_site.url("/"), records[1].url]
