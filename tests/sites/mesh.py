"""A site spread over several hosts that logs when each request ran.

Each host serves ``/page/N`` for N below ``pages_per_host``: a tree like
``tests/sites/tree.py`` (page N links to 3N+1, 3N+2 and 3N+3), and each
host's ``/page/0`` also links to ``/page/0`` of every other host, so a crawl
seeded at one host reaches every page. ``/robots.txt`` allows everything.
Every answer waits ``delay_s``.

The log has one entry per request: the host, the path, the client's address
and port (which name its connection and, with ``CRAWLER_SOURCE_ADDRESS``,
the replica), and when the handler started and finished on the site's
monotonic clock. Tests check per-host concurrency and spacing on it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.sites.hostile import serve_app

HOST_KEY = web.AppKey("host", str)


@dataclass(frozen=True, slots=True)
class MeshRequest:
    """One request that a mesh host served."""

    host: str
    path: str
    client: str
    client_port: int
    started: float
    finished: float


@dataclass
class MeshSite:
    """The running hosts of a mesh site and their shared request log."""

    pages_per_host: int
    delay_s: float
    bases: dict[str, str] = field(default_factory=dict)
    """Base URL (``http://address:port``) of each host, by address."""
    log: list[MeshRequest] = field(default_factory=list)

    def seed(self) -> str:
        """Return the URL of the first host's ``/page/0``."""
        return f"{next(iter(self.bases.values()))}/page/0"

    def page_urls(self) -> set[str]:
        """Return the URL of every page of every host."""
        return {
            f"{base}/page/{n}"
            for base in self.bases.values()
            for n in range(self.pages_per_host)
        }

    def page_requests(self) -> list[MeshRequest]:
        """Return the logged requests for pages, robots.txt left out."""
        return [entry for entry in self.log if entry.path.startswith("/page/")]

    def create_app(self, host: str) -> web.Application:
        async def page(request: web.Request) -> web.Response:
            number = int(request.match_info["number"])
            if not 0 <= number < self.pages_per_host:
                raise web.HTTPNotFound()
            links = [
                f"/page/{n}"
                for n in range(3 * number + 1, 3 * number + 4)
                if n < self.pages_per_host
            ]
            if number == 0:
                links += [
                    f"{base}/page/0"
                    for other, base in self.bases.items()
                    if other != host
                ]
            anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
            html = f"<!doctype html><title>{host} {number}</title><body>{anchors}"
            return web.Response(text=html, content_type="text/html")

        async def robots(request: web.Request) -> web.Response:
            return web.Response(text="User-agent: *\nAllow: /\n")

        @web.middleware
        async def log_request(
            request: web.Request, handler: web.RequestHandler
        ) -> web.StreamResponse:
            started = time.monotonic()
            try:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                return await handler(request)
            finally:
                peer = (
                    request.transport.get_extra_info("peername")
                    if (request.transport)
                    else ("", 0)
                )
                self.log.append(
                    MeshRequest(
                        host=host,
                        path=request.path_qs,
                        client=str(peer[0]),
                        client_port=int(peer[1]),
                        started=started,
                        finished=time.monotonic(),
                    )
                )

        app = web.Application(middlewares=[log_request])
        app[HOST_KEY] = host
        app.router.add_get(r"/page/{number:\d+}", page)
        app.router.add_get("/robots.txt", robots)
        return app


@contextmanager
def serve_mesh(
    addresses: Sequence[str], *, pages_per_host: int, delay_s: float = 0.0
) -> Iterator[MeshSite]:
    """Serve a mesh site with one host on each loopback address in ``addresses``."""
    site = MeshSite(pages_per_host=pages_per_host, delay_s=delay_s)
    with ExitStack() as stack:
        for address in addresses:
            served = stack.enter_context(serve_app(site.create_app(address), address))
            site.bases[address] = f"http://{address}:{served.port}"
        yield site


def max_overlap(requests: Sequence[MeshRequest]) -> int:
    """Return the most requests that were running at one moment."""
    events = sorted(
        [(entry.started, 1) for entry in requests]
        + [(entry.finished, -1) for entry in requests],
        key=lambda event: (event[0], event[1]),
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def min_start_gap(requests: Sequence[MeshRequest]) -> float | None:
    """Return the shortest time between two successive starts, or None."""
    starts = sorted(entry.started for entry in requests)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    return min(gaps) if gaps else None
