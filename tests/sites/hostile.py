"""A "hostile web" test site: every trap a crawler meets on real sites, on loopback.

Each route reproduces one problem that a crawler must survive or handle correctly.
There are redirect chains and loops, errors and rate limits, and servers that stall.
Some bodies are too big or decompress to gigabytes. Others test robots.txt rules,
wrong or missing charset declarations, ``<base href>`` and nofollow. Some URL
variants are one page, and some link traps grow forever. A middleware logs every
request, so a test can check what the crawler fetched, what it never fetched, and
the time between requests.

Routes (all small HTML pages with status 200 unless the table says otherwise):

==============================  ==================================================
Route                           Behaviour
==============================  ==================================================
``/``                           Index that links to every case page below, but not
                                to ``/robots.txt`` or the sitemaps.
``/redirect/chain/1``           302 to ``/redirect/chain/2``, which answers 301 to
                                ``/redirect/chain/3``, which answers 307 to
                                ``/redirect/final`` (title "Final").
``/redirect/loop/a``            302 to ``/redirect/loop/b``, which answers 302 back
                                to ``/redirect/loop/a``.
``/redirect/offsite``           302 to ``http://127.0.0.3:PORT/``, where PORT is this
                                server's port. Nothing needs to listen there.
``/redirect/loopback?port=N``   302 to ``http://127.0.0.1:N/`` (the
                                ``loopback_site`` fixture). Without ``port`` the
                                target is this server's own port on 127.0.0.1. A
                                port that is not a number from 1 to 65535 gets 400.
``/redirect/relative``          302 with the relative ``Location: ../redirect/final``.
``/redirect/many``              11 redirects: ``/redirect/many`` 302 to
                                ``?n=1``, ..., ``?n=10`` 302 to ``?n=11``, and
                                ``?n=11`` answers 200.
``/status/404``                 Always 404.
``/status/500``                 Always 500.
``/status/flaky-503``           503 on the first request to this app instance, then
                                200.
``/status/429``                 429 with ``Retry-After: 1`` on the first request,
                                then 200.
``/status/429-http-date``       429 on the first request, with ``Retry-After`` as an
                                HTTP date 1 to 2 s ahead (the date has whole
                                seconds, so it is rounded up), then 200.
``/slow/never``                 Accepts the request and sends nothing for 3600 s.
                                The handler ends when the server shuts down.
``/slow/trickle``               200 headers, then 1 byte every 0.5 s for 60 s
                                (120 bytes, no Content-Length).
``/slow/headers-then-stall``    200 headers with ``Content-Length: 1024``, 10 body
                                bytes, then nothing until the server shuts down.
``/big``                        12 MiB of HTML, streamed without Content-Length.
``/big-with-length``            The same 12 MiB with a ``Content-Length`` header.
``/gzip-bomb``                  ``Content-Encoding: gzip`` whose body (about 1 MB)
                                decompresses to 1 GiB of zero bytes. The body is
                                built once per process, which takes seconds: call
                                :func:`start_gzip_bomb_build` early to avoid the
                                wait.
``/corrupt-gzip``               ``Content-Encoding: gzip`` with a gzip header
                                followed by bytes that are not valid deflate data.
``/file.pdf``                   ``application/pdf``, a small fake PDF.
``/image.png``                  ``image/png``, a real 8x8 PNG.
``/robots.txt``                 Only when the app is created with ``robots``: the
                                given text, or the given status code. Otherwise 404.
``/private/secret``             Plain page, disallowed by :data:`HOSTILE_ROBOTS`.
``/private/open``               Plain page, allowed again by ``Allow: ...open$``.
``/private/open-not``           Plain page, disallowed (the ``$`` anchors the Allow).
``/search?q=x``                 Plain page, disallowed by ``/search?*q=``.
``/search?page=2``              Plain page, allowed.
``/charset/bom-vs-header``      UTF-8 BOM and UTF-8 Russian text, header says
                                ``charset=windows-1251``. The BOM wins.
``/charset/meta-only``          No charset in the header, ``<meta
                                charset="windows-1251">``, body in cp1251, title
                                "Привет, мир".
``/charset/header-vs-meta``     Header ``charset=utf-8``, meta says ``iso-8859-1``,
                                body in UTF-8 with title "Grüße". The header wins.
``/charset/undeclared``         About 1.5 KB of Russian text in cp1251 with no
                                declaration anywhere, title "Привет, мир".
``/charset/bogus``              Header ``charset=x-bogus-42``, body in UTF-8 with
                                title "Grüße".
``/charset/invalid-bytes``      Header ``charset=utf-8``, but the title contains
                                ``\\xff\\xc3\\x28``: decoded with replacement it
                                reads "Café \\ufffd\\ufffd( end".
``/base/page``                  ``<base href="/base/target/">`` and link ``child``,
                                so the link is ``/base/target/child``.
``/base/relative``              ``<base href="sub/">`` and link ``leaf``, so the
                                link is ``/base/sub/leaf``.
``/base/target/child``          Target page. ``/base/child`` (the link resolved
                                without the base) is 404.
``/base/sub/leaf``              Target page. ``/base/leaf`` is 404.
``/entities``                   Link ``href="/q?a=1&amp;b=2"``, which is
                                ``/q?a=1&b=2`` after entity decoding.
``/q``                          Title "Query: " plus the raw query string.
``/nofollow``                   ``rel="nofollow"`` link to ``/nofollow/target`` and a
                                normal link to ``/nofollow/ok``.
``/meta-nofollow``              ``<meta name="robots" content="nofollow">`` and a
                                link to ``/meta-nofollow/target``.
``/meta-noindex``               ``<meta name="robots" content="noindex">`` and a link
                                to ``/meta-noindex/target``.
``/x-robots``                   Header ``X-Robots-Tag: noindex, nofollow`` and a link
                                to ``/x-robots/target``.
``/variants``                   Links to ``/v?a=1&b=2``, ``/v?b=2&a=1``,
                                ``/v?a=1&b=2#frag`` and ``/v?a=1&b=2&utm_source=x``:
                                one page under four URLs.
``/v``                          Title "Variant: " plus the raw query string.
``/calendar?month=YYYY-MM``     Links to the previous and the next month, forever.
                                A missing or invalid month means 2024-01.
``/repeat/a/``                  Link ``a/``, so ``/repeat/a/a/``, ``/repeat/a/a/a/``
                                and so on exist forever.
``/malformed``                  Broken HTML: unclosed tags, stray ``</div>``,
                                unquoted attributes, an unquoted link to
                                ``/malformed/target``, an upper-case link to
                                ``/malformed/upper`` and, last, a link to
                                ``/malformed/in-comment`` inside a comment that never
                                closes (by the HTML standard it is comment text).
``/links/schemes``              ``javascript:``, ``mailto:``, ``tel:``, ``data:``,
                                fragment-only and empty links, and one good link to
                                ``/links/good``.
``/idn``                        Link to ``http://пример.рф/``, which is out of scope
                                and must never be fetched.
``/sitemap.xml``                Sitemap index that points to
                                ``/sitemap-pages.xml.gz``.
``/sitemap-pages.xml.gz``       Gzip-compressed urlset served as
                                ``application/octet-stream`` without
                                Content-Encoding. It lists ``/sitemap/page-1`` to
                                ``/sitemap/page-3`` and
                                ``http://127.0.0.3:PORT/sitemap/offsite``.
``/sitemap.txt``                Plain-text sitemap listing ``/sitemap/text-1`` and
                                ``/sitemap/text-2``.
``/sitemap/{name}``             Plain page. No HTML page links here, so a fetch proves
                                that the sitemap was read.
==============================  ==================================================

Sitemap URLs and redirect targets use the address and port the request arrived on.
The app is served by :func:`serve_app` in a thread of its own, so it answers while
a synchronous test waits on a crawler subprocess, and a stalling route never blocks
the test's event loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import gzip
import html
import math
import random
import re
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from aiohttp import web


class RequestRecord(NamedTuple):
    """One request as the hostile site's middleware saw it on arrival."""

    path_qs: str
    time: float
    """``time.monotonic()`` when the request arrived, before its handler ran."""
    peer: tuple[str, int] | None
    """The client's (address, port), which distinguishes connections."""


