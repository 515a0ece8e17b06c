"""Checks that the test sites behave as their docstrings promise.

The crawler's tests draw conclusions from these sites ("the crawler stopped the
redirect loop", "robots.txt was obeyed"), and those conclusions are only as good
as the sites. These tests fetch the routes with aiohttp's client, bypassing the
crawler, so a broken site shows up here instead of as a puzzling crawler failure.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import re
import struct
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from tests.sites.hostile import (
    BIG_BODY_BYTES,
    CORRUPT_GZIP_BODY,
    GZIP_BOMB_DECOMPRESSED_BYTES,
    HOSTILE_ROBOTS,
    ServedApp,
    create_hostile_app,
    gzip_bomb_body,
    serve_app,
)
from tests.sites.nginx import NginxSite, run_nginx


class _HrefCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value or "" for name, value in attrs if name == "href")


def _hrefs(page: str) -> list[str]:
    collector = _HrefCollector()
    collector.feed(page)
    collector.close()
    return collector.hrefs


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that neither follows redirects nor decompresses bodies."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as session:
        yield session


async def _get(
    client: aiohttp.ClientSession, url: str
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    async with client.get(url, allow_redirects=False) as response:
        return response.status, response.headers, await response.read()


# Hostile site: links and statuses ------------------------------------------------

EXPECTED_STATUSES = {
    "/redirect/chain/1": (302, "/redirect/chain/2"),
    "/redirect/chain/2": (301, "/redirect/chain/3"),
    "/redirect/chain/3": (307, "/redirect/final"),
    "/redirect/final": (200, None),
    "/redirect/loop/a": (302, "/redirect/loop/b"),
    "/redirect/loop/b": (302, "/redirect/loop/a"),
    "/redirect/relative": (302, "../redirect/final"),
    "/redirect/many": (302, "/redirect/many?n=1"),
    "/redirect/many?n=10": (302, "/redirect/many?n=11"),
    "/redirect/many?n=11": (200, None),
    "/redirect/loopback?port=x": (400, None),
    "/status/404": (404, None),
    "/status/500": (500, None),
    "/private/secret": (200, None),
    "/private/open": (200, None),
    "/private/open-not": (200, None),
    "/search?q=x": (200, None),
    "/search?page=2": (200, None),
    "/base/target/child": (200, None),
    "/base/sub/leaf": (200, None),
    "/base/child": (404, None),
    "/nofollow/target": (200, None),
    "/repeat/a/a/a/a/a/": (200, None),
    "/repeat/b/": (404, None),
    "/robots.txt": (404, None),
    "/sitemap/page-1": (200, None),
}


async def test_hostile_statuses_and_locations(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    for path_qs, (expected_status, expected_location) in EXPECTED_STATUSES.items():
        status, headers, _ = await _get(client, hostile_site.url(path_qs))

        assert status == expected_status, path_qs
        assert headers.get("Location") == expected_location, path_qs


async def test_hostile_redirects_name_other_hosts(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    port = hostile_site.port

    _, offsite, _ = await _get(client, hostile_site.url("/redirect/offsite"))
    _, loopback, _ = await _get(client, hostile_site.url("/redirect/loopback?port=81"))
    _, loopback_default, _ = await _get(client, hostile_site.url("/redirect/loopback"))

    assert offsite["Location"] == f"http://127.0.0.3:{port}/"
    assert loopback["Location"] == "http://127.0.0.1:81/"
    assert loopback_default["Location"] == f"http://127.0.0.1:{port}/"


async def test_hostile_index_links_resolve(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    _, _, body = await _get(client, hostile_site.url("/"))
    links = _hrefs(body.decode("utf-8"))
    too_slow = {"/slow/never", "/slow/trickle", "/slow/headers-then-stall"}
    too_big = {"/big", "/big-with-length", "/gzip-bomb"}

    assert len(links) == 44
    for link in links:
        if link in too_slow | too_big:
            continue
        status, _, _ = await _get(client, hostile_site.url(link))
        assert status in {200, 301, 302, 307, 404, 429, 500, 503}, link
        assert status != 404 or link == "/status/404", link


async def test_hostile_first_time_failures(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    flaky = [
        (await _get(client, hostile_site.url("/status/flaky-503")))[0] for _ in "12"
    ]
    seconds = [await _get(client, hostile_site.url("/status/429")) for _ in "12"]
    dated = [
        await _get(client, hostile_site.url("/status/429-http-date")) for _ in "12"
    ]
    retry_at = email.utils.parsedate_to_datetime(dated[0][1]["Retry-After"]).timestamp()

    assert flaky == [503, 200]
    assert [status for status, _, _ in seconds] == [429, 200]
    assert seconds[0][1]["Retry-After"] == "1"
    assert [status for status, _, _ in dated] == [429, 200]
    assert 0.5 < retry_at - time.time() <= 2.0


async def test_hostile_state_per_instance(
    start_hostile_site: Callable[..., ServedApp], client: aiohttp.ClientSession
) -> None:
    first = start_hostile_site()
    second = start_hostile_site()

    first_status = (await _get(client, first.url("/status/flaky-503")))[0]
    second_status = (await _get(client, second.url("/status/flaky-503")))[0]

    assert first.port != second.port
    assert first_status == 503
    assert second_status == 503


# Hostile site: request log -------------------------------------------------------


async def test_hostile_request_log(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    before = time.monotonic()
    await _get(client, hostile_site.url("/q?a=1&b=2"))
    await _get(client, hostile_site.url("/no/such/page"))

    assert hostile_site.fetched_paths() == ["/q?a=1&b=2", "/no/such/page"]
    first, second = hostile_site.requests
    assert before <= first.time <= second.time <= time.monotonic()
    assert first.peer is not None
    assert first.peer[0].startswith("127.")
    assert hostile_site.base_url == f"http://127.0.0.2:{hostile_site.port}"


async def test_loopback_site_is_separate(
    hostile_site: ServedApp, loopback_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    status, _, _ = await _get(client, loopback_site.url("/"))

    assert status == 200
    assert loopback_site.base_url == f"http://127.0.0.1:{loopback_site.port}"
    assert loopback_site.fetched_paths() == ["/"]
    assert hostile_site.fetched_paths() == []


# Hostile site: robots.txt --------------------------------------------------------


@pytest.mark.parametrize("hostile_site", [HOSTILE_ROBOTS], indirect=True)
async def test_robots_text(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    status, headers, body = await _get(client, hostile_site.url("/robots.txt"))

    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body.decode("utf-8") == HOSTILE_ROBOTS


@pytest.mark.parametrize("robots_status", [500, 403, 404])
async def test_robots_status(
    robots_status: int,
    start_hostile_site: Callable[..., ServedApp],
    client: aiohttp.ClientSession,
) -> None:
    site = start_hostile_site(robots=robots_status)

    status, _, _ = await _get(client, site.url("/robots.txt"))

    assert status == robots_status


def test_robots_parameter_checked() -> None:
    with pytest.raises(ValueError, match="robots must be"):
        create_hostile_app(robots=99)
    with pytest.raises(ValueError, match="robots must be"):
        create_hostile_app(robots=True)


# Hostile site: bodies ------------------------------------------------------------


def test_gzip_bomb_body_is_small() -> None:
    body = gzip_bomb_body()
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    first_mebibyte = decompressor.decompress(body, 1024 * 1024)
    (declared_size,) = struct.unpack("<I", body[-4:])

    assert len(body) < 2 * 1024 * 1024
    assert first_mebibyte == bytes(1024 * 1024)
    assert declared_size == GZIP_BOMB_DECOMPRESSED_BYTES % 2**32


async def test_gzip_routes_headers(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    bomb_status, bomb_headers, bomb_body = await _get(
        client, hostile_site.url("/gzip-bomb")
    )
    corrupt_status, corrupt_headers, corrupt_body = await _get(
        client, hostile_site.url("/corrupt-gzip")
    )

    assert bomb_status == 200
    assert bomb_headers["Content-Encoding"] == "gzip"
    assert bomb_body == gzip_bomb_body()
    assert corrupt_status == 200
    assert corrupt_headers["Content-Encoding"] == "gzip"
    assert corrupt_body == CORRUPT_GZIP_BODY
    with pytest.raises(zlib.error):
        zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(corrupt_body)


@pytest.mark.parametrize("path", ["/big", "/big-with-length"])
async def test_big_body_size(
    path: str, hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    status, headers, body = await _get(client, hostile_site.url(path))

    assert status == 200
    assert len(body) == BIG_BODY_BYTES
    assert body.endswith(b"</html>\n")
    if path == "/big":
        assert "Content-Length" not in headers
    else:
        assert headers["Content-Length"] == str(BIG_BODY_BYTES)


async def test_file_types(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    _, pdf_headers, pdf = await _get(client, hostile_site.url("/file.pdf"))
    _, png_headers, png = await _get(client, hostile_site.url("/image.png"))

    assert pdf_headers["Content-Type"] == "application/pdf"
    assert pdf.startswith(b"%PDF-")
    assert png_headers["Content-Type"] == "image/png"
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png[12:16] == b"IHDR"


CHARSET_CASES = {
    "/charset/bom-vs-header": (
        "text/html; charset=windows-1251",
        "utf-8-sig",
        "Привет",
    ),
    "/charset/meta-only": ("text/html", "cp1251", "Привет, мир"),
    "/charset/header-vs-meta": ("text/html; charset=utf-8", "utf-8", "Grüße"),
    "/charset/undeclared": ("text/html", "cp1251", "Привет, мир"),
    "/charset/bogus": ("text/html; charset=x-bogus-42", "utf-8", "Grüße"),
}


@pytest.mark.parametrize("path", sorted(CHARSET_CASES))
async def test_charset_pages(
    path: str, hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    content_type, encoding, title = CHARSET_CASES[path]

    status, headers, body = await _get(client, hostile_site.url(path))

    assert status == 200
    assert headers["Content-Type"] == content_type
    assert f"<title>{title}".encode(encoding.removesuffix("-sig")) in body
    assert body.decode(encoding)


async def test_charset_details(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    _, _, bom = await _get(client, hostile_site.url("/charset/bom-vs-header"))
    _, _, meta_only = await _get(client, hostile_site.url("/charset/meta-only"))
    _, _, header_vs_meta = await _get(
        client, hostile_site.url("/charset/header-vs-meta")
    )
    _, _, undeclared = await _get(client, hostile_site.url("/charset/undeclared"))
    _, _, invalid = await _get(client, hostile_site.url("/charset/invalid-bytes"))

    assert bom.startswith(b"\xef\xbb\xbf")
    assert b'<meta charset="windows-1251">' in meta_only
    assert b'<meta charset="iso-8859-1">' in header_vs_meta
    assert b"charset" not in undeclared
    assert len(undeclared) > 1000
    with pytest.raises(UnicodeDecodeError):
        invalid.decode("utf-8")
    assert "<title>Café \ufffd\ufffd( end</title>" in invalid.decode("utf-8", "replace")


# Hostile site: links -------------------------------------------------------------

LINK_CASES = {
    "/base/page": ["child"],
    "/base/relative": ["leaf"],
    "/entities": ["/q?a=1&b=2"],
    "/nofollow": ["/nofollow/target", "/nofollow/ok"],
    "/meta-nofollow": ["/meta-nofollow/target"],
    "/x-robots": ["/x-robots/target"],
    "/variants": [
        "/v?a=1&b=2",
        "/v?b=2&a=1",
        "/v?a=1&b=2#frag",
        "/v?a=1&b=2&utm_source=x",
    ],
    "/calendar?month=2024-12": ["/calendar?month=2024-11", "/calendar?month=2025-01"],
    "/calendar?month=2024-01": ["/calendar?month=2023-12", "/calendar?month=2024-02"],
    "/calendar?month=bogus": ["/calendar?month=2023-12", "/calendar?month=2024-02"],
    "/repeat/a/a/": ["a/"],
    "/malformed": ["/malformed/target", "/malformed/upper"],
    "/links/schemes": [
        "javascript:alert(1)",
        "mailto:nobody@example.invalid",
        "tel:+15550100",
        "data:text/html;base64,PGgxPmRhdGE8L2gxPg==",
        "#section",
        "",
        "/links/good",
    ],
    "/idn": ["http://пример.рф/"],
}


@pytest.mark.parametrize("path_qs", sorted(LINK_CASES))
async def test_link_pages(
    path_qs: str, hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    status, _, body = await _get(client, hostile_site.url(path_qs))

    assert status == 200
    assert _hrefs(body.decode("utf-8")) == LINK_CASES[path_qs]


async def test_page_headers_and_meta(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    _, x_robots, _ = await _get(client, hostile_site.url("/x-robots"))
    _, _, noindex = await _get(client, hostile_site.url("/meta-noindex"))
    _, _, nofollow = await _get(client, hostile_site.url("/nofollow"))
    _, _, query = await _get(client, hostile_site.url("/q?a=1&b=2"))

    assert x_robots["X-Robots-Tag"] == "noindex, nofollow"
    assert b'<meta name="robots" content="noindex">' in noindex
    assert b'rel="nofollow"' in nofollow
    assert b"<title>Query: a=1&amp;b=2</title>" in query


async def test_sitemaps(hostile_site: ServedApp, client: aiohttp.ClientSession) -> None:
    _, _, index = await _get(client, hostile_site.url("/sitemap.xml"))
    _, pages_headers, pages = await _get(
        client, hostile_site.url("/sitemap-pages.xml.gz")
    )
    _, _, text = await _get(client, hostile_site.url("/sitemap.txt"))
    urlset = zlib.decompress(pages, 16 + zlib.MAX_WBITS).decode("utf-8")
    base = hostile_site.base_url

    assert f"<loc>{base}/sitemap-pages.xml.gz</loc>" in index.decode("utf-8")
    assert pages_headers["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in pages_headers
    assert re.findall(r"<loc>(.*?)</loc>", urlset) == [
        f"{base}/sitemap/page-1",
        f"{base}/sitemap/page-2",
        f"{base}/sitemap/page-3",
        f"http://127.0.0.3:{hostile_site.port}/sitemap/offsite",
    ]
    assert text.decode("utf-8").split() == [
        f"{base}/sitemap/text-1",
        f"{base}/sitemap/text-2",
    ]


# Hostile site: slow routes -------------------------------------------------------


async def test_slow_routes_stall(
    hostile_site: ServedApp, client: aiohttp.ClientSession
) -> None:
    async with client.get(hostile_site.url("/slow/headers-then-stall")) as response:
        first_bytes = await response.content.readexactly(10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(response.content.read(1), timeout=1.0)

    started = time.monotonic()
    async with client.get(hostile_site.url("/slow/trickle")) as response:
        trickled = await response.content.readexactly(3)
    trickle_seconds = time.monotonic() - started

    with pytest.raises(TimeoutError):
        await client.get(
            hostile_site.url("/slow/never"), timeout=aiohttp.ClientTimeout(total=0.5)
        )

    assert first_bytes == b"<html><bod"
    assert response.status == 200
    assert trickled == b"..."
    assert 0.9 <= trickle_seconds < 3.0


def test_shutdown_ends_stalled_handlers() -> None:
    async def request_never(url: str) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(url) as response:
                    await response.read()
            except aiohttp.ClientError:
                pass

    with serve_app(create_hostile_app(), "127.0.0.2") as site:
        loop = asyncio.new_event_loop()
        task = loop.create_task(request_never(site.url("/slow/never")))
        loop.run_until_complete(asyncio.sleep(0.3))
        started = time.monotonic()
    stop_seconds = time.monotonic() - started
    loop.run_until_complete(asyncio.wait_for(task, timeout=10))
    loop.close()

    assert site.fetched_paths() == ["/slow/never"]
    assert stop_seconds < 2.0


def test_serve_app_rejects_other_hosts() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        with serve_app(create_hostile_app(), "0.0.0.0"):
            pass


# nginx ---------------------------------------------------------------------------


async def test_nginx_serves_docs(
    python_docs_site: NginxSite, client: aiohttp.ClientSession
) -> None:
    offset = python_docs_site.access_log_offset()

    index_status, index_headers, index = await _get(
        client, python_docs_site.base_url + "index.html"
    )
    missing_status, _, _ = await _get(
        client, python_docs_site.base_url + "no%20such.html"
    )
    directory_status, directory_headers, _ = await _get(
        client, python_docs_site.base_url + "library"
    )
    entries = python_docs_site.read_access_log(since=offset)

    assert python_docs_site.base_url == f"http://127.0.0.1:{python_docs_site.port}/"
    assert index_status == 200
    assert index_headers["Content-Type"] == "text/html"
    assert b"<title>" in index
    assert missing_status == 404
    assert directory_status == 301
    assert directory_headers["Location"] == python_docs_site.base_url + "library/"
    assert [(e.method, e.uri, e.path, e.status) for e in entries] == [
        ("GET", "/index.html", "/index.html", 200),
        ("GET", "/no%20such.html", "/no such.html", 404),
        ("GET", "/library", "/library", 301),
    ]
    assert {entry.host for entry in entries} == {f"127.0.0.1:{python_docs_site.port}"}


def test_nginx_serves_private_folder(tmp_path: Path) -> None:
    site_root = tmp_path / "site"
    site_root.mkdir()
    (site_root / "index.html").write_text("<title>tmp</title>", encoding="utf-8")
    tmp_path.chmod(0o700)

    # An empty ProxyHandler keeps the request on loopback even if *_proxy is set.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    with run_nginx(site_root, tmp_path / "nginx") as site:
        with opener.open(site.base_url, timeout=10) as response:
            status, body = response.status, response.read()
        pid = site.pid
        entries = site.read_access_log()

    assert status == 200
    assert body == b"<title>tmp</title>"
    assert [(entry.uri, entry.status) for entry in entries] == [("/", 200)]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
