"""Tests for the fetcher against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import random
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from pytest_aiohttp import AiohttpServer

from crawler.errors import FetchError
from crawler.fetch import (
    Fetcher,
    Response,
    RetryPolicy,
    create_session,
    describe_status,
    parse_retry_after,
)
from crawler.guard import AddressGuard, parse_networks
from crawler.options import CrawlOptions

MAX_BODY = 4096
TEXT = ("Crawl politely. " * 64).encode()
ZERO_BLOCK = bytes(1024 * 1024)
BOMB_BLOCKS = 100_000


@dataclass
class Site:
    """A test server and what its handlers observed."""

    base: str
    paths: list[str] = field(default_factory=list)
    request_headers: dict[str, str] = field(default_factory=dict)
    bomb_blocks_sent: int = 0
    bomb_finished: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.base + path


def _encoded(body: bytes, encoding: str) -> web.Response:
    return web.Response(
        body=body,
        content_type="text/plain",
        headers={"Content-Encoding": encoding},
    )


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _gzip_zero_blocks(count: int) -> Iterator[bytes]:
    """Yield a gzip stream of ``count`` MiB of zeros, compressed one MiB at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for _ in range(count):
        yield compressor.compress(ZERO_BLOCK) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _build_app(site: Site) -> web.Application:
    async def log_request(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        site.paths.append(request.path_qs)
        site.request_headers = dict(request.headers)
        return await handler(request)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=TEXT, content_type="text/html", charset="utf-8")

    async def gzip_body(request: web.Request) -> web.Response:
        return _encoded(gzip.compress(TEXT), "gzip")

    async def x_gzip_body(request: web.Request) -> web.Response:
        return _encoded(gzip.compress(TEXT), "x-gzip")

    async def gzip_members(request: web.Request) -> web.Response:
        return _encoded(gzip.compress(b"first ") + gzip.compress(b"second"), "gzip")

    async def deflate_zlib(request: web.Request) -> web.Response:
        return _encoded(zlib.compress(TEXT), "deflate")

    async def deflate_raw(request: web.Request) -> web.Response:
        return _encoded(_raw_deflate(TEXT), "deflate")

    async def deflate_raw_split(request: web.Request) -> web.StreamResponse:
        # One byte first, because zlib checks its header once two bytes arrive.
        body = _raw_deflate(TEXT)
        response = web.StreamResponse(headers={"Content-Encoding": "deflate"})
        await response.prepare(request)
        await response.write(body[:1])
        await asyncio.sleep(0.05)
        await response.write(body[1:])
        await response.write_eof()
        return response

    async def sized(request: web.Request) -> web.Response:
        length = int(request.query["n"])
        return web.Response(body=TEXT * (length // len(TEXT) + 1))

    async def exact(request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(256)) * (int(request.query["n"]) // 256))

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(int(request.query["chunks"])):
            await response.write(b"x" * 1024)
        await response.write_eof()
        return response

    async def gzip_large(request: web.Request) -> web.Response:
        return _encoded(gzip.compress(b"z" * (MAX_BODY * 4)), "gzip")

    async def gzip_bomb(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        try:
            await response.prepare(request)
            for block in _gzip_zero_blocks(BOMB_BLOCKS):
                await response.write(block)
                site.bomb_blocks_sent += 1
                # write() waits only when the socket buffer is full. The client
                # runs on this event loop, so yield to let it read each block.
                await asyncio.sleep(0)
            await response.write_eof()
        except ConnectionError:
            pass
        finally:
            site.bomb_finished.set()
        return response

    async def corrupt_gzip(request: web.Request) -> web.Response:
        return _encoded(
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * 64, "gzip"
        )

    async def truncated_gzip(request: web.Request) -> web.Response:
        return _encoded(gzip.compress(TEXT)[:8], "gzip")

    async def brotli(request: web.Request) -> web.Response:
        return _encoded(b"\x0b\x02\x80hello\x03", "br")

    async def empty_gzip_redirect(request: web.Request) -> web.Response:
        return web.Response(
            status=302, headers={"Location": "/hello", "Content-Encoding": "gzip"}
        )

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/hello"})

    async def created(request: web.Request) -> web.Response:
        return web.Response(status=201, headers={"Location": "/hello"})

    async def never(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response()

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(int(request.query.get("bytes", "10"))):
            await response.write(b".")
            await asyncio.sleep(float(request.query.get("gap", "0.01")))
        await response.write_eof()
        return response

    async def set_cookie(request: web.Request) -> web.Response:
        response = web.Response(text="cookie set")
        response.set_cookie("session", "secret")
        return response

    async def echo_cookie(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("Cookie", "no cookie"))

    app = web.Application(middlewares=[web.middleware(log_request)])
    routes = {
        "/hello": hello,
        "/gzip": gzip_body,
        "/x-gzip": x_gzip_body,
        "/gzip-members": gzip_members,
        "/deflate-zlib": deflate_zlib,
        "/deflate-raw": deflate_raw,
        "/deflate-raw-split": deflate_raw_split,
        "/sized": sized,
        "/exact": exact,
        "/streamed": streamed,
        "/gzip-large": gzip_large,
        "/gzip-bomb": gzip_bomb,
        "/corrupt-gzip": corrupt_gzip,
        "/truncated-gzip": truncated_gzip,
        "/brotli": brotli,
        "/empty-gzip-redirect": empty_gzip_redirect,
        "/redirect": redirect,
        "/created": created,
        "/never": never,
        "/trickle": trickle,
        "/set-cookie": set_cookie,
        "/echo-cookie": echo_cookie,
    }
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app


@pytest.fixture
async def site(aiohttp_server: AiohttpServer) -> Site:
    site = Site(base="")
    server = await aiohttp_server(_build_app(site), host="127.0.0.1")
    site.base = str(server.make_url("")).rstrip("/")
    return site


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    guard = AddressGuard(parse_networks("127.0.0.0/8", option="allow_network"))
    async with create_session(guard) as session:
        yield session


def make_options(**overrides: Any) -> CrawlOptions:
    values: dict[str, Any] = {
        "seeds": ("http://placeholder.invalid/",),
        "max_body_bytes": MAX_BODY,
    }
    values.update(overrides)
    options = CrawlOptions(**values)
    options.validate()
    return options


class StepClock:
    """A clock that moves ``step`` seconds forward every time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def fetch_error(fetcher: Fetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url)
    return caught.value


# Successful responses


async def test_fetch_plain_body(site: Site, session: aiohttp.ClientSession) -> None:
    response = await Fetcher(session, make_options(max_body_bytes=1024 * 1024)).fetch(
        site.url("/hello")
    )

    assert response.status == 200
    assert response.body == TEXT
    assert response.url == site.url("/hello")
    assert response.content_type == "text/html"
    assert response.location is None


async def test_fetch_sends_user_agent_and_encodings(
    site: Site, session: aiohttp.ClientSession
) -> None:
    options = make_options(user_agent="testbot/2.0", max_body_bytes=1024 * 1024)

    await Fetcher(session, options).fetch(site.url("/hello"))

    assert site.request_headers["User-Agent"] == "testbot/2.0"
    assert site.request_headers["Accept-Encoding"] == "gzip, deflate"


async def test_fetch_elapsed_uses_injected_clock(
    site: Site, session: aiohttp.ClientSession
) -> None:
    options = make_options(max_body_bytes=1024 * 1024, min_rate_bytes_s=0)
    fetcher = Fetcher(session, options, clock=StepClock(0.25))

    response = await fetcher.fetch(site.url("/hello"))

    # Fetcher reads the clock at the start, before the body, after each chunk
    # and at the end. A one-chunk body makes four reads, the last 0.75 s later.
    assert response.elapsed_ms == 750


@pytest.mark.parametrize(
    "path",
    ["/gzip", "/x-gzip", "/deflate-zlib", "/deflate-raw", "/deflate-raw-split"],
)
async def test_fetch_decodes_compressed_body(
    site: Site, session: aiohttp.ClientSession, path: str
) -> None:
    options = make_options(max_body_bytes=1024 * 1024)

    response = await Fetcher(session, options).fetch(site.url(path))

    assert response.body == TEXT


async def test_fetch_concatenated_gzip_members(
    site: Site, session: aiohttp.ClientSession
) -> None:
    response = await Fetcher(session, make_options()).fetch(site.url("/gzip-members"))

    assert response.body == b"first second"


async def test_fetch_body_exactly_at_limit(
    site: Site, session: aiohttp.ClientSession
) -> None:
    response = await Fetcher(session, make_options()).fetch(
        site.url(f"/exact?n={MAX_BODY}")
    )

    assert len(response.body) == MAX_BODY


async def test_fetch_empty_gzip_redirect(
    site: Site, session: aiohttp.ClientSession
) -> None:
    response = await Fetcher(session, make_options()).fetch(
        site.url("/empty-gzip-redirect")
    )

    assert response.status == 302
    assert response.body == b""
    assert response.location == "/hello"


# Redirects


async def test_fetch_does_not_follow_redirect(
    site: Site, session: aiohttp.ClientSession
) -> None:
    response = await Fetcher(session, make_options()).fetch(site.url("/redirect"))

    assert response.status == 302
    assert response.location == "/hello"
    assert site.paths == ["/redirect"]


async def test_location_ignored_without_redirect_status(
    site: Site, session: aiohttp.ClientSession
) -> None:
    response = await Fetcher(session, make_options()).fetch(site.url("/created"))

    assert response.status == 201
    assert response.location is None


# Size limits


async def test_fetch_too_large_with_content_length(
    site: Site, session: aiohttp.ClientSession
) -> None:
    error = await fetch_error(
        Fetcher(session, make_options()), site.url(f"/sized?n={MAX_BODY + 1}")
    )

    assert error.kind == "too_large"
    assert "Content-Length" in error.message
    assert error.retryable is False


async def test_fetch_too_large_streamed(
    site: Site, session: aiohttp.ClientSession
) -> None:
    error = await fetch_error(
        Fetcher(session, make_options()), site.url("/streamed?chunks=8")
    )

    assert error.kind == "too_large"
    assert "after decompression" in error.message


async def test_fetch_too_large_after_gunzip(
    site: Site, session: aiohttp.ClientSession
) -> None:
    error = await fetch_error(Fetcher(session, make_options()), site.url("/gzip-large"))

    assert error.kind == "too_large"


async def test_fetch_gzip_bomb_stops_early(
    site: Site, session: aiohttp.ClientSession
) -> None:
    error = await fetch_error(Fetcher(session, make_options()), site.url("/gzip-bomb"))
    async with asyncio.timeout(10):
        await site.bomb_finished.wait()

    assert error.kind == "too_large"
    # Each block is about 1 KiB on the wire and 1 MiB decompressed, so the
    # client must hang up after the first few of the 100,000 blocks.
    assert site.bomb_blocks_sent < 1000


async def test_fetch_truncate_returns_prefix(
    site: Site, session: aiohttp.ClientSession
) -> None:
    fetcher = Fetcher(session, make_options(max_body_bytes=1024 * 1024))
    full = await fetcher.fetch(site.url("/sized?n=10000"))

    response = await fetcher.fetch(
        site.url("/sized?n=10000"), max_body_bytes=MAX_BODY, truncate=True
    )

    assert response.body == full.body[:MAX_BODY]


async def test_fetch_truncate_gzip_returns_prefix(
    site: Site, session: aiohttp.ClientSession
) -> None:
    response = await Fetcher(session, make_options()).fetch(
        site.url("/gzip-large"), max_body_bytes=1000, truncate=True
    )

    assert response.body == b"z" * 1000


async def test_fetch_truncate_keeps_short_body(
    site: Site, session: aiohttp.ClientSession
) -> None:
    response = await Fetcher(session, make_options()).fetch(
        site.url("/gzip"), max_body_bytes=MAX_BODY, truncate=True
    )

    assert response.body == TEXT


# Decoding errors


@pytest.mark.parametrize("path", ["/corrupt-gzip", "/truncated-gzip"])
async def test_fetch_invalid_gzip(
    site: Site, session: aiohttp.ClientSession, path: str
) -> None:
    error = await fetch_error(Fetcher(session, make_options()), site.url(path))

    assert error.kind == "decode"
    assert "gzip" in error.message


async def test_fetch_unsupported_encoding(
    site: Site, session: aiohttp.ClientSession
) -> None:
    error = await fetch_error(Fetcher(session, make_options()), site.url("/brotli"))

    assert error.kind == "decode"
    assert "'br'" in error.message


# Connection failures and timeouts


async def test_fetch_connection_refused(session: aiohttp.ClientSession) -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        error = await fetch_error(
            Fetcher(session, make_options()), f"http://127.0.0.1:{port}/"
        )

    assert error.kind == "connect"
    assert error.retryable is True


async def test_fetch_read_timeout(site: Site, session: aiohttp.ClientSession) -> None:
    options = make_options(read_timeout_s=0.1)

    error = await fetch_error(Fetcher(session, options), site.url("/never"))

    assert error.kind == "timeout"
    assert "read_timeout_s" in error.message
    assert error.retryable is True


async def test_fetch_total_timeout(site: Site, session: aiohttp.ClientSession) -> None:
    options = make_options(total_timeout_s=0.2, min_rate_bytes_s=0)

    error = await fetch_error(
        Fetcher(session, options), site.url("/trickle?bytes=100&gap=0.05")
    )

    assert error.kind == "timeout"
    assert "total_timeout_s" in error.message


async def test_fetch_slow_body_cut_off(
    site: Site, session: aiohttp.ClientSession
) -> None:
    options = make_options(min_rate_bytes_s=100, rate_grace_s=5.0)
    fetcher = Fetcher(session, options, clock=StepClock(10.0))

    error = await fetch_error(fetcher, site.url("/trickle"))

    assert error.kind == "timeout"
    assert "min_rate_bytes_s 100" in error.message
    assert error.retryable is False


async def test_fetch_slow_body_within_grace(
    site: Site, session: aiohttp.ClientSession
) -> None:
    options = make_options(min_rate_bytes_s=100, rate_grace_s=1000.0)
    fetcher = Fetcher(session, options, clock=StepClock(10.0))

    response = await fetcher.fetch(site.url("/trickle"))

    assert response.body == b"." * 10


async def test_fetch_slow_body_rate_check_disabled(
    site: Site, session: aiohttp.ClientSession
) -> None:
    options = make_options(min_rate_bytes_s=0, rate_grace_s=0.0)
    fetcher = Fetcher(session, options, clock=StepClock(10.0))

    response = await fetcher.fetch(site.url("/trickle"))

    assert response.body == b"." * 10


# Session


async def test_session_keeps_no_cookies(
    site: Site, session: aiohttp.ClientSession
) -> None:
    fetcher = Fetcher(session, make_options())

    await fetcher.fetch(site.url("/set-cookie"))
    response = await fetcher.fetch(site.url("/echo-cookie"))

    assert response.body == b"no cookie"


# Helpers without a server


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (200, "HTTP 200 OK"),
        (404, "HTTP 404 Not Found"),
        (429, "HTTP 429 Too Many Requests"),
        (503, "HTTP 503 Service Unavailable"),
        (599, "HTTP 599"),
    ],
)
def test_describe_status(status: int, text: str) -> None:
    assert describe_status(status) == text


def test_content_type_drops_parameters() -> None:
    response = Response(
        url="http://example.org/",
        status=200,
        headers=_headers({"Content-Type": " Text/HTML ; charset=UTF-8"}),
        body=b"",
        elapsed_ms=0,
    )

    assert response.content_type == "text/html"


def test_content_type_missing() -> None:
    response = Response(
        url="http://example.org/",
        status=200,
        headers=_headers({}),
        body=b"",
        elapsed_ms=0,
    )

    assert response.content_type is None


def _headers(values: dict[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(values))


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 12:00:30", 30.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "²", "12 apples"])
def test_parse_retry_after_invalid(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_backoff_within_bounds() -> None:
    policy = RetryPolicy(max_retries=3, base_s=0.5, max_s=4.0, rng=random.Random(7))

    for attempt in range(1, 11):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = policy.backoff_s(attempt)
            assert ceiling / 2 <= delay <= ceiling, (attempt, delay)


def test_backoff_capped_at_max() -> None:
    policy = RetryPolicy(max_retries=3, base_s=1.0, max_s=30.0, rng=random.Random(1))

    assert policy.backoff_s(40) <= 30.0


def test_backoff_reproducible_with_seed() -> None:
    first = RetryPolicy(2, 0.5, 30.0, rng=random.Random(42))
    second = RetryPolicy(2, 0.5, 30.0, rng=random.Random(42))

    assert [first.backoff_s(n) for n in range(1, 6)] == [
        second.backoff_s(n) for n in range(1, 6)
    ]


def test_retry_policy_from_options() -> None:
    options = make_options(max_retries=4, backoff_base_s=0.25, backoff_max_s=8.0)

    policy = RetryPolicy.from_options(options)

    assert (policy.max_retries, policy.base_s, policy.max_s) == (4, 0.25, 8.0)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(429, True), (503, True), (404, False), (200, False), (501, False)],
)
def test_retryable_status(status: int, retryable: bool) -> None:
    assert RetryPolicy.is_retryable_status(status) is retryable


def test_location_raw_bytes_percent_encoded() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    # aiohttp hands over a Latin-1 "é" byte as a lone surrogate.
    location = "/sp ace/\udce9?a=b c"
    response = Response(
        url="http://example.org/",
        status=302,
        headers=CIMultiDictProxy(CIMultiDict({"Location": location})),
        body=b"",
        elapsed_ms=1,
    )

    assert response.location == "/sp%20ace/%E9?a=b%20c"