HOSTILE_ROBOTS = """\
User-agent: *
Disallow: /private/
Allow: /private/open$
Disallow: /*.pdf$
Disallow: /search?*q=
Crawl-delay: 1
"""
"""robots.txt rules with wildcards, ``$``, Allow/Disallow precedence and a delay."""

BIG_BODY_BYTES = 12 * 1024 * 1024
GZIP_BOMB_DECOMPRESSED_BYTES = 1024 * 1024 * 1024

REQUEST_LOG_KEY = web.AppKey("request_log", list[RequestRecord])
_SHUTDOWN_KEY = web.AppKey("shutdown", asyncio.Event)
_HITS_KEY = web.AppKey("hits", dict[str, int])
_GZIP_BOMB_LOCK = threading.Lock()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_RUSSIAN_TEXT = (
    "Привет, мир. Этот текст написан по-русски и закодирован в windows-1251. "
    "Съешь же ещё этих мягких французских булок, да выпей чаю. "
    "Жил бы цитрус в чащах юга? Да, но фальшивый экземпляр! "
    "Широкая электрификация южных губерний даст мощный толчок подъёму сельского "
    "хозяйства. Любя, съешь щипцы, вздохнёт мэр, кайф жгуч. "
)


def create_hostile_app(robots: str | int | None = None) -> web.Application:
    """Build a fresh hostile site whose first-time-only routes have not been hit.

    ``robots`` is the body of ``/robots.txt`` (served as text/plain), or the HTTP
    status code that ``/robots.txt`` responds with, or None for no robots.txt (404).
    """
    if isinstance(robots, bool) or (
        isinstance(robots, int) and not 100 <= robots <= 599
    ):
        raise ValueError(
            f"robots must be text, a status from 100 to 599 or None, got {robots!r}"
        )

    app = web.Application(middlewares=[_log_requests])
    app[REQUEST_LOG_KEY] = []
    app[_SHUTDOWN_KEY] = asyncio.Event()
    app[_HITS_KEY] = {}
    app.on_shutdown.append(_wake_stalled_handlers)

    routes = [
        web.get("/", _index),
        web.get("/redirect/chain/1", _redirect_to("/redirect/chain/2", 302)),
        web.get("/redirect/chain/2", _redirect_to("/redirect/chain/3", 301)),
        web.get("/redirect/chain/3", _redirect_to("/redirect/final", 307)),
        web.get("/redirect/final", _plain_page("Final")),
        web.get("/redirect/loop/a", _redirect_to("/redirect/loop/b", 302)),
        web.get("/redirect/loop/b", _redirect_to("/redirect/loop/a", 302)),
        web.get("/redirect/offsite", _redirect_offsite),
        web.get("/redirect/loopback", _redirect_loopback),
        web.get("/redirect/relative", _redirect_to("../redirect/final", 302)),
        web.get("/redirect/many", _redirect_many),
        web.get("/status/404", _fixed_status(404)),
        web.get("/status/500", _fixed_status(500)),
        web.get("/status/flaky-503", _flaky_503),
        web.get("/status/429", _rate_limited_seconds),
        web.get("/status/429-http-date", _rate_limited_http_date),
        web.get("/slow/never", _slow_never),
        web.get("/slow/trickle", _slow_trickle),
        web.get("/slow/headers-then-stall", _slow_headers_then_stall),
        web.get("/big", _big(with_length=False)),
        web.get("/big-with-length", _big(with_length=True)),
        web.get("/gzip-bomb", _gzip_bomb),
        web.get("/corrupt-gzip", _corrupt_gzip),
        web.get("/file.pdf", _fake_pdf),
        web.get("/image.png", _png),
        web.get("/private/secret", _plain_page("Private secret")),
        web.get("/private/open", _plain_page("Private open")),
        web.get("/private/open-not", _plain_page("Private open-not")),
        web.get("/search", _echo_query("Search")),
        web.get("/charset/bom-vs-header", _charset_bom_vs_header),
        web.get("/charset/meta-only", _charset_meta_only),
        web.get("/charset/header-vs-meta", _charset_header_vs_meta),
        web.get("/charset/undeclared", _charset_undeclared),
        web.get("/charset/bogus", _charset_bogus),
        web.get("/charset/invalid-bytes", _charset_invalid_bytes),
        web.get("/base/page", _base_page),
        web.get("/base/relative", _base_relative),
        web.get("/base/target/child", _plain_page("Base target child")),
        web.get("/base/sub/leaf", _plain_page("Base sub leaf")),
        web.get("/entities", _entities),
        web.get("/q", _echo_query("Query")),
        web.get("/nofollow", _nofollow),
        web.get("/nofollow/target", _plain_page("Nofollow target")),
        web.get("/nofollow/ok", _plain_page("Nofollow ok")),
        web.get("/meta-nofollow", _meta_robots("nofollow")),
        web.get("/meta-nofollow/target", _plain_page("Meta nofollow target")),
        web.get("/meta-noindex", _meta_robots("noindex")),
        web.get("/meta-noindex/target", _plain_page("Meta noindex target")),
        web.get("/x-robots", _x_robots),
        web.get("/x-robots/target", _plain_page("X-Robots target")),
        web.get("/variants", _variants),
        web.get("/v", _echo_query("Variant")),
        web.get("/calendar", _calendar),
        web.get(r"/repeat/{tail:(?:a/)+}", _repeat),
        web.get("/malformed", _malformed),
        web.get("/malformed/target", _plain_page("Malformed target")),
        web.get("/malformed/upper", _plain_page("Malformed upper")),
        web.get("/malformed/in-comment", _plain_page("Malformed in comment")),
        web.get("/links/schemes", _link_schemes),
        web.get("/links/good", _plain_page("Good link")),
        web.get("/idn", _idn),
        web.get("/sitemap.xml", _sitemap_index),
        web.get("/sitemap-pages.xml.gz", _sitemap_pages),
        web.get("/sitemap.txt", _sitemap_text),
        web.get("/sitemap/{name}", _sitemap_page),
    ]
    if robots is not None:
        routes.append(web.get("/robots.txt", _robots(robots)))
    app.add_routes(routes)
    return app


