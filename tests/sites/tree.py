"""A small site of numbered pages whose answers can be slowed down.

Page ``/page/N`` links to pages ``3N+1``, ``3N+2`` and ``3N+3`` while those
are below ``pages``, so the site is a tree of ``pages`` pages reachable from
``/page/0``. Each answer waits ``delay_s`` first, which lets a test stop or
kill a crawler in the middle of a crawl.
"""

from __future__ import annotations

import asyncio

from aiohttp import web


def create_tree_app(pages: int, delay_s: float = 0.0) -> web.Application:
    """Build the tree site with ``pages`` pages."""

    async def page(request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        if not 0 <= number < pages:
            raise web.HTTPNotFound()
        if delay_s:
            await asyncio.sleep(delay_s)
        children = [n for n in range(3 * number + 1, 3 * number + 4) if n < pages]
        links = "".join(f'<a href="/page/{n}">page {n}</a>' for n in children)
        html = f"<!doctype html><title>Page {number}</title><body>{links}</body>"
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get(r"/page/{number:\d+}", page)
    return app


def tree_paths(pages: int) -> set[str]:
    """Return the path of every page of a tree site with ``pages`` pages."""
    return {f"/page/{n}" for n in range(pages)}