# Serving -------------------------------------------------------------------------


@dataclass
class ServedApp:
    """An app listening on a loopback address, with the requests it has received."""

    app: web.Application
    host: str
    port: int
    base_url: str = field(init=False)
    """``http://HOST:PORT``, without a trailing slash."""

    def __post_init__(self) -> None:
        self.base_url = f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, in arrival order (a live list)."""
        return self.app[REQUEST_LOG_KEY]

    def url(self, path_qs: str) -> str:
        """Return the absolute URL of ``path_qs``, which starts with ``/``."""
        return self.base_url + path_qs

    def fetched_paths(self) -> list[str]:
        """Return the path and query of every request so far, in arrival order."""
        return [record.path_qs for record in self.requests]


@contextmanager
def serve_app(
    app: web.Application, host: str, *, shutdown_timeout_s: float = 2.0
) -> Iterator[ServedApp]:
    """Serve ``app`` on ``host`` and a free port from a thread with its own event loop.

    On exit the server stops listening, handlers still running get
    ``shutdown_timeout_s`` to finish (the stalling routes end at once because
    shutdown wakes them), and then they are cancelled.
    """
    if not host.startswith("127."):
        raise ValueError(f"test sites listen on loopback only, got host {host!r}")

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"site-{host}", daemon=True)
    thread.start()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, host, 0).start()
        return int(runner.addresses[0][1])

    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
        yield ServedApp(app=app, host=host, port=port)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(
            timeout=shutdown_timeout_s + 10
        )
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# Middleware and shared helpers ---------------------------------------------------


@web.middleware
async def _log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    record = RequestRecord(
        path_qs=request.path_qs,
        time=time.monotonic(),
        peer=(str(peer[0]), int(peer[1])) if peer else None,
    )
    request.app[REQUEST_LOG_KEY].append(record)
    return await handler(request)


async def _wake_stalled_handlers(app: web.Application) -> None:
    app[_SHUTDOWN_KEY].set()


async def _sleep_unless_shutdown(request: web.Request, seconds: float) -> bool:
    """Sleep ``seconds`` and return True, or return False once the server shuts down."""
    try:
        await asyncio.wait_for(request.app[_SHUTDOWN_KEY].wait(), timeout=seconds)
    except TimeoutError:
        return True
    return False


def _count_hit(request: web.Request) -> int:
    """Count a request to this path and return the count, this one included."""
    hits = request.app[_HITS_KEY]
    hits[request.path] = hits.get(request.path, 0) + 1
    return hits[request.path]


def _own_address(request: web.Request) -> tuple[str, int]:
    """Return the (address, port) the request arrived on, ignoring its Host header."""
    sockname = (
        request.transport.get_extra_info("sockname") if request.transport else None
    )
    if not sockname:
        raise web.HTTPInternalServerError(text="the server socket has no address")
    return str(sockname[0]), int(sockname[1])


def _own_origin(request: web.Request) -> str:
    address, port = _own_address(request)
    return f"http://{address}:{port}"


def _html(
    title: str, body: str, *, head: str = "", charset: str | None = "utf-8"
) -> str:
    """Return a small HTML document. Only ``title`` is escaped."""
    meta = f'<meta charset="{charset}">\n' if charset else ""
    return (
        f"<!DOCTYPE html>\n<html>\n<head>\n{meta}<title>{html.escape(title)}</title>\n"
        f"{head}</head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _html_response(text: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8"
    )


def _link(href: str, text: str | None = None) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text or href)}</a>'


def _plain_page(title: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return _html_response(_html(title, f"<p>{html.escape(title)}.</p>"))

    return handler


def _echo_query(label: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        title = f"{label}: {request.query_string}"
        return _html_response(
            _html(title, "<p>The title repeats the query string.</p>")
        )

    return handler


# Index ---------------------------------------------------------------------------

_INDEX_LINKS = (
    "/redirect/chain/1",
    "/redirect/loop/a",
    "/redirect/offsite",
    "/redirect/loopback",
    "/redirect/relative",
    "/redirect/many",
    "/status/404",
    "/status/500",
    "/status/flaky-503",
    "/status/429",
    "/status/429-http-date",
    "/slow/never",
    "/slow/trickle",
    "/slow/headers-then-stall",
    "/big",
    "/big-with-length",
    "/gzip-bomb",
    "/corrupt-gzip",
    "/file.pdf",
    "/image.png",
    "/private/secret",
    "/private/open",
    "/private/open-not",
    "/search?q=x",
    "/search?page=2",
    "/charset/bom-vs-header",
    "/charset/meta-only",
    "/charset/header-vs-meta",
    "/charset/undeclared",
    "/charset/bogus",
    "/charset/invalid-bytes",
    "/base/page",
    "/base/relative",
    "/entities",
    "/nofollow",
    "/meta-nofollow",
    "/meta-noindex",
    "/x-robots",
    "/variants",
    "/calendar?month=2024-01",
    "/repeat/a/",
    "/malformed",
    "/links/schemes",
    "/idn",
)


async def _index(request: web.Request) -> web.Response:
    items = "\n".join(f"<li>{_link(path)}</li>" for path in _INDEX_LINKS)
    return _html_response(_html("Hostile web", f"<ul>\n{items}\n</ul>"))


# Redirects -----------------------------------------------------------------------


def _redirect(location: str, status: int) -> web.Response:
    """Return a redirect with ``location`` as the Location header, unchanged."""
    return web.Response(
        status=status,
        headers={"Location": location},
        text=f"Redirecting to {location}\n",
    )


def _redirect_to(location: str, status: int) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return _redirect(location, status)

    return handler


async def _redirect_offsite(request: web.Request) -> web.Response:
    _, port = _own_address(request)
    return _redirect(f"http://127.0.0.3:{port}/", 302)


async def _redirect_loopback(request: web.Request) -> web.Response:
    raw_port = request.query.get("port")
    if raw_port is None:
        _, port = _own_address(request)
    elif raw_port.isdigit() and 1 <= int(raw_port) <= 65535:
        port = int(raw_port)
    else:
        raise web.HTTPBadRequest(
            text=f"port must be a number from 1 to 65535, got {raw_port!r}\n"
        )
    return _redirect(f"http://127.0.0.1:{port}/", 302)


_MANY_REDIRECTS = 11


async def _redirect_many(request: web.Request) -> web.Response:
    raw_hop = request.query.get("n", "0")
    hop = int(raw_hop) if raw_hop.isdigit() else 0
    if hop >= _MANY_REDIRECTS:
        return _html_response(
            _html("Many redirects final", f"<p>After {hop} redirects.</p>")
        )
    return _redirect(f"/redirect/many?n={hop + 1}", 302)


# Status codes --------------------------------------------------------------------


def _fixed_status(status: int) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return _html_response(
            _html(f"Status {status}", "<p>Fixed status.</p>"), status=status
        )

    return handler


async def _flaky_503(request: web.Request) -> web.Response:
    if _count_hit(request) == 1:
        return _html_response(_html("Unavailable", "<p>Try again.</p>"), status=503)
    return _html_response(_html("Flaky recovered", "<p>Second try works.</p>"))


async def _rate_limited_seconds(request: web.Request) -> web.Response:
    if _count_hit(request) == 1:
        response = _html_response(
            _html("Too many requests", "<p>Slow down.</p>"), status=429
        )
        response.headers["Retry-After"] = "1"
        return response
    return _html_response(_html("Rate limit lifted", "<p>Waited long enough.</p>"))


async def _rate_limited_http_date(request: web.Request) -> web.Response:
    if _count_hit(request) == 1:
        response = _html_response(
            _html("Too many requests", "<p>Slow down.</p>"), status=429
        )
        retry_at = math.floor(time.time()) + 2
        response.headers["Retry-After"] = email.utils.formatdate(retry_at, usegmt=True)
        return response
    return _html_response(_html("Rate limit lifted", "<p>Waited until the date.</p>"))


# Slow responses ------------------------------------------------------------------


async def _slow_never(request: web.Request) -> web.Response:
    await _sleep_unless_shutdown(request, 3600)
    return _html_response(_html("Too late", "<p>The server is shutting down.</p>"))


async def _slow_trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    await response.prepare(request)
    try:
        for _ in range(120):
            await response.write(b".")
            if not await _sleep_unless_shutdown(request, 0.5):
                break
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response


async def _slow_headers_then_stall(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    response.content_length = 1024
    await response.prepare(request)
    try:
        await response.write(b"<html><bod")
    except ConnectionResetError:
        return response
    await _sleep_unless_shutdown(request, 3600)
    return response


# Size and content types ----------------------------------------------------------


def _big_body_chunks() -> Iterator[bytes]:
    """Yield an HTML document of exactly BIG_BODY_BYTES in 64 KiB chunks."""
    head = b"<!DOCTYPE html>\n<html><head><title>Big</title></head><body>\n"
    tail = b"\n</body></html>\n"
    block = (b"<p>" + b"big " * 255 + b"</p>\n") * 64
    full_blocks, rest = divmod(BIG_BODY_BYTES - len(head) - len(tail), len(block))

    yield head
    for _ in range(full_blocks):
        yield block
    yield b" " * rest
    yield tail


def _big(*, with_length: bool) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/html; charset=utf-8"}
        )
        if with_length:
            response.content_length = BIG_BODY_BYTES
        await response.prepare(request)
        try:
            for chunk in _big_body_chunks():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass
        return response

    return handler


@functools.cache
def _gzip_bomb_body() -> bytes:
    """Compress 1 GiB of zeros, 1 MiB at a time: 4 s on one 2-core test machine."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [
        compressor.compress(zeros)
        for _ in range(GZIP_BOMB_DECOMPRESSED_BYTES // len(zeros))
    ]
    parts.append(compressor.flush())
    return b"".join(parts)


def gzip_bomb_body() -> bytes:
    """Return the ``/gzip-bomb`` body, building it on the first call from any thread."""
    with _GZIP_BOMB_LOCK:
        return _gzip_bomb_body()


def start_gzip_bomb_build() -> None:
    """Build the ``/gzip-bomb`` body in a background thread, so requests do not wait."""
    threading.Thread(target=gzip_bomb_body, name="gzip-bomb-build", daemon=True).start()


async def _gzip_bomb(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(gzip_bomb_body)
    return web.Response(
        body=body,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Encoding": "gzip",
        },
    )


CORRUPT_GZIP_BODY = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + random.Random(
    0
).randbytes(2048)
"""A valid 10-byte gzip header followed by random bytes that zlib rejects."""


async def _corrupt_gzip(request: web.Request) -> web.Response:
    return web.Response(
        body=CORRUPT_GZIP_BODY,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Encoding": "gzip",
        },
    )


_FAKE_PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)


async def _fake_pdf(request: web.Request) -> web.Response:
    return web.Response(body=_FAKE_PDF, content_type="application/pdf")


def _build_png(size: int = 8) -> bytes:
    """Return a valid ``size`` x ``size`` RGB PNG filled with one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xcc\x33\x00" * size for _ in range(size))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG_BODY = _build_png()


async def _png(request: web.Request) -> web.Response:
    return web.Response(body=PNG_BODY, content_type="image/png")


# robots.txt ----------------------------------------------------------------------


def _robots(robots: str | int) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if isinstance(robots, int):
            return web.Response(status=robots, text=f"robots.txt answers {robots}\n")
        return web.Response(text=robots, content_type="text/plain", charset="utf-8")

    return handler


# Charsets ------------------------------------------------------------------------


def _bytes_response(body: bytes, content_type: str) -> web.Response:
    """Return ``body`` unchanged, with ``content_type`` as the Content-Type header."""
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _charset_bom_vs_header(request: web.Request) -> web.Response:
    page = _html("Привет, мир", f"<p>{_RUSSIAN_TEXT}</p>", charset=None)
    return _bytes_response(
        b"\xef\xbb\xbf" + page.encode("utf-8"), "text/html; charset=windows-1251"
    )


async def _charset_meta_only(request: web.Request) -> web.Response:
    page = _html("Привет, мир", f"<p>{_RUSSIAN_TEXT}</p>", charset="windows-1251")
    return _bytes_response(page.encode("cp1251"), "text/html")


async def _charset_header_vs_meta(request: web.Request) -> web.Response:
    page = _html("Grüße", "<p>Viele Grüße aus Köln.</p>", charset="iso-8859-1")
    return _bytes_response(page.encode("utf-8"), "text/html; charset=utf-8")


async def _charset_undeclared(request: web.Request) -> web.Response:
    page = _html("Привет, мир", f"<p>{_RUSSIAN_TEXT * 5}</p>", charset=None)
    return _bytes_response(page.encode("cp1251"), "text/html")


async def _charset_bogus(request: web.Request) -> web.Response:
    page = _html("Grüße", "<p>Viele Grüße aus Köln.</p>", charset=None)
    return _bytes_response(page.encode("utf-8"), "text/html; charset=x-bogus-42")


async def _charset_invalid_bytes(request: web.Request) -> web.Response:
    body = (
        b"<!DOCTYPE html>\n<html><head>\n"
        b"<title>Caf\xc3\xa9 \xff\xc3\x28 end</title></head>\n"
        b"<body><p>Valid UTF-8 \xc3\xa9, then a lone continuation byte \x80.</p>\n"
        b'<a href="/links/good">good link</a></body></html>\n'
    )
    return _bytes_response(body, "text/html; charset=utf-8")


# Links: base, entities, nofollow, variants ---------------------------------------


async def _base_page(request: web.Request) -> web.Response:
    page = _html(
        "Base absolute",
        '<a href="child">child</a>',
        head='<base href="/base/target/">\n',
    )
    return _html_response(page)


async def _base_relative(request: web.Request) -> web.Response:
    page = _html(
        "Base relative", '<a href="leaf">leaf</a>', head='<base href="sub/">\n'
    )
    return _html_response(page)


async def _entities(request: web.Request) -> web.Response:
    return _html_response(_html("Entities", '<a href="/q?a=1&amp;b=2">query</a>'))


async def _nofollow(request: web.Request) -> web.Response:
    body = (
        '<a href="/nofollow/target" rel="nofollow">not to be followed</a>\n'
        '<a href="/nofollow/ok">to be followed</a>'
    )
    return _html_response(_html("Nofollow", body))


def _meta_robots(content: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        head = f'<meta name="robots" content="{content}">\n'
        body = _link(f"/meta-{content}/target", "target")
        return _html_response(_html(f"Meta {content}", body, head=head))

    return handler


async def _x_robots(request: web.Request) -> web.Response:
    response = _html_response(
        _html("X-Robots-Tag", _link("/x-robots/target", "target"))
    )
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


async def _variants(request: web.Request) -> web.Response:
    hrefs = ("/v?a=1&b=2", "/v?b=2&a=1", "/v?a=1&b=2#frag", "/v?a=1&b=2&utm_source=x")
    body = "\n".join(f"<p>{_link(href)}</p>" for href in hrefs)
    return _html_response(_html("Variants", body))


# Traps ---------------------------------------------------------------------------

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


async def _calendar(request: web.Request) -> web.Response:
    match = _MONTH.match(request.query.get("month", ""))
    year, month = (int(match[1]), int(match[2])) if match else (2024, 1)
    if not 1 <= month <= 12:
        year, month = 2024, 1

    index = year * 12 + month - 1
    previous_year, previous_month = divmod(index - 1, 12)
    next_year, next_month = divmod(index + 1, 12)
    previous_href = f"/calendar?month={previous_year:04d}-{previous_month + 1:02d}"
    next_href = f"/calendar?month={next_year:04d}-{next_month + 1:02d}"
    body = (
        f"<p>{_link(previous_href, 'previous')}</p>\n<p>{_link(next_href, 'next')}</p>"
    )
    return _html_response(_html(f"Calendar {year:04d}-{month:02d}", body))


async def _repeat(request: web.Request) -> web.Response:
    depth = request.match_info["tail"].count("a/")
    return _html_response(_html(f"Repeat depth {depth}", '<a href="a/">deeper</a>'))


_MALFORMED_BODY = """\
<!DOCTYPE html>
<html>
<head><title>Malformed</title>
<body>
<div class=outer id=main><p>An unclosed paragraph
<div><span>unclosed span</div></div></div></div>
<table><tr><td>cell without end tags
<p><b><i>misnested</b></i>
<a href=/malformed/target class=unquoted>unquoted link</a>
<A HREF="/malformed/upper">upper-case link</A>
<!-- this comment never closes <a href="/malformed/in-comment">hidden</a>
"""


async def _malformed(request: web.Request) -> web.Response:
    return _html_response(_MALFORMED_BODY)


async def _link_schemes(request: web.Request) -> web.Response:
    hrefs = (
        "javascript:alert(1)",
        "mailto:nobody@example.invalid",
        "tel:+15550100",
        "data:text/html;base64,PGgxPmRhdGE8L2gxPg==",
        "#section",
        "",
        "/links/good",
    )
    body = "\n".join(
        f'<p><a href="{html.escape(href)}">{html.escape(href or "empty")}</a></p>'
        for href in hrefs
    )
    return _html_response(_html("Link schemes", body))


async def _idn(request: web.Request) -> web.Response:
    return _html_response(_html("IDN", _link("http://пример.рф/", "пример.рф")))


# Sitemaps ------------------------------------------------------------------------

_SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


async def _sitemap_index(request: web.Request) -> web.Response:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sitemapindex xmlns="{_SITEMAP_NS}">\n'
        f"  <sitemap><loc>{_own_origin(request)}/sitemap-pages.xml.gz</loc></sitemap>\n"
        "</sitemapindex>\n"
    )
    return web.Response(text=xml, content_type="application/xml", charset="utf-8")


async def _sitemap_pages(request: web.Request) -> web.Response:
    origin = _own_origin(request)
    _, port = _own_address(request)
    urls = [f"{origin}/sitemap/page-{n}" for n in (1, 2, 3)]
    urls.append(f"http://127.0.0.3:{port}/sitemap/offsite")
    entries = "".join(f"  <url><loc>{url}</loc></url>\n" for url in urls)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="{_SITEMAP_NS}">\n{entries}</urlset>\n'
    )
    return web.Response(
        body=gzip.compress(xml.encode("utf-8"), mtime=0),
        content_type="application/octet-stream",
    )


async def _sitemap_text(request: web.Request) -> web.Response:
    origin = _own_origin(request)
    text = f"{origin}/sitemap/text-1\n{origin}/sitemap/text-2\n"
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def _sitemap_page(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return _html_response(_html(f"Sitemap {name}", "<p>Listed only in a sitemap.</p>"))
